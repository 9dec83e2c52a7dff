#!/usr/bin/env python3
"""Bytes per result on the wire, schema 1 against schema 2, for real runs of the team's models.

Each model is benchmarked once through the agent's Runner (the code path of ``edgemeter bench``)
with every raw figure kept: the latencies, the power trace and every fidelity output. From that one
run the script builds the result both ways and prints the compact JSON size and the zlib size:

* v1: what the agent sent before schema 2 (0.1 % histogram of every occupied bucket, the power
  trace as sampled, a fidelity object per input with top-5, every value up to 256 elements or a
  64-value sketch);
* v2: what it sends now (1 % histogram as runs, the trace thinned to 48 points, the fidelity
  digest), and ``wire``: the v2 payload as :func:`shared.payload.pack` puts it on the wire.

    .venv/bin/python bench/wire.py [MODEL ...] [--profile quick] [--standard NAME ...] [--idle-s S]

``--standard NAME`` adds a run of that model with the standard profile (at least 10 s); by default
``vww_96_int8.tflite``. Models default to every model under ``../shared/models`` that runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import fidelity as fidelity_mod
from agent.config import BenchSettings, load_settings
from agent.runner import Loaded, Measured, Plan, Runner, WarmedUp
from shared import latency
from shared.payload import pack
from shared.schema import (
    BenchmarkResult,
    Fidelity,
    FidelityDigest,
    OutputFingerprint,
    RawLatencies,
)

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
TARGET_BYTES = 3_000
V1_MAX_VALUES = 256
V1_SKETCH_DIM = 64


class KeepingRunner(Runner):
    """The agent's Runner, keeping what it measured (raw latencies, raw power trace)."""

    measured: Measured | None = None

    def assemble(self, seq: int, plan: Plan, loaded: Loaded, warmed: WarmedUp,
                 measured: Measured, fidelity: FidelityDigest | None,
                 fidelity_warnings: list[str] | None = None) -> BenchmarkResult:
        self.measured = measured
        return super().assemble(seq, plan, loaded, warmed, measured, fidelity, fidelity_warnings)


def v1_fingerprint(flat: np.ndarray, seed: int) -> OutputFingerprint:
    """One output for one input as schema v1 sent it (the agent's code before schema 2)."""
    top = np.argsort(-flat, kind="stable")[: min(fidelity_mod.TOP_K, flat.size)]
    if flat.size <= V1_MAX_VALUES:
        return OutputFingerprint(top_k=top.tolist(), top_scores=flat[top].tolist(),
                                 values=flat.tolist())
    rng = np.random.default_rng([seed, flat.size])
    projection = rng.choice([-1.0, 1.0], size=(V1_SKETCH_DIM, flat.size)) / np.sqrt(V1_SKETCH_DIM)
    return OutputFingerprint(top_k=top.tolist(), top_scores=flat[top].tolist(),
                             sketch=(projection @ flat).tolist())


def both_versions(model: Path, settings: BenchSettings) -> tuple[BenchmarkResult, BenchmarkResult]:
    """One real run, as a v1 result and as the v2 result the agent sends."""
    runner = KeepingRunner(settings.model_copy(update={"full_fidelity": True}), model, quiet=True)
    full = runner.run()
    measured = runner.measured
    assert measured is not None
    v2_fidelity: FidelityDigest | None = None
    v1_fidelity: Fidelity | None = None
    if isinstance(full.fidelity, FidelityDigest):
        seed = full.fidelity.seed
        rows = {name: [np.asarray(r, dtype=np.float64) for r in (out.values or [])]
                for name, out in full.fidelity.outputs.items()}
        v2_fidelity = full.fidelity.model_copy(update={
            "digits": fidelity_mod.DIGITS,
            "outputs": {name: fidelity_mod.digest_output(r, seed) for name, r in rows.items()},
        })
        v1_fidelity = Fidelity(
            seed=seed, input_source=full.fidelity.input_source, n_inputs=full.fidelity.n_inputs,
            k=fidelity_mod.TOP_K,
            outputs={name: [v1_fingerprint(row, seed) for row in r] for name, r in rows.items()},
        )
    v2 = full.model_copy(update={"fidelity": v2_fidelity})
    buckets, counts = latency.encode(measured.timed.latencies_ns)
    v1 = full.model_copy(update={
        "schema_version": 1, "latencies": RawLatencies(buckets=buckets, counts=counts),
        "energy": measured.energy, "fidelity": v1_fidelity,
    })
    # both must be what a reader accepts
    return (BenchmarkResult.model_validate_json(v1.model_dump_json()),
            BenchmarkResult.model_validate_json(v2.model_dump_json()))


def compact(result: BenchmarkResult) -> bytes:
    return json.dumps(json.loads(result.model_dump_json()), separators=(",", ":")).encode()


def blocks(text: bytes) -> dict[str, int]:
    doc: dict[str, Any] = json.loads(text)
    return {k: len(json.dumps(v, separators=(",", ":"))) for k, v in doc.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--profile", default="quick", choices=["quick", "standard", "mlperf"])
    parser.add_argument("--standard", nargs="*", default=["vww_96_int8.tflite"],
                        help="models also run with the standard profile (>= 10 s)")
    parser.add_argument("--idle-s", type=float, default=1.0,
                        help="idle power baseline (does not change the sizes)")
    args = parser.parse_args()
    models = args.models or sorted(p for p in MODELS.glob("*") if p.suffix in (".onnx", ".tflite")
                                   and "edgetpu" not in p.name)
    runs = [(m, args.profile) for m in models]
    runs += [(MODELS / name, "standard") for name in args.standard or []]

    header = (f"{'model':<38} {'profile':<8} {'queries':>8} | {'v1 json':>8} {'v1 zlib':>8} | "
              f"{'v2 json':>8} {'wire':>8} | {'v1/wire':>7}  biggest v2 blocks (json bytes)")
    print(header)
    print("-" * len(header))
    worst_typical = 0
    for model, profile in runs:
        settings = load_settings({"profile": profile, "idle_s": args.idle_s})
        v1, v2 = both_versions(model, settings)
        v1_text, v2_text = compact(v1), compact(v2)
        wire = pack(v2_text)
        v1_zlib = len(zlib.compress(v1_text, 6))
        top = sorted(blocks(v2_text).items(), key=lambda kv: -kv[1])[:4]
        print(f"{model.name:<38} {profile:<8} {v2.latency_ms.count:>8} | {len(v1_text):>8,} "
              f"{v1_zlib:>8,} | {len(v2_text):>8,} {len(wire):>8,} | "
              f"{len(v1_text) / len(wire):>6.1f}x  " + ", ".join(f"{k} {n}" for k, n in top))
        if model.name == "vww_96_int8.tflite":
            worst_typical = max(worst_typical, len(wire))
    if worst_typical:
        verdict = "under" if worst_typical < TARGET_BYTES else "OVER"
        print(f"\nvww_96_int8.tflite on the wire: at most {worst_typical:,} bytes, {verdict} the "
              f"{TARGET_BYTES:,}-byte target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
