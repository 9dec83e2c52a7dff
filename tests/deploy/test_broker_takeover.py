"""A real collector (``edgemeter collector serve``) on the broker built from ``deploy/mosquitto``:
its presence is allowed and its Last Will fires on kill -9, and a device login trying the
collector's and another device's client id while results and jobs flow loses nothing.

Each test module run gets a broker of its own (:class:`tests.secure_broker.SecureBroker`), so the
collector's retained status never reaches the ACL tests' subscribers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from collector.service import default_client_id
from collector.stores.base import ResultFilter, open_store
from edgemeter.demo.broker import free_port, stop_process
from shared.messages import AgentManifest, JobCommand, Status
from shared.schema import DeviceManifest
from tests.conftest import unavailable
from tests.deploy.test_broker_acl import ACCEPTED, SUCCESS, Probe
from tests.factories import make_result
from tests.secure_broker import SecureBroker, missing_tools

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "takeover-test-token"
KEEPALIVE_S = 5
ATTACK_S = 20.0
RESULTS = 300
JOBS = 6
MODEL = b"TFL3" + bytes(1024)
COLLECTOR_STATUS = "edgemeter/v1/_collector/+/status"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    missing = missing_tools()
    if missing:
        unavailable(f"the secured test broker needs {', '.join(missing)}")
    with SecureBroker(tmp_path_factory.mktemp("takeover-broker")) as started:
        yield started


class Collector:
    """``edgemeter collector serve`` as the ``collector`` login, with its HTTP API."""

    def __init__(self, broker: SecureBroker, folder: Path) -> None:
        self.db_url = f"sqlite:///{folder}/results.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "collector.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
        env.update({"EDGEMETER_COLLECTOR__MQTT__KEEPALIVE_S": str(KEEPALIVE_S),
                    "EDGEMETER_COLLECTOR__HTTP__TOKEN": TOKEN})
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgemeter.cli", "collector", "serve",
                 "--mqtt", broker.plain_url, "--mqtt-username", broker.collector.username,
                 "--mqtt-password-file", str(broker.collector.password_file),
                 "--db", self.db_url, "--http", f"127.0.0.1:{self.port}"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=10,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.http.get("/api/runs").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            stop_process(self.proc, timeout_s=15)


@pytest.fixture()
def collector(broker: SecureBroker, tmp_path: Path) -> Iterator[Collector]:
    started = Collector(broker, tmp_path)
    try:
        yield started
    finally:
        started.close()


def observer(broker: SecureBroker, probes: list[Probe]) -> Probe:
    """A second collector login (a login is a client id) reading the collectors' presence."""
    user = broker.add_device(f"watch-{uuid.uuid4().hex[:6]}", collector=True)
    deadline = time.monotonic() + 10
    while True:
        probe = Probe(broker.ports.plain, user)
        probes.append(probe)
        if probe.connect() == SUCCESS:
            probe.subscribe(COLLECTOR_STATUS)
            return probe
        assert time.monotonic() < deadline, "the new login never worked (reload)"


def states(probe: Probe, until: str, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not seen or seen[-1] != until:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {until!r} status within {timeout_s:g} s; saw {seen}"
        try:
            _, payload = probe.messages.get(timeout=remaining)
        except Exception:  # queue.Empty
            continue
        seen.append(json.loads(payload)["state"])
    return seen


@pytest.fixture()
def probes() -> Iterator[list[Probe]]:
    opened: list[Probe] = []
    yield opened
    for probe in opened:
        probe.close()


def test_the_collector_is_online_on_the_deploy_broker_and_offline_after_a_kill_9(
    broker: SecureBroker, collector: Collector, probes: list[Probe]
) -> None:
    watch = observer(broker, probes)
    assert "online" in states(watch, "online", 20)
    os.killpg(collector.proc.pid, signal.SIGKILL)
    collector.proc.wait(10)
    # the broker sends the Last Will once 1.5 x keepalive pass without a packet
    assert states(watch, "offline", KEEPALIVE_S * 1.5 + 15)[-1] == "offline"


def test_a_device_using_other_client_ids_loses_no_result_and_no_job(
    broker: SecureBroker, collector: Collector, probes: list[Probe]
) -> None:
    fleet = broker.fleet
    store = open_store(collector.db_url)
    try:
        model_sha = store.add_model("attack.tflite", MODEL)
    finally:
        store.close()
    victim = Probe(broker.ports.plain, broker.user("dev-b"), client_id="edgemeter-agent-dev-b",
                   persistent=True)
    probes.append(victim)
    assert victim.connect() == SUCCESS
    victim.subscribe(f"edgemeter/v1/{fleet}/dev-b/cmd")
    birth = Status(device_id="dev-b", fleet=fleet, status="online", bd_seq=1,
                   sent_at=datetime.now(timezone.utc),
                   manifest=AgentManifest(agent_version="t", device=DeviceManifest(hostname="b")))
    assert victim.publish(f"edgemeter/v1/{fleet}/dev-b/status",
                          birth.model_dump_json().encode()) in ACCEPTED
    deadline = time.monotonic() + 15
    while collector.http.get("/api/devices/dev-b").status_code != 200:
        assert time.monotonic() < deadline, "the collector never stored dev-b's birth"
        time.sleep(0.1)

    stop = threading.Event()
    attempts: list[int] = []

    def attack() -> None:
        stolen = [default_client_id(socket.gethostname()), "collector", "edgemeter-agent-dev-b",
                  "dev-b"]
        while not stop.is_set():
            thief = Probe(broker.ports.plain, broker.user("dev-a"),
                          client_id=stolen[len(attempts) % len(stolen)])
            try:
                attempts.append(thief.connect() or 0)
                time.sleep(0.1)
            finally:
                thief.close()

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    sent_results: list[str] = []
    job_ids: list[str] = []
    started = time.monotonic()
    try:
        for seq in range(RESULTS):
            result = make_result(device_id="dev-b", fleet=fleet, seq=seq + 1)
            assert victim.publish(f"edgemeter/v1/{fleet}/dev-b/result",
                                  result.model_dump_json().encode()) in ACCEPTED
            sent_results.append(str(result.run_id))
            if seq % (RESULTS // JOBS) == 0:
                answer = collector.http.post("/api/jobs", json={
                    "devices": ["dev-b"], "model": {"sha256": model_sha, "name": "attack.tflite"}})
                assert answer.status_code == 200, answer.text
                job_ids += answer.json()["job_ids"]
            # spread the flow over the attack window
            time.sleep(max(0.0, started + ATTACK_S * (seq + 1) / RESULTS - time.monotonic()))
    finally:
        stop.set()
        attacker.join(10)
    assert len(attempts) > 20 and all(code == SUCCESS for code in attempts)

    received: list[str] = []
    deadline = time.monotonic() + 20
    while len(received) < len(job_ids) and time.monotonic() < deadline:
        try:
            topic, payload = victim.messages.get(timeout=1)
        except Exception:  # queue.Empty
            continue
        if topic.endswith("/cmd"):
            received.append(JobCommand.model_validate_json(payload).job_id)
    assert sorted(received) == sorted(job_ids), "jobs lost on the way to dev-b"

    def stored() -> set[str]:
        reader = open_store(collector.db_url, must_exist=True)
        try:
            return {str(r.run_id) for r in reader.list_results(ResultFilter(device_id="dev-b"))}
        finally:
            reader.close()

    deadline = time.monotonic() + 30
    while stored() != set(sent_results):
        assert time.monotonic() < deadline, (
            f"{len(set(sent_results) - stored())} of {RESULTS} results lost: "
            + collector.log.read_text()[-2000:])
        time.sleep(0.2)
    assert _takeovers(broker) == "", "a session was taken over"


def _takeovers(broker: SecureBroker) -> str:
    """The broker's 'already connected, closing old connection' lines (a session taken over)."""
    return "\n".join(line for line in broker.log().splitlines()
                     if "already connected" in line.lower())
