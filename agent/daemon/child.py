"""One benchmark job, run in its own process: ``python -m agent.daemon.child``.

The daemon writes a JSON request on this process's stdin — ``{"model": PATH, "settings": {...},
"seq": N, "result_path": PATH}`` — and reads progress lines (``{"phase": ..., ...}``, one JSON
object a line) from its stdout. On success the result is written to ``result_path`` and the exit
code is 0; a one-line error goes to stderr with exit code 2. A native crash (a segfault in a
runtime on a hostile model) ends only this process: the daemon reports the job failed and goes on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shared.errors import EdgemeterError

PROGRESS_INTERVAL_S = 1.0


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    request = json.loads(sys.stdin.read())
    from agent.config import load_settings
    from agent.runner import Runner

    emit(phase="load")
    started = time.monotonic()
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(PROGRESS_INTERVAL_S):
            emit(phase="measure", elapsed_s=round(time.monotonic() - started, 1))

    beat = threading.Thread(target=heartbeat, daemon=True)
    try:
        settings = load_settings(request["settings"])
        beat.start()
        result = Runner(settings, Path(request["model"])).run(seq=int(request["seq"]))
    except EdgemeterError as err:
        print(str(err), file=sys.stderr)
        return 2
    finally:
        stop.set()
    tmp = Path(request["result_path"] + ".tmp")
    tmp.write_text(result.model_dump_json())
    os.replace(tmp, request["result_path"])
    emit(phase="publish", iterations_done=result.latency_ms.count,
         running_p50_ms=result.latency_ms.p50)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(main())
