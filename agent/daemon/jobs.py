"""Benchmark jobs: validated like the CLI's flags, run one at a time, each in a child process.

The daemon runs benchmark jobs and nothing else: a job names a model by sha256 (fetched into the
model cache, the only place a job's model can come from) and the run settings it sets
(:class:`shared.run_settings.RunSettings`: no paths, bounded values). :func:`job_settings` lays
them over the daemon's ``[bench]`` table (:meth:`agent.daemon.config.AgentSettings.job_base`) and
validates the result as the agent's own :class:`agent.config.BenchSettings`, so a value the CLI
would refuse is rejected with the same reason, before the job is accepted.

:class:`ChildProcessJobRunner` starts ``python -m agent.daemon.child``
for each job and hands it those settings as ``model_dump_json()``, which the child validates once:
a runtime that crashes on a bad model kills that child, never the daemon. The child dies with the
daemon: it runs in a process group of its own, which cancelling (a cancel job, or the daemon
stopping) terminates and then kills; on Linux it asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``), and everywhere it watches its stdin, which the daemon holds open until the
job ends: end of file means the daemon is gone (:mod:`agent.daemon.child`).

A job's files live in a temporary folder named ``edgemeter-job-<daemon pid>-*``
(:func:`job_folder`); :func:`remove_stale_job_folders` removes, at the daemon's start, those whose
daemon is no longer running (left by a kill -9 or a power cut).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from agent.config import BenchSettings
from shared.errors import ConfigError
from shared.messages import JobCommand
from shared.schema import BenchmarkResult
from shared.settings import validation_message

logger = logging.getLogger(__name__)

CANCEL_GRACE_S = 5.0
JOB_FOLDER_PREFIX = "edgemeter-job-"
PARENT_PID_ENV = "EDGEMETER_DAEMON_PID"
"""The daemon's pid, for the child to check that its parent is still the daemon."""


@contextlib.contextmanager
def job_folder(workdir: Path | None = None) -> Iterator[Path]:
    """A temporary folder for one job, named after this process (removed when done)."""
    with tempfile.TemporaryDirectory(prefix=f"{JOB_FOLDER_PREFIX}{os.getpid()}-",
                                     dir=workdir) as tmp:
        yield Path(tmp)


def remove_stale_job_folders(workdir: Path | None = None) -> list[Path]:
    """Remove job folders whose daemon is gone (a kill -9 leaves them); returns those removed.

    A folder of a daemon still running (another one on this machine) stays; so do folders of
    another user. A folder without a pid in its name (an older release) counts as stale.
    """
    root = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
    removed = []
    for folder in root.glob(f"{JOB_FOLDER_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        owner = folder.name[len(JOB_FOLDER_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and (int(owner) == os.getpid() or _alive(int(owner))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    if removed:
        logger.info("removed %d job folder(s) left by a daemon that stopped mid-job", len(removed))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass(frozen=True)
class JobOutcome:
    state: str
    """``done``, ``failed`` or ``cancelled``"""
    reason: str | None = None
    result: BenchmarkResult | None = None


ProgressSink = Callable[[dict[str, Any]], None]


class JobRunner(Protocol):
    def run(self, settings: BenchSettings, model: Path, seq: int, progress: ProgressSink,
            cancel: threading.Event) -> JobOutcome: ...


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def job_settings(job: JobCommand, base: BenchSettings) -> BenchSettings:
    """The settings a job runs with: what the job sets, over the daemon's ``base`` (its
    ``[bench]`` table with its identity). Raises ConfigError with the reason the CLI would give.
    """
    given = base.model_dump(mode="json", exclude_unset=True)
    wanted = job.settings.model_dump(mode="json", exclude_unset=True)
    try:
        return BenchSettings.model_validate(_deep_merge(given, wanted))
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from err


validate_job = job_settings
"""Before accepting a job: its settings, or the ConfigError that rejects it."""


def parse_job(payload: bytes) -> JobCommand:
    """Parse a ``cmd`` message; raises ValueError with a one-line reason."""
    try:
        return JobCommand.model_validate_json(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ValueError(f"invalid job: {where}: {first['msg']}") from None


class ChildProcessJobRunner:
    """Runs each job in ``python -m agent.daemon.child`` and relays its progress lines."""

    def __init__(self, python: str = sys.executable, workdir: Path | None = None) -> None:
        self.python = python
        self.workdir = workdir

    def run(self, settings: BenchSettings, model: Path, seq: int, progress: ProgressSink,
            cancel: threading.Event) -> JobOutcome:
        with job_folder(self.workdir) as tmp:
            result_path = tmp / "result.json"
            request = {"model": str(model), "settings": settings.model_dump_json(), "seq": seq,
                       "result_path": str(result_path)}
            proc = subprocess.Popen(
                [self.python, "-m", "agent.daemon.child"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True,  # its own process group: killed whole on cancel and stop
                env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
            )
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            with contextlib.suppress(BrokenPipeError):  # a child that died at once: see its exit
                # one line; stdin then stays open until the job ends (the child watches it)
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
            watcher = threading.Thread(target=self._cancel_on, args=(cancel, proc), daemon=True)
            watcher.start()
            stderr_lines: list[str] = []
            drain = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr or []),
                                     daemon=True)
            drain.start()
            try:
                for line in proc.stdout:
                    with contextlib.suppress(ValueError):
                        data = json.loads(line)
                        if isinstance(data, dict):
                            progress(data)
                code = proc.wait()
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            drain.join(5)
            cancel_done = cancel.is_set()
            cancel.set()  # releases the watcher
            watcher.join(1)
            if cancel_done and code != 0:
                return JobOutcome("cancelled", "cancelled by a cancel job")
            if code < 0:
                name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ \
                    else str(-code)
                return JobOutcome("failed", f"the runtime crashed ({name}) on this model")
            if code != 0:
                tail = next((ln.strip() for ln in reversed(stderr_lines) if ln.strip()),
                            f"exit code {code}")
                return JobOutcome("failed", tail[:400])
            try:
                result = BenchmarkResult.model_validate_json(result_path.read_bytes())
            except (OSError, ValidationError) as err:
                return JobOutcome("failed", f"the job wrote no valid result: {err}"[:400])
            return JobOutcome("done", result=result)

    @staticmethod
    def _cancel_on(cancel: threading.Event, proc: subprocess.Popen[str]) -> None:
        cancel.wait()
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    """Signal the child's whole process group (what the runtime started, too)."""
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(OSError):
            proc.send_signal(signum)


__all__ = ["ChildProcessJobRunner", "JobOutcome", "JobRunner", "job_folder", "job_settings",
           "parse_job", "remove_stale_job_folders", "validate_job"]
