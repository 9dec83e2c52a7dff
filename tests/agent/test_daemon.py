"""The fleet daemon on a fake link: presence, jobs and their acks, delivery on receipts.

The link is the only fake (it records what would go to the broker); jobs run through the real
job runner in child processes where the test is about them, on the team's real models.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.daemon.config import AgentSettings
from agent.daemon.jobs import ChildProcessJobRunner, JobOutcome
from agent.daemon.service import AgentDaemon
from agent.daemon.telemetry import TelemetryProbe
from agent.model_cache import ModelCache
from agent.spool import Spool
from shared.messages import AgentManifest, JobCommand, Receipt, Status
from shared.payload import unpack
from shared.schema import DeviceManifest
from tests.factories import make_result

DEVICE = "pi-07"
TOPIC = f"edgemeter/v1/lab/{DEVICE}"


class FakeLink:
    """Records publishes as the broker would receive them; ``drop()`` and ``reconnect()``."""

    def __init__(self, will: Callable[[], tuple[str, bytes]], on_connect: Callable[[Any], None],
                 on_message: Callable[[str, bytes], None]) -> None:
        self.will_fn, self.on_connect, self.on_message = will, on_connect, on_message
        self.connected = False
        self.published: list[tuple[str, bytes, bool]] = []
        self.subscriptions: list[str] = []
        self.wills: list[bytes] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        self.reconnect()

    def reconnect(self) -> None:
        self.wills.append(self.will_fn()[1])
        self.connected = True
        self.on_connect(self)

    def drop(self) -> None:
        self.connected = False

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0,
                retain: bool = False) -> None:
        from shared.errors import BrokerError

        if not self.connected:
            raise BrokerError("not connected")
        with self.lock:
            self.published.append((topic, payload, retain))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscriptions.append(topic)

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 5.0) -> None:
        if last is not None and self.connected:
            self.publish(last[0], last[1], retain=True)
        self.connected = False

    def messages(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(unpack(p)) for t, p, _ in self.published if t == f"{TOPIC}/{kind}"]


class StubRunner:
    """Returns a ready result (tests about the daemon's bookkeeping, not the measurement)."""

    def __init__(self) -> None:
        self.ran: list[Path] = []

    def run(self, settings: Any, model: Path, seq: int, progress: Any,
            cancel: threading.Event) -> JobOutcome:
        self.ran.append(model)
        assert model.is_file(), "the model is readable under its name while the job runs"
        progress({"phase": "measure", "iterations_done": 10, "running_p50_ms": 1.5})
        return JobOutcome("done", result=make_result(device_id=DEVICE, fleet="lab", seq=seq))


def manifest() -> AgentManifest:
    return AgentManifest(agent_version="test", device=DeviceManifest(hostname="h"))


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(device_id=DEVICE, fleet="lab", spool={"path": tmp_path / "spool.db"},
                         models={"cache_dir": tmp_path / "models"},
                         bench={"power": "none", "profile": "quick", "fidelity": 0, "threads": 1})


@pytest.fixture
def cached_model(tmp_path: Path, shared_models: Path) -> dict[str, str]:
    source = shared_models / "vww_96_int8.tflite"
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    (tmp_path / "models").mkdir(exist_ok=True)
    shutil.copy(source, tmp_path / "models" / f"{sha}.tflite")
    return {"sha256": sha, "name": "vww_96_int8.tflite"}


def make_daemon(settings: AgentSettings, runner: Any) -> tuple[AgentDaemon, FakeLink]:
    links: list[FakeLink] = []

    def factory(**kw: Any) -> FakeLink:
        links.append(FakeLink(**kw))
        return links[0]

    daemon = AgentDaemon(
        settings, spool=Spool(settings.spool.path), link_factory=factory, job_runner=runner,
        model_cache=ModelCache(settings.models.cache_dir), manifest=manifest,
        telemetry=TelemetryProbe(),
    )
    return daemon, links[0]


@pytest.fixture
def running(settings: AgentSettings) -> Iterator[tuple[AgentDaemon, FakeLink, StubRunner]]:
    runner = StubRunner()
    daemon, link = make_daemon(settings, runner)
    daemon.start()
    yield daemon, link, runner
    daemon.stop()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def states(link: FakeLink, job_id: str) -> list[str]:
    return [a["state"] for a in link.messages("ack") if a["job_id"] == job_id]


def send(link: FakeLink, job: JobCommand | bytes) -> None:
    payload = job if isinstance(job, bytes) else job.model_dump_json().encode()
    link.on_message(f"{TOPIC}/cmd", payload)


def test_every_connect_registers_a_will_with_a_new_bd_seq_and_publishes_a_retained_birth(
    running: tuple[AgentDaemon, FakeLink, StubRunner],
) -> None:
    _daemon, link, _ = running
    link.drop()
    link.reconnect()
    wills = [Status.model_validate_json(w) for w in link.wills]
    assert [(w.status, w.bd_seq) for w in wills] == [("offline", 1), ("offline", 2)]
    births = [(t, Status.model_validate_json(p), r) for t, p, r in link.published
              if t == f"{TOPIC}/status"]
    assert [(b.status, b.bd_seq, r) for _, b, r in births] == [("online", 1, True), ("online", 2, True)]
    assert births[0][1].manifest is not None
    assert f"{TOPIC}/cmd" in link.subscriptions and f"{TOPIC}/receipt" in link.subscriptions


def test_a_graceful_stop_publishes_offline_itself(settings: AgentSettings) -> None:
    daemon, link = make_daemon(settings, StubRunner())
    daemon.start()
    daemon.stop()
    last = Status.model_validate_json(link.published[-1][1])
    assert (last.status, last.bd_seq, link.published[-1][2]) == ("offline", 1, True)


def test_a_job_is_accepted_run_and_its_result_kept_until_the_receipt(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, _runner = running
    job = JobCommand(job_id="j1", model=cached_model)
    send(link, job)
    assert wait_for(lambda: "done" in states(link, "j1"))
    assert states(link, "j1") == ["accepted", "running", "done"]
    done = link.messages("ack")[-1]
    results = link.messages("result")
    assert [r["run_id"] for r in results] == [done["run_id"]]
    assert results[0]["labels"]["job_id"] == "j1"
    assert daemon.spool.depth() == 1
    daemon.courier.on_receipt(Receipt(run_ids=[done["run_id"]]).model_dump_json().encode())
    assert daemon.spool.depth() == 0
    assert any(p["phase"] == "fetch" for p in link.messages("progress"))


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "invalid job"),
    (b'{"job_id": "j2", "model": {"sha256": "abc", "name": "m.onnx"}}', "sha256"),
    (json.dumps({"job_id": "j3", "model": {"sha256": "a" * 64, "name": "../../etc/passwd.onnx"}})
     .encode(), "plain file name"),
    (json.dumps({"job_id": "j4", "model": {"sha256": "a" * 64, "name": "m.onnx"},
                 "settings": {"iterations": 0}}).encode(), "iterations"),
    (json.dumps({"job_id": "j5", "model": {"sha256": "a" * 64, "name": "m.onnx"},
                 "settings": {"scenario": "server"}}).encode(), "target-qps"),
    (json.dumps({"job_id": "j6", "model": {"sha256": "a" * 64, "name": "m.onnx"},
                 "settings": {"inputs": "/etc"}}).encode(), "invalid job"),
])
def test_a_bad_job_is_rejected_with_its_reason(
    running: tuple[AgentDaemon, FakeLink, StubRunner], payload: bytes, reason: str,
) -> None:
    _daemon, link, runner = running
    send(link, payload)
    ack = link.messages("ack")[-1]
    assert ack["state"] == "rejected"
    assert reason in ack["reason"], ack
    assert runner.ran == []


def test_a_model_the_cache_cannot_get_fails_the_job_and_the_next_job_runs(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    _daemon, link, _ = running
    send(link, JobCommand(job_id="missing", model={"sha256": "b" * 64, "name": "x.tflite"}))
    send(link, JobCommand(job_id="next", model=cached_model))
    assert wait_for(lambda: "done" in states(link, "next"))
    failed = [a for a in link.messages("ack") if a["job_id"] == "missing"][-1]
    assert failed["state"] == "failed" and "not cached" in failed["reason"]


def test_acks_made_while_the_broker_is_away_are_sent_on_reconnect(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, _ = running
    link.drop()
    send(link, JobCommand(job_id="offline", model=cached_model))
    assert wait_for(lambda: daemon.spool.depth() == 1)
    assert states(link, "offline") == []
    link.reconnect()
    assert states(link, "offline") == ["accepted", "running", "done"]
    assert len(link.messages("result")) == 1


def test_telemetry_reports_the_spool_depth(
    running: tuple[AgentDaemon, FakeLink, StubRunner],
) -> None:
    daemon, link, _ = running
    daemon.spool.put(make_result(device_id=DEVICE, fleet="lab"))
    daemon._next_telemetry_s = 0.0
    daemon.tick()
    telemetry = link.messages("telemetry")[-1]
    assert telemetry["spool_depth"] == 1 and telemetry["device_id"] == DEVICE


# -- the real job runner, in child processes ------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_real_job_runs_the_model_in_a_child_process(
    settings: AgentSettings, cached_model: dict[str, str],
) -> None:
    daemon, link = make_daemon(settings, ChildProcessJobRunner())
    daemon.start()
    try:
        send(link, JobCommand(job_id="real", model=cached_model,
                              settings={"iterations": 20, "warmup": 2}))
        assert wait_for(lambda: {"done", "failed"} & set(states(link, "real")), 120)
        ack = link.messages("ack")[-1]
        assert ack["state"] == "done", ack
        result = link.messages("result")[0]
        assert result["model"]["sha256"] == cached_model["sha256"]
        assert result["latency_ms"]["count"] == 20
        phases = [p["phase"] for p in link.messages("progress")]
        assert {"fetch", "load", "warmup", "measure"} <= set(phases), phases
        counted = [p for p in link.messages("progress") if p.get("iterations_done")]
        assert counted and counted[-1]["iterations_done"] == 20
    finally:
        daemon.stop()


@pytest.mark.subprocess
def test_a_runtime_that_crashes_fails_that_job_and_the_daemon_runs_the_next(
    settings: AgentSettings, cached_model: dict[str, str], tmp_path: Path,
) -> None:
    # A child that dies of SIGSEGV, as a native runtime does on a hostile model file.
    crasher = tmp_path / "crashing-python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(crasher.stat().st_mode | stat.S_IEXEC)
    daemon, link = make_daemon(settings, ChildProcessJobRunner(python=str(crasher)))
    daemon.start()
    try:
        send(link, JobCommand(job_id="boom", model=cached_model))
        send(link, JobCommand(job_id="after", model=cached_model))
        assert wait_for(lambda: len([s for s in states(link, "after") if s != "accepted"]) >= 2)
        boom = [a for a in link.messages("ack") if a["job_id"] == "boom"][-1]
        assert boom["state"] == "failed" and "crashed (SIGSEGV)" in boom["reason"]
        assert daemon._worker is not None and daemon._worker.is_alive()
    finally:
        daemon.stop()


@pytest.mark.subprocess
def test_a_corrupt_model_fails_its_job_with_a_one_line_reason(
    settings: AgentSettings, tmp_path: Path,
) -> None:
    garbage = os.urandom(4096)
    sha = hashlib.sha256(garbage).hexdigest()
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / f"{sha}.tflite").write_bytes(garbage)
    daemon, link = make_daemon(settings, ChildProcessJobRunner())
    daemon.start()
    try:
        send(link, JobCommand(job_id="garbage", model={"sha256": sha, "name": "junk.tflite"}))
        assert wait_for(lambda: {"done", "failed"} & set(states(link, "garbage")), 120)
        ack = link.messages("ack")[-1]
        assert ack["state"] == "failed" and "\n" not in ack["reason"]
    finally:
        daemon.stop()


def test_a_command_delivered_twice_runs_once_and_is_acked_again(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    _daemon, link, runner = running
    job = JobCommand(job_id="twice", model=cached_model)
    send(link, job)
    assert wait_for(lambda: "done" in states(link, "twice"))
    send(link, job)
    assert states(link, "twice") == ["accepted", "running", "done", "done"]
    assert len(runner.ran) == 1


def test_a_job_runs_its_model_under_the_name_the_job_gave(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    _daemon, link, runner = running
    send(link, JobCommand(job_id="named", model=cached_model))
    assert wait_for(lambda: "done" in states(link, "named"))
    assert runner.ran[0].name == "vww_96_int8.tflite"
