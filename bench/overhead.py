#!/usr/bin/env python3
"""What edgemeter's harness costs: a bare runtime loop vs ``edgemeter bench``, interleaved.

For each round: a bare loop (``perf_counter_ns`` around ``interpreter.invoke()`` or
``session.run()``, nothing else), then the same model through the agent's Runner (the code path of
``edgemeter bench``) with power sampling off, then with power sampling on (``--power auto``).
Rounds interleave the variants in a shuffled order so drift in the machine hits each alike. Prints the medians of the
per-round p50 latencies and their ratios (targets: harness <= 1.03, power on/off <= 1.02).

    .venv/bin/python bench/overhead.py [MODEL] [--rounds 15] [--iterations 1500] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.analyze import detect_format
from agent.backends import backend_for
from agent.config import load_settings
from agent.inputs import random_inputs
from agent.runner import Runner

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "vww_96_int8.tflite"


def bare_p50_ms(model: Path, iterations: int, threads: int) -> float:
    fmt = detect_format(model)
    session = backend_for(fmt).load(model, threads=threads)
    call = session.bind(random_inputs(session.inputs, 1, seed=0))
    for _ in range(200):
        call()
    lat = np.empty(iterations, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(iterations):
        t0 = clock()
        call()
        lat[i] = clock() - t0
    session.close()
    return float(np.median(lat)) / 1e6


def harness_p50_ms(model: Path, iterations: int, threads: int, power: str) -> float:
    settings = load_settings({
        "iterations": iterations, "warmup": 200, "threads": threads, "fidelity": 0,
        "power": power, "idle_s": 0.0,
    })
    result = Runner(settings, model).run()
    return result.latency_ms.p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    variants: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_p50_ms(args.model, args.iterations, args.threads),
        "bench": lambda: harness_p50_ms(args.model, args.iterations, args.threads, "none"),
        "bench+power": lambda: harness_p50_ms(args.model, args.iterations, args.threads, "auto"),
    }
    p50s: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    rng = random.Random(0)
    for r in range(args.rounds):
        rng.shuffle(order)  # no variant always runs first or last in a round
        for name in order:
            p50s[name].append(variants[name]())
        print(f"round {r + 1}: " + "  ".join(f"{n} {p50s[n][-1]:.4f} ms" for n in variants), flush=True)
    mb, mo, mp = (statistics.median(p50s[n]) for n in variants)
    print(f"model {args.model.name}, {args.iterations} iterations x {args.rounds} rounds, "
          f"{args.threads} threads")
    print(f"median p50: bare {mb:.4f} ms, edgemeter bench {mo:.4f} ms, with power sampling {mp:.4f} ms")
    print(f"p50 ratio bench/bare = {mo / mb:.3f} (target <= 1.03)")
    print(f"p50 ratio power-on/power-off = {mp / mo:.3f} (target <= 1.02)")
    # The machine drifts between rounds; the per-round (paired) ratios cancel that drift.
    paired_h = statistics.median(b / a for a, b in zip(p50s["bare"], p50s["bench"], strict=True))
    paired_p = statistics.median(b / a for a, b in zip(p50s["bench"], p50s["bench+power"], strict=True))
    print(f"median of per-round ratios: bench/bare = {paired_h:.3f}, power-on/power-off = {paired_p:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
