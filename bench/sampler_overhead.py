"""How much CPU the power sampler costs: the target is at most 1 % of one core at 20 Hz.

For each source it runs the real :class:`agent.power.sampler.Sampler` thread for ``--seconds``
while the main thread sleeps, and prints

* the sampler thread's own CPU time (``time.thread_time()`` read inside the thread) as a
  percentage of one core, and its ratio to the 1 % target;
* the whole process's CPU time over the same span (``time.process_time()``) as a cross-check;
* the cost of one edge snapshot read (what ``begin()``/``end()`` do on the caller's thread for
  counter sources).

Sources: ``rapl`` and ``jetson`` on copies of the committed fixture trees
(``tests/power/fixtures/rapl``, ``jetson-orin-nano-jp5``; sysfs on a real board is cheaper to read
than a disk-backed tree, so these are upper bounds), and ``estimate`` on this process.
It prints numbers and exits 0; it asserts nothing.

    .venv/bin/python bench/sampler_overhead.py [--seconds 10] [--hz 20]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.power.base import PowerSource, SourceContext  # noqa: E402
from agent.power.estimate import EstimateSource  # noqa: E402
from agent.power.jetson import JetsonSettings, JetsonSource  # noqa: E402
from agent.power.rapl import RaplSettings, RaplSource  # noqa: E402
from agent.power.sampler import Sampler  # noqa: E402
from shared.catalogue import load_catalogue  # noqa: E402

FIXTURES = REPO / "tests" / "power" / "fixtures"
TARGET_PCT = 1.0


def measure(label: str, source: PowerSource, seconds: float, hz: float) -> None:
    source.open()
    snapshots = 200
    t = time.perf_counter()
    for _ in range(snapshots):
        source.read()
    snapshot_us = (time.perf_counter() - t) / snapshots * 1e6
    sampler = Sampler(source, hz)
    cpu0, wall0 = time.process_time(), time.monotonic()
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    cpu1, wall1 = time.process_time(), time.monotonic()
    wall = wall1 - wall0
    thread_pct = sampler.cpu_s / wall * 100.0
    process_pct = (cpu1 - cpu0) / wall * 100.0
    samples = len(sampler.around(float("-inf"), float("inf")))
    source.close()
    print(
        f"{label:<28} {sampler.hz:5.1f} Hz  {samples / wall:6.2f} samples/s  "
        f"thread {thread_pct:6.3f} % of a core ({thread_pct / TARGET_PCT:5.3f} x target)  "
        f"process {process_pct:6.3f} %  snapshot {snapshot_us:7.1f} us"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per source (default 10)")
    parser.add_argument("--hz", type=float, default=20.0, help="sampling rate (default 20)")
    args = parser.parse_args()
    print(f"sampler overhead at {args.hz:g} Hz over {args.seconds:g} s per source; "
          f"target <= {TARGET_PCT:g} % of one core")
    with tempfile.TemporaryDirectory(prefix="edgemeter-bench-") as tmp:
        rapl_root = Path(tmp) / "rapl"
        shutil.copytree(FIXTURES / "rapl", rapl_root)
        jetson_root = Path(tmp) / "jetson"
        shutil.copytree(FIXTURES / "jetson-orin-nano-jp5", jetson_root)
        hardware = load_catalogue().get("generic-x86_64")
        measure("rapl (fixture tree)", RaplSource(RaplSettings(root=rapl_root)),
                args.seconds, args.hz)
        measure("jetson orin nano (fixture)",
                JetsonSource(JetsonSettings(root=jetson_root)), args.seconds, args.hz)
        measure("estimate (this process)",
                EstimateSource(context=SourceContext(hardware=hardware, cores_used=1)),
                args.seconds, args.hz)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
