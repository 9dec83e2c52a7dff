"""``collector serve --http``: a real collector process, a real Mosquitto, the API on a real port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgemeter.demo.loopback import free_port, stop_process
from shared.messages import AgentManifest, Status
from shared.mqtt import MqttConnection, connect
from shared.topics import TopicKind, Topics
from tests.factories import make_result

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
    env.update(extra)
    return env


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture()
def served(mosquitto_url: str, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgemeter.cli", "collector", "serve", "--mqtt", mosquitto_url,
             "--db", f"sqlite:///{tmp_path}/results.db", "--http", f"127.0.0.1:{port}",
             "--client-id", f"http-{uuid.uuid4().hex[:8]}"],
            cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                urllib.request.urlopen(url + "/api/runs", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield Served(proc, url, log)
    finally:
        stop_process(proc, timeout_s=15)


@pytest.fixture()
def device(mosquitto_url: str) -> Iterator[MqttConnection]:
    conn = connect(mosquitto_url, f"http-dev-{uuid.uuid4().hex[:8]}")
    yield conn
    conn.close()


def _poll(predicate: object, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _samples(text: str) -> dict[str, float]:
    return {s.name + str(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.mqtt
@pytest.mark.slow
def test_a_device_that_just_published_is_in_the_api_and_the_metrics_counts(
        served: Served, device: MqttConnection) -> None:
    device_id, fleet = f"pi-{uuid.uuid4().hex[:6]}", f"http-{uuid.uuid4().hex[:6]}"
    result = make_result(device_id=device_id, fleet=fleet)
    birth = Status(device_id=device_id, fleet=fleet, status="online", bd_seq=1,
                   sent_at=datetime.now(timezone.utc),
                   manifest=AgentManifest(agent_version="1", device=result.device))
    client = httpx.Client(base_url=served.url, timeout=5)
    status_topic = Topics.build(fleet, device_id, TopicKind.STATUS)
    device.publish(status_topic, birth.model_dump_json().encode(), retain=True)
    device.publish(Topics.result(fleet, device_id), result.model_dump_json().encode())

    def listed() -> tuple[object, ...] | None:
        devices = client.get("/api/devices", params={"q": device_id}).json()["devices"]
        return (devices[0]["device_id"], devices[0]["status"], devices[0]["latest_run_id"]) \
            if devices else None

    # the birth and the result may be stored in either order (and the list is cached for 1 s),
    # so the device may first show with status "unknown" or no run: wait for both
    expected = (device_id, "online", str(result.run_id))
    assert _poll(lambda: listed() == expected), (listed(), served.log.read_text())
    assert client.get("/api/runs", params={"device": device_id}).json()["runs"][0]["run_id"] == \
        str(result.run_id)
    metrics = _samples(client.get("/metrics").text)
    assert metrics["edgemeter_collector_results_stored_total[]"] == 1
    assert metrics["edgemeter_collector_messages_received_total[('kind', 'result')]"] >= 1
    assert metrics["edgemeter_collector_devices_online[]"] >= 1
    device.publish(status_topic, b"", retain=True)  # leave no retained birth on the broker
    assert "dashboard and API on " + served.url in served.log.read_text()


@pytest.mark.mqtt
@pytest.mark.slow
def test_sigterm_stops_serve_and_its_http_server_cleanly(served: Served) -> None:
    with httpx.Client(timeout=5) as client, client.stream("GET", served.url + "/api/events") as live:
        assert live.status_code == 200  # an open event stream must not hold the exit
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(20) == 0, served.log.read_text()
    assert "edgemeter collector stopped" in served.log.read_text()


@pytest.mark.subprocess
def test_serve_refuses_a_non_loopback_bind_without_a_token(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgemeter.cli", "collector", "serve", "--mqtt",
         "mqtt://127.0.0.1:1", "--db", f"sqlite:///{tmp_path}/results.db", "--http",
         "0.0.0.0:8080"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "token" in line]
    assert len(lines) == 1 and "not a loopback address" in lines[0], proc.stderr
