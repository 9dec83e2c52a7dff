"""One benchmark job, run in its own process: ``python -m agent.daemon.child``.

The daemon writes a JSON request on this process's stdin — ``{"model": PATH, "settings": JSON,
"seq": N, "result_path": PATH}``, where ``settings`` is the job's validated
:class:`agent.config.BenchSettings` as ``model_dump_json()``, validated again here once and
nowhere else (no environment, no config file) — and reads progress lines (``{"phase": ..., ...}``, one JSON
object a line) from its stdout. On success the result is written to ``result_path`` and the exit
code is 0; a one-line error goes to stderr with exit code 2. A native crash (a segfault in a
runtime on a hostile model) ends only this process: the daemon reports the job failed and goes on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from shared.errors import EdgemeterError


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    request = json.loads(sys.stdin.read())
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
