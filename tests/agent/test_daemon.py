"""The fleet daemon on a fake link: presence, jobs and their acks, delivery on receipts, crashes.

The link is the only fake (it records what would go to the broker); the test drives the daemon's
loop itself (``start(loop=False)`` and ``pump``) with an injected clock. Jobs run through the
real job runner in child processes where the test is about them, on the team's real models.
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


class FakeClock:
    """The daemon's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_daemon(settings: AgentSettings, runner: Any,
                clock: Callable[[], float] | None = None) -> tuple[AgentDaemon, FakeLink]:
    links: list[FakeLink] = []

    def factory(**kw: Any) -> FakeLink:
        links.append(FakeLink(**kw))
        return links[0]

    daemon = AgentDaemon(
        settings, spool=Spool(settings.spool.path), link_factory=factory, job_runner=runner,
        model_cache=ModelCache(settings.models.cache_dir), manifest=manifest,
        telemetry=TelemetryProbe(), clock_s=clock or time.monotonic,
        workdir=settings.spool.path.parent,
    )
    return daemon, links[0]


@pytest.fixture
def running(settings: AgentSettings,
            clock: FakeClock) -> Iterator[tuple[AgentDaemon, FakeLink, StubRunner]]:
    runner = StubRunner()
    daemon, link = make_daemon(settings, runner, clock)
    daemon.start(loop=False)
    daemon.pump()
    yield daemon, link, runner
    daemon.stop()


def settle(daemon: AgentDaemon, predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Drive the daemon's loop (jobs run on their own threads) until ``predicate`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        daemon.pump(timeout_s=0.02)
        if predicate():
            return True
    return predicate()


def states(link: FakeLink, job_id: str) -> list[str]:
    return [a["state"] for a in link.messages("ack") if a["job_id"] == job_id]


def send(link: FakeLink, job: JobCommand | bytes) -> None:
    payload = job if isinstance(job, bytes) else job.model_dump_json().encode()
    link.on_message(f"{TOPIC}/cmd", payload)


def test_every_connect_registers_a_will_with_a_new_bd_seq_and_publishes_a_retained_birth(
    running: tuple[AgentDaemon, FakeLink, StubRunner],
) -> None:
    daemon, link, _ = running
    link.drop()
    link.reconnect()
    daemon.pump()
    wills = [Status.model_validate_json(w) for w in link.wills]
    assert [(w.status, w.bd_seq) for w in wills] == [("offline", 1), ("offline", 2)]
    assert all(w.manifest is not None for w in wills)  # `fleet ls` after a death shows the board
    births = [(t, Status.model_validate_json(p), r) for t, p, r in link.published
              if t == f"{TOPIC}/status"]
    assert [(b.status, b.bd_seq, r) for _, b, r in births] == [("online", 1, True), ("online", 2, True)]
    assert births[0][1].manifest is not None
    assert f"{TOPIC}/cmd" in link.subscriptions and f"{TOPIC}/receipt" in link.subscriptions


def test_a_graceful_stop_publishes_offline_itself(settings: AgentSettings) -> None:
    daemon, link = make_daemon(settings, StubRunner())
    daemon.start(loop=False)
    daemon.pump()
    daemon.stop()
    last = Status.model_validate_json(link.published[-1][1])
    assert (last.status, last.bd_seq, link.published[-1][2]) == ("offline", 1, True)


def test_a_job_is_accepted_run_and_its_result_kept_until_the_receipt(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, _runner = running
    job = JobCommand(job_id="j1", model=cached_model)
    send(link, job)
    assert settle(daemon, lambda: "done" in states(link, "j1"))
    assert states(link, "j1") == ["accepted", "running", "done"]
    done = link.messages("ack")[-1]
    results = link.messages("result")
    assert [r["run_id"] for r in results] == [done["run_id"]]
    assert results[0]["labels"]["job_id"] == "j1"
    assert daemon.spool.depth() == 1
    link.on_message(f"{TOPIC}/receipt", Receipt(run_ids=[done["run_id"]]).model_dump_json().encode())
    daemon.pump()
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
    daemon, link, runner = running
    send(link, payload)
    daemon.pump()
    ack = link.messages("ack")[-1]
    assert ack["state"] == "rejected"
    assert reason in ack["reason"], ack
    assert runner.ran == []


def test_a_model_the_cache_cannot_get_fails_the_job_and_the_next_job_runs(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon, link, _ = running
    send(link, JobCommand(job_id="missing", model={"sha256": "b" * 64, "name": "x.tflite"}))
    send(link, JobCommand(job_id="next", model=cached_model))
    assert settle(daemon, lambda: "done" in states(link, "next"))
    failed = [a for a in link.messages("ack") if a["job_id"] == "missing"][-1]
    assert failed["state"] == "failed" and "not cached" in failed["reason"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("job missing: model x.tflite not fetched" in m for m in warned), warned


def test_acks_made_while_the_broker_is_away_are_sent_on_reconnect(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, _ = running
    link.drop()
    send(link, JobCommand(job_id="offline", model=cached_model))
    assert settle(daemon, lambda: daemon.spool.depth() == 1)
    assert states(link, "offline") == []
    link.reconnect()
    daemon.pump()
    assert states(link, "offline") == ["accepted", "running", "done"]
    assert len(link.messages("result")) == 1


def test_telemetry_reports_the_spool_depth(
    running: tuple[AgentDaemon, FakeLink, StubRunner], clock: FakeClock,
) -> None:
    daemon, link, _ = running
    daemon.spool.put(make_result(device_id=DEVICE, fleet="lab"))
    clock.advance(daemon.settings.telemetry_s)
    daemon.pump()
    telemetry = link.messages("telemetry")[-1]
    assert telemetry["spool_depth"] == 1 and telemetry["device_id"] == DEVICE


# -- the real job runner, in child processes ------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_real_job_runs_the_model_in_a_child_process(
    settings: AgentSettings, cached_model: dict[str, str],
) -> None:
    daemon, link = make_daemon(settings, ChildProcessJobRunner())
    daemon.start(loop=False)
    try:
        send(link, JobCommand(job_id="real", model=cached_model,
                              settings={"iterations": 20, "warmup": 2}))
        assert settle(daemon, lambda: {"done", "failed"} & set(states(link, "real")), 120)
        ack = link.messages("ack")[-1]
        assert ack["state"] == "done", ack["reason"]
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
    daemon.start(loop=False)
    try:
        send(link, JobCommand(job_id="boom", model=cached_model))
        send(link, JobCommand(job_id="after", model=cached_model))
        assert settle(daemon, lambda: len([s for s in states(link, "after") if s != "accepted"]) >= 2)
        boom = [a for a in link.messages("ack") if a["job_id"] == "boom"][-1]
        assert boom["state"] == "failed" and "crashed (SIGSEGV)" in boom["reason"]
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
    daemon.start(loop=False)
    try:
        send(link, JobCommand(job_id="garbage", model={"sha256": sha, "name": "junk.tflite"}))
        assert settle(daemon, lambda: {"done", "failed"} & set(states(link, "garbage")), 120)
        ack = link.messages("ack")[-1]
        assert ack["state"] == "failed" and "\n" not in ack["reason"]
    finally:
        daemon.stop()


def test_a_command_delivered_twice_runs_once_and_is_acked_again(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, runner = running
    job = JobCommand(job_id="twice", model=cached_model)
    send(link, job)
    assert settle(daemon, lambda: "done" in states(link, "twice"))
    send(link, job)
    daemon.pump()
    # run once, never accepted twice; the final state is said again (the collector may lack it)
    assert states(link, "twice") == ["accepted", "running", "done", "done"]
    assert len(runner.ran) == 1


def test_a_job_runs_its_model_under_the_name_the_job_gave(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, runner = running
    send(link, JobCommand(job_id="named", model=cached_model))
    assert settle(daemon, lambda: "done" in states(link, "named"))
    assert runner.ran[0].name == "vww_96_int8.tflite"


# -- acks: in order, each once, final ones kept until their receipt -------------------------------


class GatedRunner:
    """A job runner whose jobs end when the test says so (or when cancelled: ``cancelled``)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()

    def run(self, settings: Any, model: Path, seq: int, progress: Any,
            cancel: threading.Event) -> JobOutcome:
        self.started.append(model.name)
        while not self.release.wait(0.01):
            if cancel.is_set():
                return JobOutcome("cancelled", "cancelled by a cancel job")
        return JobOutcome("done", result=make_result(device_id=DEVICE, fleet="lab", seq=seq))


def final_states(link: FakeLink) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ack in link.messages("ack"):
        out.setdefault(ack["job_id"], []).append(ack["state"])
    return out


def test_acks_go_out_in_order_each_once_while_the_broker_comes_and_goes(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
    clock: FakeClock,
) -> None:
    daemon, link, _ = running
    acked: set[str] = set()
    for n in range(12):
        send(link, JobCommand(job_id=f"j{n}", model=cached_model))
        if n % 4 == 1:
            link.drop()  # the broker goes away between two commands, and comes back
        daemon.pump()
        clock.advance(0.5)
        if n % 4 == 3:
            link.reconnect()
        # the collector confirms every final ack it has seen (what a receipt does)
        finals = [a["job_id"] for a in link.messages("ack") if a["state"] == "done"]
        if link.connected and set(finals) - acked:
            acked |= set(finals)
            link.on_message(f"{TOPIC}/receipt", Receipt(job_ids=sorted(acked)).model_dump_json()
                            .encode())
    link.reconnect()
    assert settle(daemon, lambda: all(
        "done" in final_states(link).get(f"j{n}", []) for n in range(12)))
    for n in range(12):
        said = final_states(link)[f"j{n}"]
        assert said[:3] == ["accepted", "running", "done"], said
        assert set(said[3:]) <= {"done"}, said  # only the final state is ever said again


def test_a_final_ack_is_said_again_after_each_reconnect_until_its_receipt(
    running: tuple[AgentDaemon, FakeLink, StubRunner], cached_model: dict[str, str],
) -> None:
    daemon, link, _ = running
    send(link, JobCommand(job_id="kept", model=cached_model))
    assert settle(daemon, lambda: "done" in states(link, "kept"))
    for _ in range(2):  # the broker lost the ack after its PUBACK, twice
        link.drop()
        link.reconnect()
        daemon.pump()
    assert states(link, "kept") == ["accepted", "running", "done", "done", "done"]
    assert daemon.ledger.unconfirmed() == 1
    link.on_message(f"{TOPIC}/receipt", Receipt(job_ids=["kept"]).model_dump_json().encode())
    daemon.pump()
    assert daemon.ledger.unconfirmed() == 0
    link.drop()
    link.reconnect()
    daemon.pump()
    assert states(link, "kept") == ["accepted", "running", "done", "done", "done"]


def test_a_duplicate_command_for_an_open_job_is_not_accepted_again(
    settings: AgentSettings, cached_model: dict[str, str], clock: FakeClock,
) -> None:
    runner = GatedRunner()
    daemon, link = make_daemon(settings, runner, clock)
    daemon.start(loop=False)
    try:
        job = JobCommand(job_id="once", model=cached_model)
        send(link, job)
        send(link, JobCommand(job_id="queued", model=cached_model))
        daemon.pump()
        send(link, job)
        send(link, JobCommand(job_id="queued", model=cached_model))
        daemon.pump()
        assert states(link, "once") == ["accepted", "running"]
        assert states(link, "queued") == ["accepted"]
        runner.release.set()
        assert settle(daemon, lambda: "done" in states(link, "queued"))
        assert states(link, "once") == ["accepted", "running", "done"]
        assert states(link, "queued") == ["accepted", "running", "done"]
    finally:
        runner.release.set()
        daemon.stop()


# -- crashes and stops ----------------------------------------------------------------------------


def test_a_restart_after_a_crash_reports_the_interrupted_jobs_failed_before_new_ones(
    settings: AgentSettings, cached_model: dict[str, str], clock: FakeClock,
) -> None:
    crashed_runner = GatedRunner()
    crashed, link = make_daemon(settings, crashed_runner, clock)
    crashed.start(loop=False)
    send(link, JobCommand(job_id="mid-job", model=cached_model))
    send(link, JobCommand(job_id="waiting", model=cached_model))
    assert settle(crashed, lambda: crashed_runner.started != [])
    assert states(link, "mid-job") == ["accepted", "running"]
    # a kill -9: nothing more from that daemon (its job thread is left blocked, then released)

    restarted, link2 = make_daemon(settings, StubRunner(), clock)
    try:
        link2.drop()
        restarted.start(loop=False)
        send(link2, JobCommand(job_id="new", model=cached_model))
        link2.reconnect()
        assert settle(restarted, lambda: "done" in states(link2, "new"))
        acks = [(a["job_id"], a["state"], a.get("reason")) for a in link2.messages("ack")]
        assert acks[:2] == [("mid-job", "failed", "agent restarted during the job"),
                            ("waiting", "failed", "agent restarted during the job")]
        assert [s for j, s, _ in acks if j == "new"] == ["accepted", "running", "done"]
    finally:
        crashed_runner.release.set()
        restarted.stop()


def test_a_stop_cancels_the_running_and_queued_jobs_saying_agent_stopping(
    settings: AgentSettings, cached_model: dict[str, str], clock: FakeClock,
) -> None:
    runner = GatedRunner()
    daemon, link = make_daemon(settings, runner, clock)
    daemon.start(loop=False)
    send(link, JobCommand(job_id="long", model=cached_model))
    send(link, JobCommand(job_id="next", model=cached_model))
    assert settle(daemon, lambda: runner.started != [])
    daemon.stop()
    for job_id in ("long", "next"):
        last = [a for a in link.messages("ack") if a["job_id"] == job_id][-1]
        assert (last["state"], last["reason"]) == ("cancelled", "agent stopping")
    assert Status.model_validate_json(link.published[-1][1]).status == "offline"


def test_a_cancel_job_says_cancelled_by_a_cancel_job(
    settings: AgentSettings, cached_model: dict[str, str], clock: FakeClock,
) -> None:
    runner = GatedRunner()
    daemon, link = make_daemon(settings, runner, clock)
    daemon.start(loop=False)
    try:
        send(link, JobCommand(job_id="target", model=cached_model))
        assert settle(daemon, lambda: runner.started != [])
        send(link, JobCommand(job_id="target", kind="cancel"))
        assert settle(daemon, lambda: "cancelled" in states(link, "target"))
        last = [a for a in link.messages("ack") if a["job_id"] == "target"][-1]
        assert last["reason"] == "cancelled by a cancel job"
    finally:
        runner.release.set()
        daemon.stop()


@pytest.mark.subprocess
def test_stale_job_folders_are_removed_at_start_and_a_live_daemons_stay(
    settings: AgentSettings, tmp_path: Path,
) -> None:
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    workdir = settings.spool.path.parent
    stale = workdir / f"edgemeter-job-{gone.pid}-abc123"
    legacy = workdir / "edgemeter-job-k2j3h4"
    mine = workdir / f"edgemeter-job-{os.getpid()}-def456"
    for folder in (stale, legacy, mine):
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("{}")
    daemon, _link = make_daemon(settings, StubRunner())
    daemon.start(loop=False)
    daemon.stop()
    assert not stale.exists() and not legacy.exists()
    assert mine.exists(), "a folder of a running daemon (this process) stays"


@pytest.mark.slow
def test_the_job_child_dies_when_its_daemon_is_killed(
    tmp_path: Path, shared_models: Path,
) -> None:
    import signal
    import subprocess
    import sys

    import psutil

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from agent.config import BenchSettings\n"
        "from agent.daemon.jobs import ChildProcessJobRunner\n"
        "def progress(data):\n"
        "    print(data.get('phase'), flush=True)\n"
        "settings = BenchSettings.model_validate({'power': 'none', 'fidelity': 0, 'threads': 1,\n"
        "    'device_id': 'd', 'fleet': 'f', 'iterations': 10000000, 'warmup': 0})\n"
        "ChildProcessJobRunner(workdir=Path(sys.argv[2])).run(settings, Path(sys.argv[1]), 1,\n"
        "    progress, threading.Event())\n")
    work = tmp_path / "work"
    work.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(shared_models / "vww_96_int8.tflite"),
                               str(work)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert parent.stdout is not None
        for line in parent.stdout:
            if line.strip() == "measure":
                break
        children = psutil.Process(parent.pid).children(recursive=True)
        assert children, "the job runs in a child process"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"orphaned job processes: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_the_ledger_gives_up_the_oldest_unconfirmed_final_acks_past_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.daemon import ledger as ledger_module
    from agent.daemon.ledger import JobLedger

    monkeypatch.setattr(ledger_module, "MAX_UNCONFIRMED_FINALS", 20)
    book = JobLedger(tmp_path / "spool.db")
    cap = 20
    for n in range(cap + 5):
        job = JobCommand(job_id=f"j{n}", model={"sha256": "a" * 64, "name": "m.tflite"})
        book.record(job, "accepted", b"a")
        book.record(job.job_id, "done", b"d")
        while (ack := book.next_ack()) is not None:
            book.published(ack)
    assert book.unconfirmed() == cap
    assert book.reannounce() == cap
    assert book.next_ack() is not None and book.next_ack().job_id == "j5"  # type: ignore[union-attr]
