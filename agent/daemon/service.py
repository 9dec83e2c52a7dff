"""The fleet agent: presence, telemetry, remote benchmark jobs and delivery, in one daemon.

Threads: the link's network loop (:mod:`agent.daemon.link`), one job worker, and the main loop
(:meth:`AgentDaemon.run_forever`) that calls :meth:`AgentDaemon.tick` once a second — tests call
``tick`` themselves with a fake clock and a fake link.

Every connect: ``bd_seq`` + 1 (persisted in the spool), a retained Last Will
``{"status": "offline", "bd_seq": n}``, then a retained birth with the manifest, and the
subscriptions to this device's ``cmd`` and ``receipt`` topics. A graceful stop publishes the
``offline`` status itself. Jobs run one at a time in arrival order, each in a child process; their
acks (accepted, rejected, running, done, failed, cancelled) wait in memory while the broker is
away. Results go to the spool first and leave it only on the collector's receipt.

Monitoring (:mod:`agent.monitor_job`): jobs of kind ``monitor`` and the config's ``[[monitor]]``
tables run in threads of their own beside the benchmark queue (``self.monitors``); a ``cancel``
reaches them first. Applications' windows arrive on the monitor socket
(:mod:`agent.daemon.monitor_socket`, when one is given) and each tick moves them into the spool;
monitor windows leave the spool on receipts like results.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent import __version__
from agent.daemon.config import AgentSettings
from agent.daemon.jobs import JobOutcome, JobRunner, job_settings, parse_job, validate_job
from agent.daemon.monitor_socket import MonitorSocket
from agent.daemon.telemetry import TelemetryProbe
from agent.delivery import Courier
from agent.errors import SpoolError
from agent.model_cache import ModelCache
from agent.monitor_job import MonitorJobs
from agent.spool import Spool
from shared.errors import BrokerError, EdgemeterError
from shared.messages import AgentManifest, JobAck, JobCommand, JobState, Progress, Status, Telemetry
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
MAX_QUEUED_JOBS = 32
MAX_PENDING_ACKS = 1000
MAX_REMEMBERED_JOBS = 1000


class LinkLike(Protocol):
    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0,
                retain: bool = False) -> None: ...

    def subscribe(self, topic: str, qos: int = 1) -> None: ...

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 5.0) -> None: ...


LinkFactory = Callable[..., LinkLike]
"""``factory(will=..., on_connect=..., on_message=...)`` -> a link, not yet started."""


@dataclass
class _Running:
    job: JobCommand
    cancel: threading.Event = field(default_factory=threading.Event)
    last_progress_s: float = 0.0
    last_phase: str | None = None


class AgentDaemon:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        spool: Spool,
        link_factory: LinkFactory,
        job_runner: JobRunner,
        model_cache: ModelCache,
        manifest: Callable[[], AgentManifest],
        telemetry: TelemetryProbe | None = None,
        clock_s: Callable[[], float] = time.monotonic,
        monitor_socket: MonitorSocket | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.courier = Courier(spool, resend_after_s=settings.spool.resend_after_s)
        self.job_runner = job_runner
        self.model_cache = model_cache
        self._manifest = manifest
        self.telemetry = telemetry or TelemetryProbe()
        self._clock_s = clock_s
        self.bd_seq = 0
        self._jobs: collections.deque[JobCommand] = collections.deque()
        self._jobs_cv = threading.Condition()
        self._running: _Running | None = None
        self._acks: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=MAX_PENDING_ACKS)
        self._job_states: collections.OrderedDict[str, tuple[JobState, str | None, str | None]] = \
            collections.OrderedDict()
        self._next_telemetry_s = 0.0
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.link = link_factory(will=self._will, on_connect=self._on_connect,
                                 on_message=self._on_message)
        dev, fleet = settings.device_id, settings.fleet
        self.topics = {kind: Topics.build(fleet, dev, kind) for kind in TopicKind}
        # monitoring (agent.monitor_job, agent.daemon.monitor_socket): jobs of kind "monitor"
        # and [[monitor]] tables run beside benchmark jobs; applications' windows come in
        # through the socket; both go to the spool as monitor windows
        self._latest_telemetry: Telemetry | None = None
        self.monitors = MonitorJobs(device_id=dev, fleet=fleet, spool=spool,
                                    fetch=model_cache.get, ack=self._ack,
                                    telemetry=lambda: self._latest_telemetry,
                                    bench=settings.bench)
        self.monitor_socket = monitor_socket

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.link.subscribe(self.topics[TopicKind.CMD], qos=1)
        self.link.subscribe(self.topics[TopicKind.RECEIPT], qos=1)
        self.link.start()
        self._worker = threading.Thread(target=self._work, name="edgemeter-jobs", daemon=True)
        self._worker.start()
        for table in self.settings.monitor:
            self.monitors.start_table(table)
        if self.monitor_socket is not None:
            try:
                self.monitor_socket.start()
            except OSError as err:
                logger.warning("no monitor socket at %s (%s): applications' InferenceMonitor "
                               "windows cannot reach this daemon", self.monitor_socket.path, err)

    def run_forever(self, stop: threading.Event, tick_s: float = 1.0) -> None:
        self.start()
        try:
            while not stop.wait(tick_s):
                self.tick()
        finally:
            self.stop("stopped")

    def stop(self, reason: str = "stopped") -> None:
        """Cancel a running job, say ``offline`` (retained), disconnect."""
        self._stopping.set()
        running = self._running
        if running is not None:
            running.cancel.set()
        with self._jobs_cv:
            self._jobs_cv.notify_all()
        if self._worker is not None:
            self._worker.join(10)
        self.monitors.stop_all()
        if self.monitor_socket is not None:
            self.monitor_socket.close()
        self._flush_acks()
        self.link.stop(last=(self.topics[TopicKind.STATUS], self._status("offline", reason)))

    # -- the main loop's tick -------------------------------------------------------------------

    def tick(self) -> None:
        """Flush acks, send due results, publish telemetry when due. Never raises."""
        try:
            if self.monitor_socket is not None:  # applications' windows into the spool
                self.monitor_socket.drain(self.spool, device_id=self.settings.device_id,
                                          fleet=self.settings.fleet,
                                          telemetry=self._latest_telemetry)
        except SpoolError as err:
            logger.warning("spool: %s", err)
        if not self.link.connected:
            return
        try:
            self._flush_acks()
            self.courier.send_due(self.link)
            now = self._clock_s()
            if now >= self._next_telemetry_s:
                self._next_telemetry_s = now + self.settings.telemetry_s
                self._publish_telemetry()
        except BrokerError as err:
            logger.warning("broker: %s", err)
        except SpoolError as err:  # a full disk: what is not marked sent is sent again later
            logger.warning("spool: %s", err)

    # -- presence -------------------------------------------------------------------------------

    def _will(self) -> tuple[str, bytes]:
        """Called by the link before every connection attempt: a new bd_seq, a new Last Will."""
        self.bd_seq = self.spool.next_bd_seq()
        return self.topics[TopicKind.STATUS], self._status("offline", "connection lost")

    def _status(self, status: str, reason: str | None = None) -> bytes:
        online = status == "online"
        message = Status(
            device_id=self.settings.device_id, fleet=self.settings.fleet, status=status,
            bd_seq=self.bd_seq, reason=None if online else reason,
            sent_at=None if reason == "connection lost" else _utc_now(),
            manifest=self._manifest() if online else None,
        )
        return message.model_dump_json(exclude_none=True).encode()

    def _on_connect(self, link: LinkLike) -> None:
        link.publish(self.topics[TopicKind.STATUS], self._status("online"), qos=1, retain=True)
        logger.info("online as %s/%s (bd_seq %d)", self.settings.fleet, self.settings.device_id,
                    self.bd_seq)
        self._next_telemetry_s = 0.0
        self.tick()

    # -- messages -------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics[TopicKind.RECEIPT]:
            self.courier.on_receipt(payload)
        elif topic == self.topics[TopicKind.CMD]:
            self._on_command(payload)

    def _on_command(self, payload: bytes) -> None:
        try:
            job = parse_job(payload)
        except ValueError as err:
            self._ack(_job_id_of(payload), "rejected", str(err))
            return
        if job.kind == "cancel":
            if not self.monitors.cancel(job.job_id):
                self._cancel(job.job_id)
            return
        if job.kind == "monitor":  # beside benchmark jobs, until cancelled or over
            self.monitors.start(job)
            return
        seen = self._job_states.get(job.job_id)
        if seen is not None:
            # a command delivered again (QoS 1 after a reconnect, a re-sent dispatch): run a job
            # once, and say again where it stands
            logger.info("job %s seen before (%s): not run again", job.job_id, seen[0])
            self._ack(job.job_id, *seen)
            return
        try:
            validate_job(job, self._job_base())
        except EdgemeterError as err:
            self._ack(job.job_id, "rejected", str(err))
            return
        with self._jobs_cv:
            if len(self._jobs) >= MAX_QUEUED_JOBS:
                self._ack(job.job_id, "rejected", f"queue full ({MAX_QUEUED_JOBS} jobs waiting)")
                return
            self._jobs.append(job)
            self._jobs_cv.notify()
        self._ack(job.job_id, "accepted")

    def _cancel(self, job_id: str) -> None:
        running = self._running
        if running is not None and running.job.job_id == job_id:
            running.cancel.set()
            return
        with self._jobs_cv:
            for queued in list(self._jobs):
                if queued.job_id == job_id:
                    self._jobs.remove(queued)
                    self._ack(job_id, "cancelled", "cancelled before it ran")
                    return
        self._ack(job_id, "rejected", "cancel: no such job queued or running")

    def _job_base(self) -> dict[str, Any]:
        base = dict(self.settings.bench)
        base.update(device_id=self.settings.device_id, fleet=self.settings.fleet)
        return base

    # -- the job worker -------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._jobs_cv:
                while not self._jobs and not self._stopping.is_set():
                    self._jobs_cv.wait(1.0)
                if self._stopping.is_set():
                    return
                job = self._jobs.popleft()
            self._running = _Running(job)
            try:
                outcome = self._run_job(self._running)
            except Exception as err:  # a bug here must not end the worker
                logger.exception("job %s failed unexpectedly", job.job_id)
                outcome = JobOutcome("failed", f"internal error: {err}")
            finally:
                self._running = None
            self._finish(job, outcome)

    def _run_job(self, running: _Running) -> JobOutcome:
        job = running.job
        assert job.model is not None
        self._ack(job.job_id, "running")
        self._progress(running, {"phase": "fetch"}, force=True)
        try:
            path = self.model_cache.get(job.model)
        except EdgemeterError as err:
            return JobOutcome("failed", str(err))
        seq = self.spool.next_seq()
        with tempfile.TemporaryDirectory(prefix="edgemeter-job-") as tmp:
            # the cache keeps models by sha256; the result names the model as the job did
            named = Path(tmp) / job.model.name
            named.symlink_to(path)
            return self.job_runner.run(job_settings(job, self._job_base()), named, seq,
                                       lambda data: self._progress(running, data), running.cancel)

    def _finish(self, job: JobCommand, outcome: JobOutcome) -> None:
        if outcome.result is not None:
            result = outcome.result
            if job.labels:
                result = result.model_copy(update={"labels": {**result.labels, **job.labels,
                                                              "job_id": job.job_id}})
            else:
                result = result.model_copy(update={"labels": {**result.labels, "job_id": job.job_id}})
            self.spool.put(result)
            self._ack(job.job_id, "done", run_id=str(result.run_id))
            with contextlib.suppress(BrokerError):
                if self.link.connected:
                    self.courier.send_due(self.link)
        else:
            self._ack(job.job_id, outcome.state, outcome.reason)  # type: ignore[arg-type]

    def _progress(self, running: _Running, data: dict[str, Any], force: bool = False) -> None:
        """Relay a progress report: every change of phase, else at most one a second."""
        now = self._clock_s()
        phase = data.get("phase", "measure")
        if not force and phase == running.last_phase and now - running.last_progress_s < PROGRESS_EVERY_S:
            return
        running.last_progress_s = now
        running.last_phase = phase
        fields = {k: data[k] for k in ("iterations_done", "running_p50_ms", "power_w")
                  if data.get(k) is not None}
        try:
            message = Progress(device_id=self.settings.device_id, fleet=self.settings.fleet,
                               job_id=running.job.job_id, phase=phase, **fields)
        except ValueError:
            return
        if self.link.connected:
            with contextlib.suppress(BrokerError):
                self.link.publish(self.topics[TopicKind.PROGRESS],
                                  message.model_dump_json(exclude_none=True).encode(), qos=0)

    # -- acks and telemetry ---------------------------------------------------------------------

    def _ack(self, job_id: str, state: JobState, reason: str | None = None,
             run_id: str | None = None) -> None:
        self._job_states[job_id] = (state, reason, run_id)
        self._job_states.move_to_end(job_id)
        while len(self._job_states) > MAX_REMEMBERED_JOBS:
            self._job_states.popitem(last=False)
        ack = JobAck(device_id=self.settings.device_id, fleet=self.settings.fleet,
                     job_id=job_id[:128], state=state, reason=reason and reason[:500],
                     run_id=run_id)
        logger.info("job %s: %s%s", job_id, state, f" ({reason})" if reason else "")
        self._acks.append((self.topics[TopicKind.ACK], ack.model_dump_json(exclude_none=True).encode()))
        self._flush_acks()

    def _flush_acks(self) -> None:
        while self._acks and self.link.connected:
            topic, payload = self._acks[0]
            try:
                self.link.publish(topic, payload, qos=1)
            except BrokerError as err:
                logger.info("ack kept for later: %s", err)
                return
            with contextlib.suppress(IndexError):
                self._acks.popleft()

    def _publish_telemetry(self) -> None:
        running = self._running
        message = self.telemetry.snapshot(
            device_id=self.settings.device_id, fleet=self.settings.fleet,
            spool_depth=self.spool.depth(), spool_dropped_total=self.spool.dropped_total,
            current_job=running.job.job_id if running else None, jobs_queued=len(self._jobs),
        )
        self._latest_telemetry = message
        self.link.publish(self.topics[TopicKind.TELEMETRY],
                          message.model_dump_json(exclude_none=True).encode(), qos=0)


def _job_id_of(payload: bytes) -> str:
    """The job id of a message that failed validation, when one can be read; else ``unknown``."""
    import json

    try:
        value = json.loads(payload).get("job_id")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "unknown"
    return value[:128] if isinstance(value, str) and value else "unknown"


def _utc_now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def default_manifest(settings: AgentSettings) -> Callable[[], AgentManifest]:
    """The birth's manifest: device, runtimes installed, power sources usable, agent version."""

    def build() -> AgentManifest:
        from agent.manifest import collect_manifest
        from shared.catalogue import load_catalogue

        device = collect_manifest(_root(settings), load_catalogue(), None)
        return AgentManifest(agent_version=__version__, device=device, runtimes=_runtimes(),
                             power_sources=_power_sources(), telemetry_s=settings.telemetry_s,
                             keepalive_s=settings.mqtt.keepalive_s)

    return build


def _root(settings: AgentSettings) -> Any:
    from pathlib import Path

    return Path(settings.bench.get("sysfs_root", "/"))


def _runtimes() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("onnxruntime", "ai-edge-litert", "tflite-runtime"):
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    return found


def _power_sources() -> list[str]:
    try:
        from agent.power.registry import probe_all

        return sorted(name for name, why in probe_all().items() if why is None)
    except Exception:  # probing never stops a birth
        logger.debug("power probe failed", exc_info=True)
        return []
