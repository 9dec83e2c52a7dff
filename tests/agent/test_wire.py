"""What the agent puts on the wire (schema 2): the fidelity digest, the thinned power trace, the
histogram of real latencies, and a real result under 3 KB that still compares with a version-1 run."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from agent import fidelity as fid
from agent.backends import backend_for
from agent.inputs import random_inputs
from agent.wire import MAX_TRACE_POINTS, lean_energy, thin_trace
from collector.compare.engine import fidelity_agreement
from edgemeter.cli import main
from shared import latency
from shared.payload import pack
from shared.schema import (
    BenchmarkResult,
    EnergyReport,
    FidelityDigest,
    LatencyHistogram,
    PowerScope,
    PowerTrace,
)

V1_REAL = Path(__file__).parents[1] / "shared" / "wire_v1" / "result_vww_96_int8_quick.json"
WIRE_TARGET_BYTES = 3_000


# fidelity digest ------------------------------------------------------------------------------


def test_a_small_output_sends_every_value_to_four_digits_of_its_largest() -> None:
    rows = [np.array([0.97265625, 0.02734375]), np.array([0.1, 0.9]), np.array([-3e-5, 1.2e-4])]
    digest = fid.digest_output(rows, seed=0)
    assert digest.values == [[0.9727, 0.0273], [0.1, 0.9], [-3e-5, 0.00012]]
    assert digest.top_k is None and digest.sketch is None
    assert [fp.top_k for fp in digest.fingerprints(k=5)] == [[0, 1], [1, 0], [1, 0]]


def test_a_large_output_sends_top_k_scores_and_a_sketch_not_its_values() -> None:
    rng = np.random.default_rng(1)
    rows = [rng.normal(size=1001) for _ in range(3)]
    digest = fid.digest_output(rows, seed=0)
    assert digest.values is None and digest.size == 1001
    assert digest.top_k is not None and digest.top_scores is not None and digest.sketch is not None
    for row, top, scores, sketch in zip(rows, digest.top_k, digest.top_scores, digest.sketch,
                                        strict=True):
        assert top == np.argsort(-row, kind="stable")[:fid.TOP_K].tolist()
        assert scores == pytest.approx(row[top], rel=1e-3)
        assert len(sketch) == fid.SKETCH_DIM


def test_the_sketch_is_the_start_of_version_1s_so_the_two_compare() -> None:
    # version 1's sketch, as agent/fidelity.py computed it before schema 2
    row = np.random.default_rng(2).normal(size=500)
    v1_projection = np.random.default_rng([0, 500]).choice([-1.0, 1.0], size=(64, 500)) / np.sqrt(64)
    v1_sketch = v1_projection @ row
    digest = fid.digest_output([row], seed=0)
    assert digest.sketch is not None
    largest = float(np.max(np.abs(v1_sketch[: fid.SKETCH_DIM])))
    assert digest.sketch[0] == pytest.approx(v1_sketch[: fid.SKETCH_DIM].tolist(), abs=1e-3 * largest)


def test_the_digest_says_whether_two_runs_gave_identical_outputs() -> None:
    rows = [np.linspace(0, 1, 300), np.linspace(1, 0, 300)]
    same = fid.digest_output([r.copy() for r in rows], seed=0)
    assert fid.digest_output(rows, seed=0).sha256 == same.sha256
    nudged = [rows[0].copy(), rows[1].copy()]
    nudged[1][7] += 1e-12  # below any rounding on the wire, still a different output
    assert fid.digest_output(nudged, seed=0).sha256 != same.sha256
    expected = hashlib.sha256(b"".join(r.astype("<f8").tobytes() for r in rows)).hexdigest()
    assert same.sha256 == expected


def test_full_fidelity_sends_every_value_unrounded() -> None:
    row = np.random.default_rng(3).normal(size=400)
    digest = fid.digest_output([row], seed=0, full=True)
    assert digest.values == [row.tolist()]


def test_non_finite_extremes_survive_rounding_as_finite_numbers() -> None:
    digest = fid.digest_output([np.array([np.inf, -np.inf, 1.23456])], seed=0)
    assert digest.values is not None and all(math.isfinite(v) for v in digest.values[0])
    assert digest.values[0][2] == 1.235  # rounded against the finite values, not the stand-ins
    assert digest.non_finite == 2


# power trace -----------------------------------------------------------------------------------


def _trace(seconds: float, hz: float = 20.0) -> PowerTrace:
    t = np.arange(0, seconds, 1 / hz) + 0.0123
    return PowerTrace(t_s=t.tolist(), power_w=(4 + np.sin(t)).tolist())


def test_a_long_trace_is_averaged_into_a_bounded_number_of_points_keeping_its_energy() -> None:
    raw = _trace(600)  # an mlperf run: 12,000 samples
    thin = thin_trace(raw)
    assert len(thin.t_s) == MAX_TRACE_POINTS
    assert thin.t_s == sorted(thin.t_s)
    assert thin.t_s[0] >= raw.t_s[0] and thin.t_s[-1] <= raw.t_s[-1]
    assert np.mean(thin.power_w) == pytest.approx(np.mean(raw.power_w), rel=1e-3)
    assert len(thin.model_dump_json()) < 1_500


def test_a_short_trace_keeps_every_point_rounded() -> None:
    raw = _trace(1)
    thin = thin_trace(raw)
    assert len(thin.t_s) == len(raw.t_s)
    assert thin.t_s[0] == 0.012 and thin.power_w[0] == pytest.approx(raw.power_w[0], rel=1e-2)


def test_only_the_trace_of_the_energy_block_changes() -> None:
    energy = EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False,
                          avg_power_w=4.0, peak_power_w=5.0, energy_j=40.0, trace=_trace(10))
    lean = lean_energy(energy)
    assert lean is not None and lean.trace is not None
    assert lean.model_dump(exclude={"trace"}) == energy.model_dump(exclude={"trace"})
    assert lean_energy(None) is None


# real runs --------------------------------------------------------------------------------------


def test_the_histogram_of_a_real_models_latencies_is_within_one_percent(shared_models: Path) -> None:
    backend = backend_for("tflite")
    session = backend.load(shared_models / "kws_dscnn_int8.tflite", threads=1)
    try:
        feed = random_inputs(session.inputs, 1, 0, (0.0, 1.0))
        latencies_ns = []
        for _ in range(2_000):
            start = time.perf_counter_ns()
            session.run(feed)
            latencies_ns.append(time.perf_counter_ns() - start)
    finally:
        session.close()
    values = np.asarray(latencies_ns, dtype=np.float64)
    hist = LatencyHistogram.of(values)
    for q in (0.0, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = latency.percentile(np.sort(values), q)  # LoadGen's index
        assert abs(hist.quantile_ms(q) * 1e6 - exact) <= hist.rel_error * exact * (1 + 1e-9)


def _bench(model: Path, out: Path, *flags: str) -> tuple[BenchmarkResult, bytes]:
    assert main(["bench", str(model), "--json", str(out), "-q", *flags]) == 0
    text = json.dumps(json.loads(out.read_text()), separators=(",", ":")).encode()
    return BenchmarkResult.model_validate_json(text), text


@pytest.mark.slow
def test_a_real_quick_result_is_under_3_kb_on_the_wire_and_compares_with_version_1(
    shared_models: Path, tmp_path: Path,
) -> None:
    edge, text = _bench(shared_models / "vww_96_int8.tflite", tmp_path / "edge.json",
                        "--profile", "quick", "--idle-s", "0.5")
    assert edge.schema_version == 2
    assert isinstance(edge.latencies, LatencyHistogram)
    assert isinstance(edge.fidelity, FidelityDigest)
    assert len(pack(text)) < WIRE_TARGET_BYTES, (len(text), len(pack(text)))

    again, _ = _bench(shared_models / "vww_96_int8.tflite", tmp_path / "again.json",
                      "--iterations", "20", "--power", "none")
    assert isinstance(again.fidelity, FidelityDigest)
    assert again.fidelity.outputs["0"].sha256 == edge.fidelity.outputs["0"].sha256

    baseline, _ = _bench(shared_models / "vww_96_float.onnx", tmp_path / "dc.json",
                         "--iterations", "20", "--power", "none", "--role", "datacenter")
    v1_edge = BenchmarkResult.model_validate_json(V1_REAL.read_bytes())
    assert v1_edge.schema_version == 1
    for edge_fidelity in (edge.fidelity, v1_edge.fidelity):
        row = fidelity_agreement(edge_fidelity, baseline.fidelity)
        assert row.pairs == 32
        assert row.top1_agreement is not None and row.top1_agreement >= 0.9
        assert row.mae is not None and row.mae < 0.1
        assert row.cosine is not None and row.cosine > 0.99
    # the v1 and v2 int8 runs saw the same inputs and gave the same outputs
    assert fidelity_agreement(edge.fidelity, v1_edge.fidelity).mae == pytest.approx(0, abs=1e-4)
