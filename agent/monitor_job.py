"""Monitoring jobs: a model run continuously at a target rate, published as monitor windows.

A monitoring job is a canary next to the real workload: ``JobCommand(kind="monitor")`` with a
:class:`shared.messages.MonitorSpec` (``edgemeter fleet monitor``), or a ``[[monitor]]`` table in
the daemon's config (:class:`MonitorTable`). :func:`run_monitor` loads the model, binds random
inputs once, and calls it every ``1 / rate_qps`` seconds (a late call is not made up for: after
a stall the schedule starts again from now), timing each call into an
:class:`agent.monitor.InferenceMonitor` whose windows go to the spool
(:class:`SpoolWindowSender`: completed with the board's state from the newest telemetry, tagged
with the job id) and from there to the collector like results. It ends when cancelled or when
``duration_s`` is over.

:class:`MonitorJobs` is the daemon's entry point; it owns the running monitoring jobs, each in a
thread of its own (they run beside benchmark jobs, never in their queue)::

    monitors = MonitorJobs(device_id=..., fleet=..., spool=spool, fetch=model_cache.get,
                           ack=lambda job_id, state, reason: ..., telemetry=lambda: latest)
    monitors.start(job)            # a JobCommand of kind "monitor": acks accepted, running
    monitors.cancel(job_id)        # True when it was one of these (acks cancelled when it ends)
    monitors.start_table(table)    # a [[monitor]] table (job id "config-<name>")
    monitors.stop_all()            # on daemon stop

Its final acks: ``done`` when ``duration_s`` is over, ``cancelled``, or ``failed`` with the reason
(the model cannot be fetched or loaded, an inference raises).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from agent.daemon.monitor_socket import complete_window
from agent.monitor import InferenceMonitor, LocalWindow
from shared.errors import EdgemeterError
from shared.messages import JobCommand, JobState, ModelRef, MonitorSpec, Telemetry
from shared.monitoring import MonitorWindow
from shared.settings import SettingsTable

__all__ = ["MonitorJobs", "MonitorOutcome", "MonitorTable", "SpoolWindowSender", "load_call",
           "run_monitor"]

logger = logging.getLogger(__name__)

WARMUP_CALLS = 3
MAX_LAG_S = 1.0
"""Behind schedule by more than this, the schedule restarts from now (no burst to catch up)."""


class MonitorTable(SettingsTable):
    """A ``[[monitor]]`` table of the daemon's config: a monitoring job that starts with it."""

    model: Path = Field(description="model file (.onnx or .tflite) on this device")
    rate_qps: float = Field(gt=0, le=100_000, description="queries per second to aim at")
    window_s: float = Field(10.0, ge=1, le=3600, description="seconds per window")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._:@-]{1,128}$",
                             description="monitor name (default: the model file's stem)")
    backend: str = Field("auto", description="auto, onnxruntime or litert")
    threads: int | None = Field(None, ge=1, le=256)


class WindowSpool(Protocol):
    def put_window(self, window: MonitorWindow) -> None: ...


class SpoolWindowSender:
    """An :class:`agent.monitor.InferenceMonitor` sender that completes each window with the
    board's state and the job id and puts it in the spool."""

    def __init__(self, spool: WindowSpool, *, device_id: str, fleet: str, job_id: str | None,
                 telemetry: Callable[[], Telemetry | None] = lambda: None) -> None:
        self.spool = spool
        self.device_id = device_id
        self.fleet = fleet
        self.job_id = job_id
        self._telemetry = telemetry

    def send(self, window: LocalWindow) -> bool:
        try:
            complete = complete_window(window, device_id=self.device_id, fleet=self.fleet,
                                       telemetry=self._telemetry())
            self.spool.put_window(complete.model_copy(update={"job_id": self.job_id}))
        except EdgemeterError as err:  # the spool's disk: the window is dropped and counted
            logger.warning("monitor %s: window not kept: %s", window.name, err)
            return False
        return True

    def close(self) -> None:
        pass


Load = Callable[[Path, str, "int | None"], Callable[[], object]]


def load_call(path: Path, backend: str = "auto", threads: int | None = None
              ) -> Callable[[], object]:
    """Load ``path`` with its backend and bind random inputs: the call a monitor times."""
    from agent.backends.base import backend_for
    from agent.inputs import random_inputs

    # the backend's own settings table at its defaults (no providers, no delegate)
    session = backend_for(path.suffix.lstrip("."), backend).load(path, threads=threads, batch=1,
                                                                 settings=None)
    return session.bind(random_inputs(session.inputs, session.batch, seed=0))


@dataclass(frozen=True)
class MonitorOutcome:
    state: JobState
    """``done`` (its duration is over), ``cancelled`` or ``failed``"""
    reason: str | None
    queries: int


def run_monitor(call: Callable[[], object], spec: MonitorSpec, *, name: str,
                sender: Any, cancel: threading.Event,
                clock: Callable[[], float] = time.monotonic,
                wall: Callable[[], float] = time.time) -> MonitorOutcome:
    """Call ``call`` at ``spec.rate_qps`` until ``cancel`` or ``spec.duration_s`` (see the
    module docstring); windows go to ``sender``."""
    for _ in range(WARMUP_CALLS):
        call()
    monitor = InferenceMonitor(name, window_s=spec.window_s, sender=sender, wall=wall)
    period_s = 1.0 / spec.rate_qps
    started = next_at = clock()
    ends_at = None if spec.duration_s is None else started + spec.duration_s
    state: JobState = "done"
    reason: str | None = None
    try:
        while True:
            now = clock()
            if ends_at is not None and now >= ends_at:
                break
            if now < next_at and cancel.wait(next_at - now):
                state, reason = "cancelled", "cancelled by a cancel job"
                break
            if cancel.is_set():
                state, reason = "cancelled", "cancelled by a cancel job"
                break
            began = time.perf_counter()
            call()
            monitor.record(time.perf_counter() - began)
            next_at += period_s
            if clock() - next_at > MAX_LAG_S:
                next_at = clock()
    except Exception as err:  # the model failed mid-run: say why, keep what was measured
        state, reason = "failed", f"inference failed: {err}"
    finally:
        monitor.close()
    return MonitorOutcome(state, reason, monitor.recorded)


Ack = Callable[[str, JobState, "str | None"], None]


class MonitorJobs:
    """The daemon's running monitoring jobs (see the module docstring). Thread-safe."""

    def __init__(self, *, device_id: str, fleet: str, spool: WindowSpool,
                 fetch: Callable[[ModelRef], Path], ack: Ack,
                 telemetry: Callable[[], Telemetry | None] = lambda: None,
                 bench: Mapping[str, Any] | None = None, load: Load = load_call) -> None:
        self.device_id = device_id
        self.fleet = fleet
        self.spool = spool
        self._fetch = fetch
        self._ack = ack
        self._telemetry = telemetry
        self._bench = dict(bench or {})
        self._load = load
        self._lock = threading.Lock()
        self._running: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def start(self, job: JobCommand) -> None:
        """Start a ``monitor`` job; a job id already running is only acknowledged again."""
        assert job.kind == "monitor" and job.monitor is not None and job.model is not None
        with self._lock:
            if job.job_id in self._running:
                self._ack(job.job_id, "running", None)
                return
        model, spec = job.model, job.monitor
        name = spec.name or Path(model.name).stem
        backend = job.settings.backend if job.settings.backend != "auto" else \
            str(self._bench.get("backend", "auto"))
        threads = job.settings.threads or self._bench.get("threads")
        self._ack(job.job_id, "accepted", None)
        self._launch(job.job_id, name, spec, lambda: self._fetch(model), backend, threads)

    def start_table(self, table: MonitorTable) -> str:
        """Start a ``[[monitor]]`` table's job; returns its job id (``config-<name>``)."""
        name = table.name or table.model.stem
        job_id = f"config-{name}"[:128]
        spec = MonitorSpec(rate_qps=table.rate_qps, window_s=table.window_s, name=name)
        self._launch(job_id, name, spec, lambda: table.model, table.backend, table.threads)
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Stop a running monitoring job; False when ``job_id`` is not one of them."""
        with self._lock:
            entry = self._running.get(job_id)
        if entry is None:
            return False
        entry[1].set()
        return True

    def stop_all(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            entries = list(self._running.values())
        for _, cancel in entries:
            cancel.set()
        for thread, _ in entries:
            thread.join(timeout_s)

    def _launch(self, job_id: str, name: str, spec: MonitorSpec, model: Callable[[], Path],
                backend: str, threads: Any) -> None:
        cancel = threading.Event()
        thread = threading.Thread(target=self._run, name=f"edgemeter-monitor-job-{job_id}",
                                  args=(job_id, name, spec, model, backend, threads, cancel),
                                  daemon=True)
        with self._lock:
            self._running[job_id] = (thread, cancel)
        thread.start()

    def _run(self, job_id: str, name: str, spec: MonitorSpec, model: Callable[[], Path],
             backend: str, threads: Any, cancel: threading.Event) -> None:
        try:
            self._ack(job_id, "running", None)
            try:
                call = self._load(model(), backend, threads)
            except (EdgemeterError, OSError) as err:
                self._ack(job_id, "failed", str(err))
                return
            sender = SpoolWindowSender(self.spool, device_id=self.device_id, fleet=self.fleet,
                                       job_id=job_id,
                                       telemetry=self._telemetry)
            outcome = run_monitor(call, spec, name=name, sender=sender, cancel=cancel)
            logger.info("monitoring job %s %s after %d queries", job_id, outcome.state,
                        outcome.queries)
            self._ack(job_id, outcome.state, outcome.reason)
        except Exception as err:  # never end the daemon for one job
            logger.exception("monitoring job %s failed", job_id)
            self._ack(job_id, "failed", f"internal error: {err}")
        finally:
            with self._lock:
                self._running.pop(job_id, None)
