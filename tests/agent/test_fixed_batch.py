"""Models whose file fixes a batch above 1 are counted per sample: MACs, samples/s, GMAC/s and the
fidelity digest, whatever ``--batch`` says. Graphs are built here with onnx's helpers and run
through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.analyze import analyze_model
from edgemeter.cli import main
from shared.schema import BenchmarkResult

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = ["--power", "none", "--warmup", "3", "-q"]

# Conv: 3 -> 8 channels, 3x3 kernel, 'same' padding on 16x16: per sample 8*3*9*16*16 MACs
CONV_MACS_PER_SAMPLE = 8 * 3 * 9 * 16 * 16
# GRU: hidden 8, input 4, 5 steps; per sample and step 3 gates x 8 x (4 + 8)
GRU_MACS_PER_SAMPLE = 5 * 3 * 8 * (4 + 8)


def _save(path: Path, nodes: list, inputs: list, inits: list, outputs: list) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def conv_model(tmp_path: Path, batch: int | str) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return _save(tmp_path / f"conv_b{batch}.onnx", [node],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])], [w],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 16, 16])])


def gru_model(tmp_path: Path, batch: int) -> Path:
    """A time-major GRU (layout 0): X is [steps, batch, input], its batch on axis 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(1, 24, 4)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.normal(size=(1, 24, 8)).astype(np.float32), "R")
    node = helper.make_node("GRU", ["x", "W", "R"], ["y", "y_h"], hidden_size=8)
    return _save(tmp_path / f"gru_b{batch}.onnx", [node],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, batch, 4])], [w, r],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, batch, 8]),
                  helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [1, batch, 8])])


def bench(model: Path, tmp_path: Path, *extra: str) -> BenchmarkResult:
    out = tmp_path / "out.json"
    assert main(["bench", str(model), "--json", str(out), *FAST, *extra]) == 0
    return BenchmarkResult.model_validate_json(out.read_text())


def test_a_fixed_batch_conv_counts_macs_per_sample(tmp_path: Path) -> None:
    analysis = analyze_model(conv_model(tmp_path, 4))
    assert (analysis.batch, analysis.macs) == (4, CONV_MACS_PER_SAMPLE)
    assert analyze_model(conv_model(tmp_path, "N")).macs == CONV_MACS_PER_SAMPLE
    assert analyze_model(conv_model(tmp_path, 1)).batch == 1


def test_a_fixed_batch_time_major_gru_counts_macs_per_sample(tmp_path: Path) -> None:
    analysis = analyze_model(gru_model(tmp_path, 3))
    assert analysis.batch == 3
    assert dict(analysis.batch_axes) == {"x": 1}
    assert analysis.macs == GRU_MACS_PER_SAMPLE
    assert analyze_model(gru_model(tmp_path, 1)).macs == GRU_MACS_PER_SAMPLE


@pytest.mark.parametrize("flag", ["1", "4"])
def test_a_fixed_batch_conv_run_counts_four_samples_a_call(tmp_path: Path, flag: str) -> None:
    result = bench(conv_model(tmp_path, 4), tmp_path, "--iterations", "80", "--batch", flag,
                   "--fidelity", "4")
    assert result.model.macs == CONV_MACS_PER_SAMPLE
    assert result.spec.effective.batch == 4
    calls_per_s = result.latency_ms.count / result.spec.effective.duration_s
    assert result.throughput_sps == pytest.approx(4 * calls_per_s, rel=0.05)
    assert result.gmacs_per_s == pytest.approx(CONV_MACS_PER_SAMPLE * result.throughput_sps / 1e9)


def test_default_fidelity_works_on_a_fixed_batch_model_and_matches_the_batch_1_model(
    tmp_path: Path,
) -> None:
    fixed = bench(conv_model(tmp_path, 4), tmp_path, "--iterations", "70")
    single = bench(conv_model(tmp_path, 1), tmp_path, "--iterations", "70")
    assert fixed.fidelity is not None and single.fidelity is not None
    assert fixed.fidelity.n_inputs == single.fidelity.n_inputs
    assert fixed.fidelity.outputs["0"].size == single.fidelity.outputs["0"].size == 8 * 16 * 16
    assert fixed.fidelity.outputs["0"].sha256 == single.fidelity.outputs["0"].sha256
    assert not fixed.validity.warnings or all("depend" not in w for w in fixed.validity.warnings)


def test_a_fixed_batch_gru_runs_with_default_fidelity_per_sample(tmp_path: Path) -> None:
    fixed = bench(gru_model(tmp_path, 3), tmp_path, "--iterations", "70")
    single = bench(gru_model(tmp_path, 1), tmp_path, "--iterations", "70")
    assert fixed.model.macs == GRU_MACS_PER_SAMPLE and fixed.spec.effective.batch == 3
    assert fixed.fidelity is not None and single.fidelity is not None
    for key in ("0", "1"):
        assert fixed.fidelity.outputs[key].size == single.fidelity.outputs[key].size
        assert fixed.fidelity.outputs[key].sha256 == single.fidelity.outputs[key].sha256


def test_a_batch_other_than_the_fixed_one_is_refused(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(conv_model(tmp_path, 4)), "--batch", "2", *FAST]) == 2
    assert "fixed batch of 4" in capsys.readouterr().err


def constant_model(tmp_path: Path, divide: bool = False) -> Path:
    """An output that ignores its input: x * 0 + 0.5 (or x / 0: infinities and NaN)."""
    from onnx import TensorProto, helper, numpy_helper

    zero = numpy_helper.from_array(np.zeros((1, 10), dtype=np.float32), "zero")
    half = numpy_helper.from_array(np.full((1, 10), 0.5, dtype=np.float32), "half")
    nodes = ([helper.make_node("Div", ["x", "zero"], ["y"])] if divide else
             [helper.make_node("Mul", ["x", "zero"], ["m"]),
              helper.make_node("Add", ["m", "half"], ["y"])])
    return _save(tmp_path / f"const_{divide}.onnx", nodes,
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                 [zero, half], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])


def test_outputs_identical_for_every_input_are_a_validity_warning(tmp_path: Path) -> None:
    result = bench(constant_model(tmp_path), tmp_path, "--iterations", "70")
    assert result.validity.valid  # a warning, not a reason
    assert any("do not depend on the input" in w for w in result.validity.warnings)


def test_nan_or_infinite_outputs_are_a_validity_warning(tmp_path: Path) -> None:
    result = bench(constant_model(tmp_path, divide=True), tmp_path, "--iterations", "70")
    assert any("NaN or infinite" in w for w in result.validity.warnings)


def test_a_model_whose_outputs_follow_the_input_raises_no_output_warning(tmp_path: Path) -> None:
    result = bench(conv_model(tmp_path, "N"), tmp_path, "--iterations", "70")
    assert not [w for w in result.validity.warnings if "output" in w]
