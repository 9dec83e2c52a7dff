"""``edgemeter analyze`` through the real root CLI, and the public surface of agent.analyze."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import agent.analyze
from agent.analyze import LayerCount, ModelAnalysis, analyze_model, detect_format
from agent.errors import ModelError
from edgemeter import cli
from shared.schema import MacsCoverage

Main = Callable[[Sequence[str] | None], int]


@pytest.fixture()
def main() -> Main:
    """``edgemeter.cli.main``, the root command line."""
    return cli.main


def test_json_output(main: Main, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(models / "ic_resnet8_int8.tflite"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "format", "macs", "flops", "params", "weight_bytes", "precision", "other_ops",
        "convention", "macs_coverage", "batch",
    }
    assert out["macs_coverage"] == {
        "counted": {"CONV_2D": 9, "FULLY_CONNECTED": 1},
        "uncounted": {},
        "no_macs": {"ADD": 3, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "SOFTMAX": 1},
    }
    assert out["format"] == "tflite" and out["precision"] == "int8"
    assert out["flops"] == 2 * out["macs"]


def test_json_per_layer(main: Main, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(models / "vww_96_int8_qdq.onnx"), "--json", "--per-layer"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(layer["macs"] for layer in out["layers"]) == out["macs"]
    assert set(out["layers"][0]) == {
        "name", "op_type", "macs", "other_ops", "params", "output_shape",
    }


def test_table_output(main: Main, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(models / "kws_dscnn_float32.tflite"), "--per-layer"]) == 0
    out = capsys.readouterr().out
    assert "hybrid" in out and "MACs" in out and "2.657 M" in out
    assert "DEPTHWISE_CONV_2D" in out


@pytest.mark.parametrize("case", ["missing", "corrupt-onnx", "corrupt-tflite", "unknown"])
def test_bad_files_exit_2_with_one_line(
    main: Main, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    suffix = {"corrupt-onnx": ".onnx", "corrupt-tflite": ".tflite", "unknown": ".bin"}
    path = tmp_path / f"model{suffix.get(case, '.onnx')}"
    if case != "missing":
        path.write_bytes(os.urandom(4096).replace(b"\x08", b"\x09"))
    assert main(["analyze", str(path)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgemeter: error: ") and "\n" not in err
    assert str(path) in err


def test_edgetpu_model_exit_2(main: Main, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = models / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    assert main(["analyze", str(path)]) == cli.EXIT_ERROR
    assert "Edge TPU" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_random_bytes_are_a_model_error(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("onnx" if suffix == ".onnx" else "ai_edge_litert")
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(os.urandom(10_000))
    with pytest.raises(ModelError):
        analyze_model(path)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        analyze_model(tmp_path / "absent.tflite")
    with pytest.raises(ModelError, match="not found"):
        detect_format(tmp_path / "absent.onnx")


def test_detect_format_by_suffix_and_protobuf_tag(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").write_bytes(b"\x00" * 16)
    (tmp_path / "a.tflite").write_bytes(b"\x00" * 16)
    (tmp_path / "a.model").write_bytes(b"\x08\x07" + b"\x00" * 14)
    assert detect_format(tmp_path / "a.onnx") == "onnx"
    assert detect_format(tmp_path / "a.tflite") == "tflite"
    assert detect_format(tmp_path / "a.model") == "onnx"
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        detect_format(tmp_path / "empty.onnx")


def test_public_surface_is_complete() -> None:
    public = {
        name
        for name, value in vars(agent.analyze).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("agent.")
    }
    assert public <= set(agent.analyze.__all__)
    assert set(agent.analyze.__all__) <= set(dir(agent.analyze))


def test_analysis_json_shape() -> None:
    layer = LayerCount("conv", "Conv", 10, 2, 3, (1, 2))
    coverage = MacsCoverage(counted={"Conv": 1})
    analysis = ModelAnalysis("onnx", 10, 2, 3, 12, "float32", (layer,), coverage)
    assert analysis.flops == 20
    assert "layers" not in analysis.to_json(per_layer=False)
    assert analysis.to_json(per_layer=True)["layers"] == [
        {"name": "conv", "op_type": "Conv", "macs": 10, "other_ops": 2, "params": 3,
         "output_shape": [1, 2]}
    ]


@pytest.mark.subprocess
def test_importing_the_package_imports_no_reader_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, agent.analyze, agent.commands.analyze; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'flatbuffers', 'ai_edge_litert') "
        "if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    ).stdout
    assert out.strip() == "[]"
