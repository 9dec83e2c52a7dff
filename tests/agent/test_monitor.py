"""InferenceMonitor: every latency counted, windows through the daemon's socket or MQTT, and
nothing ever blocks or raises into the application."""

from __future__ import annotations

import math
import queue
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from agent.daemon.monitor_socket import MonitorSocket, complete_window
from agent.monitor import InferenceMonitor, LocalWindow
from agent.spool import Spool
from shared.messages import Telemetry
from shared.monitoring import MonitorWindow
from shared.mqtt import connect
from shared.schema import LatencyHistogram
from shared.topics import Topics


@pytest.fixture()
def intake(tmp_path: Path) -> MonitorSocket:
    opened = MonitorSocket(tmp_path / "monitor.sock").start()
    yield opened  # type: ignore[misc]
    opened.close()


def wait_for_windows(intake: MonitorSocket, queries: int) -> list[LocalWindow]:
    got: list[LocalWindow] = []
    deadline = 200
    while sum(w.queries for w in got) < queries and deadline:
        got += intake.take()
        threading.Event().wait(0.01)
        deadline -= 1
    return got


def test_10000_latencies_recorded_from_two_threads_are_every_one_counted(
        intake: MonitorSocket) -> None:
    monitor = InferenceMonitor("vww-prod", window_s=3600, socket=intake.path)
    rng = np.random.default_rng(1)
    latencies = rng.lognormal(-6, 0.5, size=10_000)

    def work(part: np.ndarray) -> None:
        for seconds in part:
            monitor.record(float(seconds))

    threads = [threading.Thread(target=work, args=(half,)) for half in np.split(latencies, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monitor.close()
    windows = wait_for_windows(intake, 10_000)
    assert sum(w.queries for w in windows) == 10_000
    assert monitor.recorded == 10_000 and monitor.sent_queries == 10_000 and monitor.dropped == 0
    histograms = [w.latencies for w in windows if w.latencies is not None]
    assert histograms == [LatencyHistogram.of(latencies * 1e9)]  # the same buckets as results


def test_no_daemon_means_counted_drops_never_an_error(tmp_path: Path) -> None:
    monitor = InferenceMonitor("lonely", window_s=3600, socket=tmp_path / "nobody.sock")
    for _ in range(100):
        monitor.record(0.002)
    with monitor.time():
        pass
    monitor.close()
    assert monitor.recorded == 101 and monitor.dropped == 101 and monitor.windows_dropped == 1


def test_impossible_latencies_are_dropped_not_raised(intake: MonitorSocket) -> None:
    monitor = InferenceMonitor("odd", window_s=3600, socket=intake.path)
    for value in (math.nan, -1.0, 0.0, math.inf, 1e9, 0.001):
        monitor.record(value)
    monitor.close()
    (window,) = wait_for_windows(intake, 1)
    assert window.queries == 1 and window.dropped == 5 and monitor.dropped == 5


def test_time_records_a_block_that_raises(intake: MonitorSocket) -> None:
    monitor = InferenceMonitor("raising", window_s=3600, socket=intake.path)
    with pytest.raises(RuntimeError), monitor.time():
        raise RuntimeError("the model failed")
    monitor.close()
    assert sum(w.queries for w in wait_for_windows(intake, 1)) == 1


def test_the_daemon_completes_windows_with_the_boards_state_and_spools_them(
        intake: MonitorSocket, tmp_path: Path) -> None:
    monitor = InferenceMonitor("vww", window_s=3600, socket=intake.path)
    for _ in range(10):
        monitor.record(0.004)
    monitor.close()
    wait = 200
    while intake._queue.empty() and wait:
        threading.Event().wait(0.01)
        wait -= 1
    telemetry = Telemetry(device_id="pi-01", fleet="lab", uptime_s=5, temps_c={"soc": 61.0},
                          throttled=False, power_w=3.5, power_source="ina3221",
                          power_estimated=False)
    spool = Spool(tmp_path / "spool.db")
    assert intake.drain(spool, device_id="pi-01", fleet="lab", telemetry=telemetry) == 1
    (entry,) = spool.pending()
    window = MonitorWindow.model_validate_json(entry.payload)
    assert entry.kind == "monitor"
    assert (window.device_id, window.fleet, window.name, window.queries) == ("pi-01", "lab",
                                                                              "vww", 10)
    assert window.temperature_c == 61.0 and window.power_w == 3.5 and window.throttled is False
    assert window.latency_ms is not None and window.latency_ms.p99 == pytest.approx(4.0, rel=0.01)


def test_a_window_without_telemetry_says_unmeasured() -> None:
    now = datetime.now(timezone.utc)
    window = complete_window(LocalWindow(name="x", start=now, end=now, queries=0),
                             device_id="d", fleet="f")
    assert window.power_w is None and window.temperature_c is None and window.throughput_sps is None


def test_a_bad_name_or_mqtt_without_identity_is_refused_at_once() -> None:
    with pytest.raises(ValueError):
        InferenceMonitor("has/slash")
    with pytest.raises(ValueError, match="device_id and fleet"):
        InferenceMonitor("ok", mqtt="mqtt://localhost:1883")


@pytest.mark.mqtt
def test_windows_go_directly_over_mqtt(mosquitto_url: str) -> None:
    got: queue.Queue[bytes] = queue.Queue()
    listener = connect(mosquitto_url, f"l-{uuid.uuid4().hex[:8]}",
                       on_message=lambda _topic, payload: got.put(payload))
    listener.subscribe(Topics.monitor("lab", "app-1"), qos=1)
    assert listener.flush(30), "the broker did not answer the subscription"
    monitor = InferenceMonitor("direct", window_s=3600, mqtt=mosquitto_url, device_id="app-1",
                               fleet="lab")
    for _ in range(25):
        monitor.record(0.01)
    monitor.close()
    window = MonitorWindow.model_validate_json(got.get(timeout=10))
    listener.close()
    assert window.queries == 25 and window.device_id == "app-1"
    assert monitor.sent_queries == 25
