"""Tasmota and Shelly wall plugs through a real Mosquitto, with small fake plugs in the test."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from agent.errors import PowerSourceError
from agent.power.base import SourceContext
from agent.power.clock import ManualClock
from agent.power.monitor import EnergyMonitor, open_source
from agent.power.mqttplug import PlugSettings
from agent.power.settings import PowerSettings
from agent.power.shelly import ShellySource
from agent.power.tasmota import TasmotaSource
from shared.mqtt import MqttConnection, connect
from shared.schema import PowerScope
from tests.power.conftest import FIXTURES, context, monitor

STATUS10 = json.loads((FIXTURES / "tasmota" / "stat_STATUS10.json").read_text())
TELE_SENSOR = json.loads((FIXTURES / "tasmota" / "tele_SENSOR.json").read_text())
SHELLY_STATUS = json.loads((FIXTURES / "shelly" / "status_switch0.json").read_text())


def topic() -> str:
    return f"plug_{uuid.uuid4().hex[:8]}"


class FakeTasmota:
    """Answers ``cmnd/<topic>/STATUS`` ``10`` with ``stat/<topic>/STATUS10`` like the firmware."""

    def __init__(self, url: str, name: str, watts: float) -> None:
        self.name = name
        self.watts = watts
        self.polls = 0
        self.polled = threading.Condition()
        self.conn: MqttConnection = connect(
            url, f"fake-tasmota-{name}", on_message=self._on_message,
            on_connect=lambda c: c.subscribe(f"cmnd/{name}/STATUS", qos=0),
        )

    def _on_message(self, topic: str, payload: bytes) -> None:
        if payload.strip() != b"10":
            return
        doc: dict[str, Any] = json.loads(json.dumps(STATUS10))
        doc["StatusSNS"]["ENERGY"]["Power"] = self.watts
        self.conn.client.publish(f"stat/{self.name}/STATUS10", json.dumps(doc), qos=0)
        with self.polled:
            self.polls += 1
            self.polled.notify_all()

    def wait_for_polls(self, n: int, timeout_s: float = 10.0) -> bool:
        """Wait for the n-th poll to arrive over the broker (a delivery, not time passing)."""
        with self.polled:
            return self.polled.wait_for(lambda: self.polls >= n, timeout_s)

    def close(self) -> None:
        self.conn.close()


class Publisher(threading.Thread):
    """Publishes one payload on one topic every ``period_s`` (telemetry, Shelly status)."""

    def __init__(self, url: str, topic: str, payload: dict[str, Any], period_s: float) -> None:
        super().__init__(daemon=True)
        self.topic, self.payload, self.period_s = topic, json.dumps(payload), period_s
        self.conn = connect(url, f"fake-pub-{uuid.uuid4().hex[:6]}")
        self.stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.conn.client.publish(self.topic, self.payload, qos=0)
            if self.stop_event.wait(self.period_s):
                break

    def stop(self) -> None:
        self.stop_event.set()
        self.join(2.0)
        self.conn.close()


@pytest.fixture()
def closers() -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    for item in reversed(items):
        (item.stop if isinstance(item, Publisher) else item.close)()


def plug_monitor(cls: type[TasmotaSource | ShellySource], url: str, name: str,
                 clock: ManualClock) -> EnergyMonitor:
    """The plug source opened on the real broker (waits for its first value), sampled on the
    manual clock: the value it holds is the plug's, the sampling is deterministic."""
    source = cls(PlugSettings(broker=url, topic=name), context(clock))
    source.open()
    return monitor(source, clock)


def window(mon: EnergyMonitor, clock: ManualClock, seconds: float) -> Any:
    mon.begin()
    clock.sleep(seconds)
    return mon.end(inferences=10)


@pytest.mark.mqtt
def test_tasmota_plug_polled_through_the_broker_reads_7_5_w(
    mosquitto_url: str, closers: list[Any], clock: ManualClock
) -> None:
    name = topic()
    plug = FakeTasmota(mosquitto_url, name, 7.5)
    closers.append(plug)
    with plug_monitor(TasmotaSource, mosquitto_url, name, clock) as mon:
        report = window(mon, clock, 1.5)
        assert plug.wait_for_polls(2), "the source should keep polling STATUS 10"
    assert report is not None
    assert report.source == "tasmota" and report.scope is PowerScope.WALL
    assert report.estimated is False
    assert report.avg_power_w == pytest.approx(7.5)
    assert report.valid, report.reasons
    assert report.sample_hz == 2.0


@pytest.mark.mqtt
def test_tasmota_passive_telemetry_is_taken_too(
    mosquitto_url: str, closers: list[Any], clock: ManualClock
) -> None:
    name = topic()
    doc = json.loads(json.dumps(TELE_SENSOR))
    doc["ENERGY"]["Power"] = [3.0, 1.5]  # a two-channel meter
    pub = Publisher(mosquitto_url, f"tele/{name}/SENSOR", doc, 0.2)
    closers.append(pub)
    pub.start()
    with plug_monitor(TasmotaSource, mosquitto_url, name, clock) as mon:
        report = window(mon, clock, 1.2)
    assert report is not None and report.avg_power_w == pytest.approx(4.5)


@pytest.mark.mqtt
def test_shelly_gen2_status_reads_apower(
    mosquitto_url: str, closers: list[Any], clock: ManualClock
) -> None:
    name = f"shellyplusplugs-{uuid.uuid4().hex[:12]}"
    pub = Publisher(mosquitto_url, f"{name}/status/switch:0", SHELLY_STATUS, 0.5)
    closers.append(pub)
    pub.start()
    with plug_monitor(ShellySource, mosquitto_url, name, clock) as mon:
        report = window(mon, clock, 1.2)
    assert report is not None and report.scope is PowerScope.WALL
    assert report.avg_power_w == pytest.approx(7.5)


def test_a_plug_that_falls_silent_costs_coverage(clock: ManualClock) -> None:
    """Sample and hold for stale_s, then nothing: lost coverage, never a frozen or zero value."""
    source = ShellySource(PlugSettings(broker="mqtt://127.0.0.1:1", topic="s"), context(clock))
    source._on_message("s/status/switch:0", json.dumps(SHELLY_STATUS).encode())
    with monitor(source, clock, hz=2.0) as mon:
        report = window(mon, clock, source.stale_s * 2)
    assert report is not None and report.valid is False
    assert report.avg_power_w == pytest.approx(7.5)
    assert report.coverage is not None and report.coverage == pytest.approx(0.5, abs=0.06)


@pytest.mark.mqtt
def test_a_silent_plug_is_an_actionable_error(mosquitto_url: str) -> None:
    with pytest.raises(PowerSourceError, match="check --power-topic"):
        open_source(PowerSettings(source="shelly", shelly={
            "broker": mosquitto_url, "topic": topic(), "first_value_timeout_s": 0.3}),
            SourceContext())


def test_unconfigured_and_unreachable_plugs() -> None:
    with pytest.raises(PowerSourceError, match="--power-mqtt mqtt://HOST:PORT --power-topic"):
        open_source(PowerSettings(source="tasmota"), SourceContext())
    with pytest.raises(ValidationError, match="one topic level"):
        PlugSettings(broker="mqtt://127.0.0.1:1", topic="a/b")
    with pytest.raises(ValidationError, match="mqtt://"):
        PlugSettings(broker="http://127.0.0.1:1", topic="plug")
    with pytest.raises(PowerSourceError, match=r"tasmota: .*127\.0\.0\.1:1"):
        open_source(PowerSettings(source="tasmota",
                                  tasmota={"broker": "mqtt://127.0.0.1:1", "topic": "plug"}),
                    SourceContext())


def test_payload_parsing() -> None:
    tasmota = TasmotaSource(PlugSettings(topic="p"))
    assert tasmota.parse("stat/p/STATUS10", json.dumps(STATUS10).encode()) == 7.5
    assert tasmota.parse("tele/p/SENSOR", json.dumps(TELE_SENSOR).encode()) == 7.5
    assert tasmota.parse("tele/p/SENSOR", b'{"Time": "x", "AM2301": {}}') is None
    shelly = ShellySource(PlugSettings(topic="s"))
    assert shelly.parse("s/status/switch:0", json.dumps(SHELLY_STATUS).encode()) == 7.5
    assert shelly.parse("s/status/switch:0", b'{"id": 0, "output": false}') is None
