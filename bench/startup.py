"""Start-up time of the command line, against a bare ``python -c pass`` in the same run.

Target: ``edgemeter --help`` under 200 ms (a board pays start-up on every job and every timer
run). Each command is run ``--rounds`` times, interleaved, in fresh processes; it prints the
median wall time of each and its ratio to the bare interpreter, and asserts nothing.

    .venv/bin/python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EDGEMETER = [sys.executable, "-m", "edgemeter.cli"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "edgemeter --help": [*EDGEMETER, "--help"],
    "edgemeter bench --help": [*EDGEMETER, "bench", "--help"],
    "edgemeter collector serve --help": [*EDGEMETER, "collector", "serve", "--help"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True)
            times[name].append(time.perf_counter() - t0)
    bare = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<34} median {median * 1000:7.1f} ms  ({median / bare:5.1f}x bare python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
