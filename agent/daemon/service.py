"""The fleet agent: presence, telemetry, remote benchmark jobs and delivery, in one daemon.

Who owns what. Every piece of the daemon's mutable state belongs to ONE thread, the daemon's
loop (:meth:`AgentDaemon.run_forever`, or the thread :meth:`AgentDaemon.start` starts), which
reads ONE queue of events:

- the link (:mod:`agent.daemon.link`) only enqueues: "connected" and each message (commands,
  receipts) become events; its network thread touches nothing of the daemon's. The one thing it
  asks of the daemon on its own thread is the Last Will before each connection attempt
  (:meth:`AgentDaemon._will`): it takes the next ``bd_seq`` from the spool and leaves it, under a
  lock, for the loop's birth message.
- a job runs on a thread of its own, started by the loop for that job only: it fetches the model
  and runs the child process (:class:`agent.daemon.jobs.ChildProcessJobRunner`), and posts
  progress lines and the outcome back as events. It owns the child process, nothing else; the
  loop cancels it through the job's cancel event.
- the loop owns the job queue, the running job, the ack outbox and job book
  (:class:`agent.daemon.ledger.JobLedger`, on disk), the courier's sending of results, the birth,
  telemetry and progress publishing. Only the loop publishes (and waits for PUBACKs).

Acks. Per job they go out in order — ``accepted``, ``running``, then exactly one of ``done``,
``failed``, ``cancelled`` — each once, from the ledger's outbox in the order they were made
(``rejected`` for a job never accepted). A final ack is kept on disk and said again after every
reconnect until a :class:`shared.messages.Receipt` names its job in ``job_ids``. A command
delivered twice runs once: a finished job's final ack is said again, an open one is not.

Crashes. Jobs are on disk from ``accepted``: a daemon that starts and finds jobs accepted or
running (a kill -9, a power cut) reports each ``failed`` with "agent restarted during the job"
before it takes a new one, and removes job folders left behind. A stop (SIGTERM) cancels the
running and queued jobs with "agent stopping". The child process never outlives the daemon
(:mod:`agent.daemon.jobs`).

Presence: every connect ``bd_seq`` + 1 (persisted in the spool), a retained Last Will
``{"status": "offline", "bd_seq": n}`` (with the last birth's manifest, so a retained death still
names the board and runtimes), then a retained birth with the manifest, and the
subscriptions to this device's ``cmd`` and ``receipt`` topics. A graceful stop publishes the
``offline`` status itself. Results go to the spool first and leave it only on the collector's
receipt (:mod:`agent.delivery`).

Logs: one line per job state change (``job_log``, at INFO: ``agent run`` shows it at its default
verbosity) and a warning for a model that could not be fetched.

Monitoring (:mod:`agent.monitor_job`): jobs of kind ``monitor`` and the config's ``[[monitor]]``
tables run on threads of their own beside the benchmark queue (``self.monitors``), writing windows
to the spool and posting their state changes to the loop as events; a ``cancel`` reaches them
first. Applications' windows arrive on the monitor socket (:mod:`agent.daemon.monitor_socket`,
when one is given) and each tick moves them into the spool; windows leave the spool on receipts
like results.

Tests drive the loop themselves: ``start(loop=False)``, then :meth:`AgentDaemon.pump` handles
what is queued on the test's thread, with a fake link and an injected clock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from agent.config import BenchSettings
from agent.daemon.config import AgentSettings
from agent.daemon.jobs import (
    JobOutcome,
    JobRunner,
    job_folder,
    job_settings,
    parse_job,
    remove_stale_job_folders,
    validate_job,
)
from agent.daemon.ledger import FINAL_STATES, JobLedger
from agent.daemon.monitor_socket import MonitorSocket
from agent.daemon.telemetry import TelemetryProbe
from agent.delivery import Courier
from agent.errors import SpoolError
from agent.model_cache import ModelCache
from agent.monitor_job import MonitorJobs
from agent.spool import Spool
from shared.errors import BrokerError, EdgemeterError, PublishRefusedError
from shared.messages import AgentManifest, JobAck, JobCommand, Progress, Receipt, Status, Telemetry
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)
job_log = logging.getLogger(f"{__name__}.jobs")
"""One line per job state change; ``agent run`` sets it to INFO."""

PROGRESS_EVERY_S = 1.0
MAX_QUEUED_JOBS = 32
STOP_GRACE_S = 15.0
"""How long a stop waits for the cancelled job's child to end before saying ``cancelled``."""
RESTARTED = "agent restarted during the job"
STOPPING = "agent stopping"
CANCELLED = "cancelled by a cancel job"


class LinkLike(Protocol):
    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0,
                retain: bool = False) -> None: ...

    def subscribe(self, topic: str, qos: int = 1) -> None: ...

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 5.0) -> None: ...


LinkFactory = Callable[..., LinkLike]
"""``factory(will=..., on_connect=..., on_message=...)`` -> a link, not yet started. The three
callbacks may be called from any thread: ``on_connect`` and ``on_message`` only enqueue."""


# -- the events the loop handles -----------------------------------------------------------------

@dataclass(frozen=True)
class _Connected:
    pass


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class _JobProgress:
    job_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class _JobEnded:
    job_id: str
    outcome: JobOutcome


@dataclass(frozen=True)
class _Tick:
    pass


@dataclass(frozen=True)
class _Stop:
    reason: str


@dataclass(frozen=True)
class _MonitorAck:
    """A monitoring job's state change, posted by its thread (:mod:`agent.monitor_job`)."""

    job_id: str
    state: str
    reason: str | None


_Event = _Connected | _Message | _JobProgress | _JobEnded | _Tick | _Stop | _MonitorAck


@dataclass
class _Running:
    job: JobCommand
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    last_progress_s: float = float("-inf")
    last_phase: str | None = None
    thread: threading.Thread | None = None


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
        ledger: JobLedger | None = None,
        workdir: Path | None = None,
        monitor_socket: MonitorSocket | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.courier = Courier(spool, resend_after_s=settings.spool.resend_after_s)
        self.ledger = ledger or JobLedger(spool.path)
        self.job_runner = job_runner
        self.model_cache = model_cache
        self.workdir = workdir
        self._manifest = manifest
        self.telemetry = telemetry or TelemetryProbe()
        self._clock_s = clock_s
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        # -- written on the link's thread (the Will), read by the loop -------------------------
        self._will_lock = threading.Lock()
        self._will_bd_seq = 0
        self._births_manifest: AgentManifest | None = None  # the newest manifest, for deaths
        # -- owned by the loop -----------------------------------------------------------------
        self.bd_seq = 0
        self._jobs: collections.deque[JobCommand] = collections.deque()
        self._running: _Running | None = None
        self._next_telemetry_s = float("-inf")
        self._stopping = False
        self._stopped = False
        self._loop_thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._done = threading.Event()
        self.link = link_factory(will=self._will, on_connect=self._on_connect,
                                 on_message=self._on_message)
        dev, fleet = settings.device_id, settings.fleet
        self.topics = {kind: Topics.build(fleet, dev, kind) for kind in TopicKind}
        # -- monitoring: jobs of kind "monitor" and [[monitor]] tables run on threads of their own
        # (MonitorJobs owns them); they write windows to the spool (which has its own lock) and
        # post their state changes here as events. The loop replaces _latest_telemetry whole; the
        # monitor threads only read that reference.
        self._latest_telemetry: Telemetry | None = None
        self.monitors = MonitorJobs(
            device_id=dev, fleet=fleet, spool=spool, fetch=model_cache.get,
            ack=lambda job_id, state, reason: self._events.put(_MonitorAck(job_id, state, reason)),
            telemetry=lambda: self._latest_telemetry,
            bench={"backend": settings.bench.backend, "threads": settings.bench.threads})
        self.monitor_socket = monitor_socket

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, *, loop: bool = True) -> None:
        """Report jobs a crash interrupted, remove stale job folders, connect; then run the loop
        on a thread of its own (``loop=False``: the caller drives it with :meth:`pump`)."""
        remove_stale_job_folders(self.workdir)
        for job_id in self.ledger.interrupted():
            self._record(job_id, "failed", RESTARTED)
        self.link.subscribe(self.topics[TopicKind.CMD], qos=1)
        self.link.subscribe(self.topics[TopicKind.RECEIPT], qos=1)
        manifest = self._manifest()  # before the first Will, so every death names the board
        with self._will_lock:
            self._births_manifest = manifest
        self.link.start()
        for table in self.settings.monitor:
            self.monitors.start_table(table)
        if self.monitor_socket is not None:
            try:
                self.monitor_socket.start()
            except OSError as err:
                logger.warning("no monitor socket at %s (%s): applications' InferenceMonitor "
                               "windows cannot reach this daemon", self.monitor_socket.path, err)
        if loop:
            self._loop_thread = threading.Thread(target=self._serve, args=(1.0,),
                                                 name="edgemeter-daemon", daemon=True)
            self._loop_thread.start()

    def run_forever(self, stop: threading.Event, tick_s: float = 1.0) -> None:
        """Run the loop on this thread until ``stop`` is set; then stop gracefully."""
        self.start(loop=False)
        self._loop_thread = threading.current_thread()
        try:
            self._serve(tick_s, stop)
        finally:
            self._shutdown(STOPPING)

    def stop(self, reason: str = "stopped") -> None:
        """Cancel the running and queued jobs ("agent stopping"), say ``offline`` (retained),
        disconnect. Safe from any thread; returns once the daemon has stopped."""
        thread = self._loop_thread
        if thread is not None and thread is not threading.current_thread():
            self._events.put(_Stop(reason))  # the loop stops itself: it owns the jobs
            if not self._done.wait(STOP_GRACE_S + 15):
                logger.warning("the daemon's loop did not stop in time")
            return
        self._shutdown(STOPPING)

    def tick(self) -> None:
        """Ask the loop for a tick now (flush acks, send due results, telemetry when due)."""
        self._events.put(_Tick())

    def pump(self, timeout_s: float = 0.0) -> int:
        """Handle every queued event, then tick (for tests driving the loop); returns how many
        events. ``timeout_s``: wait that long for a first one."""
        handled = 0
        try:
            event = self._events.get(timeout=timeout_s) if timeout_s > 0 else self._events.get_nowait()
        except queue.Empty:
            event = None
        while event is not None:
            self._handle(event)
            handled += 1
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None
        self._tick()
        return handled

    def _serve(self, tick_s: float, stop: threading.Event | None = None) -> None:
        next_tick_s = self._clock_s()
        while not (stop is not None and stop.is_set()) and not self._stop_requested.is_set():
            wait_s = max(0.0, min(next_tick_s - self._clock_s(), 0.2))
            try:
                event: _Event | None = self._events.get(timeout=wait_s)
            except queue.Empty:
                event = None
            if isinstance(event, _Stop):
                self._shutdown(STOPPING)
                return
            if event is not None:
                self._handle(event)
            if self._clock_s() >= next_tick_s:
                next_tick_s = self._clock_s() + tick_s
                self._tick()

    def _handle(self, event: _Event) -> None:
        """One event; never raises (a bug is logged, the loop goes on)."""
        try:
            if isinstance(event, _Message):
                self._on_message_event(event.topic, event.payload)
            elif isinstance(event, _Connected):
                self._on_connected()
            elif isinstance(event, _JobProgress):
                self._on_progress(event.job_id, event.data)
            elif isinstance(event, _JobEnded):
                self._on_job_ended(event.job_id, event.outcome)
            elif isinstance(event, _Tick):
                self._tick()
            elif isinstance(event, _MonitorAck):
                self._on_monitor_ack(event)
            elif isinstance(event, _Stop):
                self._shutdown(STOPPING)
            self._flush_acks()
        except SpoolError as err:  # a full disk: logged, and the loop goes on
            logger.error("spool: %s", err)
        except Exception:
            logger.exception("the daemon failed handling %s", type(event).__name__)

    def _shutdown(self, reason: str) -> None:
        if self._stopped:
            return
        self._stopping = True
        self._stop_requested.set()
        try:
            while self._jobs:
                self._record(self._jobs.popleft().job_id, "cancelled", reason)
            running = self._running
            if running is not None:
                running.cancel_reason = reason
                running.cancel.set()
                deadline = time.monotonic() + STOP_GRACE_S
                while self._running is running and time.monotonic() < deadline:
                    with contextlib.suppress(queue.Empty):
                        event = self._events.get(timeout=0.1)
                        if not isinstance(event, (_Stop, _Connected, _Tick)):
                            self._handle(event)  # commands now are rejected: "agent stopping"
                if self._running is running:  # the child did not end in time: say so anyway
                    logger.warning("job %s did not stop within %.0f s", running.job.job_id,
                                   STOP_GRACE_S)
                    self._running = None
                    self._record(running.job.job_id, "cancelled", reason)
            self._stop_monitors()
            self._flush_acks()
        except Exception:  # stopping goes on: the offline status and the disconnect matter most
            logger.exception("stopping the daemon")
        self._stopped = True
        try:
            self.link.stop(last=(self.topics[TopicKind.STATUS], self._status("offline", "stopped")))
        finally:
            self._done.set()

    # -- the link's callbacks (any thread: they only enqueue) ------------------------------------

    def _on_connect(self, _link: Any) -> None:
        self._events.put(_Connected())

    def _on_message(self, topic: str, payload: bytes) -> None:
        self._events.put(_Message(topic, payload))

    def _will(self) -> tuple[str, bytes]:
        """Called by the link before every connection attempt: a new bd_seq, a new Last Will."""
        with self._will_lock:
            try:
                self._will_bd_seq = self.spool.next_bd_seq()
            except SpoolError as err:  # the Will still goes out; the count is not persisted
                logger.error("bd_seq not persisted: %s", err)
                self._will_bd_seq += 1
            bd_seq = self._will_bd_seq
        return self.topics[TopicKind.STATUS], self._status("offline", "connection lost", bd_seq)

    # -- presence -------------------------------------------------------------------------------

    def _status(self, status: str, reason: str | None = None, bd_seq: int | None = None) -> bytes:
        online = status == "online"
        manifest: AgentManifest | None
        if online:
            manifest = self._manifest()
            with self._will_lock:
                self._births_manifest = manifest
        else:  # a retained death keeps the board and runtimes known (the newest manifest)
            with self._will_lock:
                manifest = self._births_manifest
        message = Status(
            device_id=self.settings.device_id, fleet=self.settings.fleet, status=status,
            bd_seq=self.bd_seq if bd_seq is None else bd_seq, reason=None if online else reason,
            sent_at=None if reason == "connection lost" else _utc_now(),
            manifest=manifest,
        )
        return message.model_dump_json(exclude_none=True).encode()

    def _on_connected(self) -> None:
        with self._will_lock:
            self.bd_seq = self._will_bd_seq
        again = self.ledger.reannounce()  # whatever the birth's fate: a new connection
        try:
            self.link.publish(self.topics[TopicKind.STATUS], self._status("online"), qos=1,
                              retain=True)
        except BrokerError as err:
            logger.warning("birth not sent: %s", err)
            return
        logger.info("online as %s/%s (bd_seq %d)", self.settings.fleet, self.settings.device_id,
                    self.bd_seq)
        if again:
            logger.info("re-announcing %d final job state(s) the collector has not confirmed",
                        again)
        self._next_telemetry_s = float("-inf")
        self._tick()

    # -- the tick -------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Move applications' monitor windows into the spool; flush acks, send due results,
        publish telemetry when due. Never raises."""
        try:
            if self.monitor_socket is not None:
                self.monitor_socket.drain(self.spool, device_id=self.settings.device_id,
                                          fleet=self.settings.fleet,
                                          telemetry=self._latest_telemetry)
        except SpoolError as err:
            logger.error("spool: %s", err)
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
            logger.error("spool: %s", err)
        except Exception:  # a bug here must not end the loop
            logger.exception("the daemon's tick failed")

    # -- messages -------------------------------------------------------------------------------

    def _on_message_event(self, topic: str, payload: bytes) -> None:
        if topic == self.topics[TopicKind.RECEIPT]:
            self._on_receipt(payload)
        elif topic == self.topics[TopicKind.CMD]:
            self._on_command(payload)

    def _on_receipt(self, payload: bytes) -> None:
        try:
            receipt = Receipt.model_validate_json(payload)
        except ValidationError as err:
            logger.warning("ignored a malformed receipt: %s", str(err).splitlines()[0])
            return
        self.courier.confirm(str(r) for r in receipt.run_ids)
        self.ledger.confirm(receipt.job_ids)

    def _on_command(self, payload: bytes) -> None:
        try:
            job = parse_job(payload)
        except ValueError as err:
            self._reject(_job_id_of(payload), str(err))
            return
        if self._stopping:
            self._reject(job.job_id, STOPPING)
            return
        if job.kind == "cancel":
            if not self.monitors.cancel(job.job_id):
                self._cancel(job.job_id)
            return
        seen = self.ledger.get(job.job_id)
        if seen is not None:
            # a command delivered again (QoS 1 after a reconnect, a re-sent dispatch): run a job
            # once; a finished job says its final state again, an open one says nothing new
            logger.info("job %s seen before (%s): not run again", job.job_id, seen.state)
            if seen.state in FINAL_STATES and self.ledger.has_final_ack(job.job_id):
                self.ledger.reannounce(job.job_id)
            elif seen.state in FINAL_STATES:  # confirmed before: said again, kept to its receipt
                self.ledger.add_ack(job.job_id, seen.state, self._ack_payload(
                    job.job_id, seen.state, seen.reason, seen.run_id))
            return
        if job.kind == "monitor":  # beside benchmark jobs, until cancelled or over
            self._record(job, "accepted")
            self.monitors.start(job)
            return
        try:
            validate_job(job, self._job_base())
        except EdgemeterError as err:
            self._reject(job.job_id, str(err))
            return
        if len(self._jobs) >= MAX_QUEUED_JOBS:
            self._reject(job.job_id, f"queue full ({MAX_QUEUED_JOBS} jobs waiting)")
            return
        self._record(job, "accepted")
        self._jobs.append(job)
        self._start_next()

    def _cancel(self, job_id: str) -> None:
        running = self._running
        if running is not None and running.job.job_id == job_id:
            running.cancel_reason = CANCELLED
            running.cancel.set()
            return
        for queued in list(self._jobs):
            if queued.job_id == job_id:
                self._jobs.remove(queued)
                self._record(job_id, "cancelled", "cancelled before it ran")
                return
        self._reject(job_id, "cancel: no such job queued or running")

    def _job_base(self) -> BenchSettings:
        return self.settings.job_base()

    # -- running jobs ---------------------------------------------------------------------------

    def _start_next(self) -> None:
        if self._running is not None or not self._jobs or self._stopping:
            return
        job = self._jobs.popleft()
        running = _Running(job)
        self._running = running
        self._record(job.job_id, "running")
        self._flush_acks()  # accepted and running go out before the job's first progress
        self._on_progress(job.job_id, {"phase": "fetch"}, force=True)
        seq = self.spool.next_seq()
        settings = job_settings(job, self._job_base())
        running.thread = threading.Thread(target=self._run_job, args=(running, settings, seq),
                                          name=f"edgemeter-job-{job.job_id[:32]}", daemon=True)
        running.thread.start()

    def _run_job(self, running: _Running, settings: BenchSettings, seq: int) -> None:
        """The job's own thread: fetch the model, run the child, post the outcome."""
        job = running.job
        try:
            outcome = self._fetch_and_run(running, settings, seq)
        except Exception as err:  # a bug here must not lose the job's final state
            logger.exception("job %s failed unexpectedly", job.job_id)
            outcome = JobOutcome("failed", f"internal error: {err}")
        self._events.put(_JobEnded(job.job_id, outcome))

    def _fetch_and_run(self, running: _Running, settings: BenchSettings, seq: int) -> JobOutcome:
        job = running.job
        assert job.model is not None
        try:
            path = self.model_cache.get(job.model)
        except EdgemeterError as err:
            logger.warning("job %s: model %s not fetched: %s", job.job_id, job.model.name, err)
            return JobOutcome("failed", str(err))
        if running.cancel.is_set():
            return JobOutcome("cancelled", CANCELLED)
        with job_folder(self.workdir) as tmp:
            # the cache keeps models by sha256; the result names the model as the job did
            named = tmp / job.model.name
            named.symlink_to(path)
            return self.job_runner.run(
                settings, named, seq,
                lambda data: self._events.put(_JobProgress(job.job_id, dict(data))),
                running.cancel)

    def _on_job_ended(self, job_id: str, outcome: JobOutcome) -> None:
        running = self._running
        if running is None or running.job.job_id != job_id:
            logger.warning("job %s ended after it was given up; its outcome is dropped", job_id)
            return
        self._running = None
        if outcome.state == "cancelled" or (running.cancel_reason and outcome.result is None):
            self._record(job_id, "cancelled", running.cancel_reason or outcome.reason or CANCELLED)
        elif outcome.result is not None:
            job = running.job
            labels = {**outcome.result.labels, **(job.labels or {}), "job_id": job_id}
            result = outcome.result.model_copy(update={"labels": labels})
            try:
                self.spool.put(result)
            except SpoolError as err:
                self._record(job_id, "failed", f"the result could not be kept: {err}")
            else:
                self._record(job_id, "done", run_id=str(result.run_id))
                if self.link.connected:
                    try:
                        self.courier.send_due(self.link)
                    except BrokerError as err:
                        logger.info("result kept for later: %s", err)
        else:
            self._record(job_id, "failed", outcome.reason or "failed")
        self._start_next()

    def _on_progress(self, job_id: str, data: dict[str, Any], force: bool = False) -> None:
        """Relay a progress report: every change of phase, else at most one a second."""
        running = self._running
        if running is None or running.job.job_id != job_id:
            return
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
                               job_id=job_id, phase=phase, **fields)
        except ValueError:
            return
        if self.link.connected:
            with contextlib.suppress(BrokerError):
                self.link.publish(self.topics[TopicKind.PROGRESS],
                                  message.model_dump_json(exclude_none=True).encode(), qos=0)

    # -- acks -----------------------------------------------------------------------------------

    def _ack_payload(self, job_id: str, state: str, reason: str | None = None,
                     run_id: str | None = None) -> bytes:
        ack = JobAck(device_id=self.settings.device_id, fleet=self.settings.fleet,
                     job_id=job_id[:128], state=state,
                     reason=reason and reason[:500], run_id=run_id)
        return ack.model_dump_json(exclude_none=True).encode()

    def _record(self, job: JobCommand | str, state: str, reason: str | None = None,
                run_id: str | None = None) -> None:
        """A job's new state: on disk with its ack (sent in order by :meth:`_flush_acks`)."""
        job_id = job if isinstance(job, str) else job.job_id
        self.ledger.record(job, state, self._ack_payload(job_id, state, reason, run_id),
                           reason=reason, run_id=run_id)
        job_log.info("job %s: %s%s", job_id, state, f" ({reason})" if reason else "")

    def _on_monitor_ack(self, ack: _MonitorAck) -> None:
        """A monitoring job's state change (``accepted`` was recorded when the command came)."""
        if ack.state != "accepted":
            self._record(ack.job_id, ack.state, ack.reason)

    def _stop_monitors(self) -> None:
        """Stop the monitoring jobs and the socket, and record their last states."""
        self.monitors.stop_all()
        if self.monitor_socket is not None:
            self.monitor_socket.close()
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, _MonitorAck):
                self._on_monitor_ack(event)

    def _reject(self, job_id: str, reason: str) -> None:
        self.ledger.add_ack(job_id, "rejected", self._ack_payload(job_id, "rejected", reason))
        job_log.info("job %s: rejected (%s)", job_id, reason)

    def _flush_acks(self) -> None:
        """Publish the outbox in order, each ack once the one before it is acknowledged."""
        while self.link.connected:
            ack = self.ledger.next_ack()
            if ack is None:
                return
            try:
                self.link.publish(self.topics[TopicKind.ACK], ack.payload, qos=1)
            except PublishRefusedError as err:  # will never pass: said, and not tried again
                logger.error("job %s: ack %s refused: %s", ack.job_id, ack.state, err)
            except BrokerError as err:
                logger.info("acks kept for the next connection: %s", err)
                return
            self.ledger.published(ack)

    # -- telemetry ------------------------------------------------------------------------------

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
    """The birth's manifest: device, what it can run (:mod:`agent.capabilities`), power sources."""
    from agent.capabilities import manifest_builder

    return manifest_builder(settings)
