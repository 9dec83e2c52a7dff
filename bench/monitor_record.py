"""What ``InferenceMonitor.record`` costs: the target is under 2 us per call.

Times ``--n`` calls of ``monitor.record(seconds)`` (a real monitor whose window thread runs, its
socket pointing nowhere, so windows are built and dropped as in an application whose daemon is
away) against a bare loop over the same values that only adds them up, best of ``--repeat``, and
prints ns per record, the bare loop's ns per iteration, their difference, the ratio, and the
ratio of the difference to the 2 us target. Also ``with monitor.time():`` around a no-op. It
prints numbers and exits 0; it asserts nothing.

    .venv/bin/python bench/monitor_record.py [--n 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.monitor import InferenceMonitor  # noqa: E402

TARGET_NS = 2000.0


def bare(values: list[float]) -> float:
    started = time.perf_counter()
    total = 0.0
    for seconds in values:
        total += seconds
    return time.perf_counter() - started


def recorded(monitor: InferenceMonitor, values: list[float]) -> float:
    record = monitor.record
    started = time.perf_counter()
    for seconds in values:
        record(seconds)
    return time.perf_counter() - started


def timed(monitor: InferenceMonitor, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        with monitor.time():
            pass
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the "no daemon" warning is expected here
    values = [0.001 + (i % 997) * 1e-6 for i in range(args.n)]
    with tempfile.TemporaryDirectory() as folder:
        monitor = InferenceMonitor("bench", window_s=1.0, socket=Path(folder) / "nobody.sock")
        bare_s = min(bare(values) for _ in range(args.repeat))
        record_s = min(recorded(monitor, values) for _ in range(args.repeat))
        timed_s = min(timed(monitor, args.n // 10) for _ in range(args.repeat))
        monitor.close()
    bare_ns = bare_s / args.n * 1e9
    record_ns = record_s / args.n * 1e9
    timed_ns = timed_s / (args.n // 10) * 1e9
    print(f"bare loop:      {bare_ns:8.1f} ns/iteration")
    print(f"record():       {record_ns:8.1f} ns/record  ({record_ns / bare_ns:.1f}x the bare loop)")
    print(f"record() cost:  {record_ns - bare_ns:8.1f} ns over the bare loop "
          f"({(record_ns - bare_ns) / TARGET_NS:.2f} of the {TARGET_NS:.0f} ns target)")
    print(f"with time():    {timed_ns:8.1f} ns/block")
    print(f"counted: {monitor.recorded} of "
          f"{args.n * args.repeat + (args.n // 10) * args.repeat} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
