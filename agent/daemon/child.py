"""One benchmark job, run in its own process: ``python -m agent.daemon.child``.

The daemon writes a JSON request as one line on this process's stdin — ``{"model": PATH,
"settings": JSON, "seq": N, "result_path": PATH}``, where ``settings`` is the job's validated
:class:`agent.config.BenchSettings` as ``model_dump_json()``, validated again here once and nowhere
else (no environment, no config file) — and reads progress lines (``{"phase": ..., ...}``, one JSON
object a line) from its stdout. On success the result is written to ``result_path`` and the exit
code is 0; a one-line error goes to stderr with exit code 2. A native crash (a segfault in a
runtime on a hostile model) ends only this process: the daemon reports the job failed and goes on.

This process never outlives the daemon: on Linux it asks the kernel for SIGKILL when its parent
goes (``prctl(PR_SET_PDEATHSIG)``; note the parent is the daemon's thread that started it, which
lives as long as the job), and on every system a thread watches stdin, which the daemon keeps
open until the job ends: end of file means the daemon is gone, and this process exits at once
(exit code 3). A daemon that died before the ``prctl`` is seen by the parent pid check.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from shared.errors import EdgemeterError

PR_SET_PDEATHSIG = 1
PARENT_PID_ENV = "EDGEMETER_DAEMON_PID"  # agent.daemon.jobs sets it
ORPHANED_EXIT = 3


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def die_with_parent() -> None:
    """SIGKILL when the parent goes (Linux); exit now when it is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = os.environ.get(PARENT_PID_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):
        os._exit(ORPHANED_EXIT)  # the daemon died before the prctl took effect


def watch_stdin() -> None:
    """Exit as soon as stdin ends: the daemon holds it open for as long as it wants the job."""

    fd = sys.stdin.fileno()

    def wait_for_eof() -> None:
        # the raw descriptor, not sys.stdin: a daemon thread blocked inside a buffered reader
        # would hold its lock when the interpreter exits, and Python aborts on that
        with contextlib.suppress(OSError):
            while os.read(fd, 4096):
                pass
        os._exit(ORPHANED_EXIT)

    threading.Thread(target=wait_for_eof, name="parent-watch", daemon=True).start()


def main() -> int:
    """The child process: tie its life to the daemon's, read the one request line, run it."""
    die_with_parent()
    request = json.loads(sys.stdin.readline())
    watch_stdin()
    return run_request(request)


def run_request(request: dict[str, Any]) -> int:
    """Validate the request's settings once, run the benchmark, write the result; the exit code."""
    from pydantic import ValidationError

    from agent.config import BenchSettings
    from agent.runner import Runner
    from shared.settings import validation_message

    def report(fields: dict[str, Any]) -> None:
        emit(**fields)

    try:
        settings = BenchSettings.model_validate_json(request["settings"])
    except ValidationError as err:
        print(validation_message(err), file=sys.stderr)
        return 2
    try:
        result = Runner(settings, Path(request["model"]), quiet=True,
                        progress=report).run(seq=int(request["seq"]))
    except EdgemeterError as err:
        print(str(err), file=sys.stderr)
        return 2
    tmp = Path(request["result_path"] + ".tmp")
    tmp.write_text(result.model_dump_json())
    os.replace(tmp, request["result_path"])
    emit(phase="publish", iterations_done=result.latency_ms.count,
         running_p50_ms=result.latency_ms.p50)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(main())
