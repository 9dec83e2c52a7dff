"""A real ``agent run`` process under faults: broker kill -9 loops, a daemon kill -9 mid-job, SIGTERM.

The broker is the reliability tests' :class:`tests.reliability.services.PersistentMosquitto`
(persistence on disk, restarted on the same port after a ``kill -9``). An :class:`Observer`
stands in for the collector: a persistent-session subscriber to the device's acks that sends
the receipt for each final ack it has seen (``Receipt(job_ids=...)``), and re-sends a command
that no ack answered after a while, as a collector's dispatch may.

An ack the broker delivers twice (QoS 1 at least once, a final ack re-announced after a
reconnect) carries the same payload both times: the same ack. Each job must show its distinct
acks in order — ``accepted``, ``running``, one final state — each once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from shared.messages import JobCommand, Receipt
from shared.mqtt import MqttConnection, connect
from shared.topics import TopicKind, Topics
from tests.reliability.services import PersistentMosquitto

REPO = Path(__file__).resolve().parents[2]
FINAL = {"done", "failed", "cancelled"}
KEEPALIVE_S = 5
pytestmark = [pytest.mark.mqtt, pytest.mark.slow]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


class Observer:
    """The collector's side of jobs, reduced: acks in, receipts and (re-)sent commands out."""

    def __init__(self, url: str, fleet: str, device: str) -> None:
        self.fleet, self.device = fleet, device
        self.lock = threading.Lock()
        self.acks: dict[str, list[bytes]] = {}
        self.commands: dict[str, tuple[bytes, float]] = {}
        self.births = 0
        self.conn: MqttConnection = connect(
            url, f"observer-{uuid.uuid4().hex[:6]}", clean_start=False, session_expiry_s=3600,
            on_connect=self._subscribe, on_message=self._on_message)
        self.conn.client.reconnect_delay_set(1, 2)

    def _subscribe(self, conn: MqttConnection) -> None:
        conn.subscribe(Topics.build(self.fleet, self.device, TopicKind.ACK), qos=1)
        conn.subscribe(Topics.build(self.fleet, self.device, TopicKind.STATUS), qos=1)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/status"):
            if json.loads(payload).get("status") == "online":
                with self.lock:
                    self.births += 1
            return
        ack = json.loads(payload)
        with self.lock:
            self.acks.setdefault(ack["job_id"], []).append(payload)
        if ack["state"] in FINAL:  # stored: say so (on the network thread: queue, never wait)
            receipt = Receipt(job_ids=[ack["job_id"]]).model_dump_json().encode()
            self.conn.publish(Topics.build(self.fleet, self.device, TopicKind.RECEIPT), receipt,
                              qos=1, wait=False)

    def send(self, job: JobCommand) -> None:
        payload = job.model_dump_json().encode()
        with self.lock:
            self.commands[job.job_id] = (payload, time.monotonic())
        self.conn.publish(Topics.build(self.fleet, self.device, TopicKind.CMD), payload, qos=1,
                          wait=False)

    def resend_unanswered(self, after_s: float) -> None:
        now = time.monotonic()
        with self.lock:
            due = [(j, p) for j, (p, at) in self.commands.items()
                   if j not in self.acks and now - at > after_s]
            for job_id, payload in due:
                self.commands[job_id] = (payload, now)
        for _job_id, payload in due:
            self.conn.publish(Topics.build(self.fleet, self.device, TopicKind.CMD), payload,
                              qos=1, wait=False)

    def states(self, job_id: str) -> list[str]:
        """The job's distinct acks in arrival order (a redelivered ack is the same payload)."""
        with self.lock:
            payloads = list(self.acks.get(job_id, []))
        distinct = list(dict.fromkeys(payloads))
        return [json.loads(p)["state"] for p in distinct]

    def acks_of(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for p in self.acks.get(job_id, [])]

    def finished(self, job_id: str) -> bool:
        return bool(FINAL & set(self.states(job_id)))

    def close(self) -> None:
        self.conn.close()


class Daemon:
    """``edgemeter agent run`` in its own process, its job folders under ``tmp``."""

    def __init__(self, url: str, fleet: str, device: str, state: Path, model: Path) -> None:
        self.state, self.tmp, self.log = state, state / "tmp", state / "agent.log"
        self.tmp.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        (state / "models").mkdir(exist_ok=True)
        shutil.copy(model, state / "models" / f"{sha}{model.suffix}")
        self.model = {"sha256": sha, "name": model.name}
        self.config = state / "agent.toml"
        self.config.write_text(
            f'device_id = "{device}"\nfleet = "{fleet}"\ntelemetry_s = 60\n'
            f'[mqtt]\nurl = "{url}"\nkeepalive_s = {KEEPALIVE_S}\n'
            f'[spool]\npath = "{state / "spool.db"}"\nresend_after_s = 2\n'
            f'[models]\ncache_dir = "{state / "models"}"\n'
            '[bench]\npower = "none"\nthreads = 1\nfidelity = 0\nidle_s = 0\n')
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
        env["TMPDIR"] = str(self.tmp)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgemeter.cli", "agent", "run", "--config",
                 str(self.config)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def job(self, job_id: str, iterations: int) -> JobCommand:
        return JobCommand(job_id=job_id, model=self.model,
                          settings={"iterations": iterations, "warmup": 1})

    def children(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PersistentMosquitto]:
    mosquitto = PersistentMosquitto(tmp_path / "broker").start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def model(shared_models: Path) -> Path:
    return shared_models / "kws_dscnn_int8.tflite"


def test_fifty_jobs_through_three_broker_kills_each_end_with_their_acks_in_order_once(
    broker: PersistentMosquitto, model: Path, tmp_path: Path,
) -> None:
    fleet, device = f"s{uuid.uuid4().hex[:6]}", "stress-01"
    daemon = Daemon(broker.url, fleet, device, tmp_path / "agent", model).start()
    observer = Observer(broker.url, fleet, device)
    jobs = [daemon.job(f"job-{n:02d}", iterations=3) for n in range(50)]
    try:
        wait_until(lambda: observer.births > 0, 60, "the daemon online")
        started = time.monotonic()
        kills = 0
        next_kill_s = 4.0
        sent = 0
        while not all(observer.finished(j.job_id) for j in jobs):
            # one child process per job, so the time follows the machine's load; the bound
            # only turns a stuck run into a failure
            assert time.monotonic() - started < 180, (
                f"{sum(observer.finished(j.job_id) for j in jobs)} of 50 jobs finished; "
                + daemon.log.read_text()[-2000:])
            open_jobs = sum(1 for j in jobs[:sent] if not observer.finished(j.job_id))
            while sent < len(jobs) and open_jobs < 12:  # at most a dozen waiting at the daemon
                observer.send(jobs[sent])
                sent += 1
                open_jobs += 1
            if kills < 3 and time.monotonic() - started > next_kill_s:
                broker.kill()
                time.sleep(0.3)
                broker.start()
                kills += 1
                next_kill_s = time.monotonic() - started + 5.0
            observer.resend_unanswered(after_s=8.0)
            time.sleep(0.1)
        assert kills == 3
    finally:
        observer.close()
        daemon.stop()
    for job in jobs:
        assert observer.states(job.job_id) == ["accepted", "running", "done"], (
            job.job_id, observer.states(job.job_id))


def test_a_daemon_killed_mid_job_reports_it_failed_after_a_restart_and_leaves_nothing_behind(
    broker: PersistentMosquitto, model: Path, tmp_path: Path,
) -> None:
    fleet, device = f"k{uuid.uuid4().hex[:6]}", "killed-01"
    daemon = Daemon(broker.url, fleet, device, tmp_path / "agent", model).start()
    observer = Observer(broker.url, fleet, device)
    try:
        wait_until(lambda: observer.births > 0, 60, "the daemon online")
        observer.send(daemon.job("long", iterations=10_000_000))  # far longer than 20 s
        wait_until(lambda: "running" in observer.states("long"), 60, "the job running")
        wait_until(lambda: bool(daemon.children()), 30, "the job's child process")
        children = daemon.children()
        assert list(daemon.tmp.glob("edgemeter-job-*")), "the job has its temp folders"
        time.sleep(2)  # well into the measurement
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"the job's child outlived its daemon: {alive}"

        daemon.start()
        restarted = time.monotonic()
        wait_until(lambda: observer.finished("long"), 30, "the interrupted job's final state")
        assert time.monotonic() - restarted < 30
        final = [a for a in observer.acks_of("long") if a["state"] in FINAL][-1]
        assert (final["state"], final["reason"]) == ("failed", "agent restarted during the job")
        assert observer.states("long") == ["accepted", "running", "failed"]
        assert list(daemon.tmp.glob("edgemeter-job-*")) == [], "stale job folders removed"

        # the restarted daemon takes new jobs, after saying the old one failed
        observer.send(daemon.job("after", iterations=3))
        wait_until(lambda: observer.finished("after"), 60, "the next job")
        assert observer.states("after") == ["accepted", "running", "done"]
    finally:
        observer.close()
        daemon.stop()


def test_sigterm_cancels_the_running_job_saying_agent_stopping(
    broker: PersistentMosquitto, model: Path, tmp_path: Path,
) -> None:
    fleet, device = f"t{uuid.uuid4().hex[:6]}", "stopped-01"
    daemon = Daemon(broker.url, fleet, device, tmp_path / "agent", model).start()
    observer = Observer(broker.url, fleet, device)
    try:
        wait_until(lambda: observer.births > 0, 60, "the daemon online")
        observer.send(daemon.job("long", iterations=10_000_000))
        wait_until(lambda: bool(daemon.children()), 60, "the job's child process")
        children = daemon.children()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(30) == 0
        wait_until(lambda: observer.finished("long"), 15, "the cancelled ack")
        final = [a for a in observer.acks_of("long") if a["state"] in FINAL][-1]
        assert (final["state"], final["reason"]) == ("cancelled", "agent stopping")
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        assert list(daemon.tmp.glob("edgemeter-job-*")) == []
        # at the default verbosity: one line per job state change
        log = daemon.log.read_text()
        for line in ("job long: accepted", "job long: running", "job long: cancelled (agent stopping)"):
            assert line in log, log
    finally:
        observer.close()
        daemon.stop()
