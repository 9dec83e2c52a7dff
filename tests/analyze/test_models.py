"""``analyze_model`` on the team's real models in ``../shared/models`` (see its README).

Published figures and why the tolerances are what they are:

* MLPerf Tiny publishes its reference networks' MACs rounded to two or three significant digits
  (ResNet-8 12.5 M, DS-CNN 2.7 M, MobileNetV1-0.25 VWW 7.5 M, autoencoder 0.26 M). Rounding alone
  moves DS-CNN and the autoencoder by up to 1.9 %, so 3 % is allowed. That is still tight enough
  to catch a wrong convention: counting FLOPs (2x), counting bias adds as MACs (+0.5 % to +3 %
  only, caught by the exact cross-format checks below), or dropping the depthwise convolutions
  (DS-CNN -11 %, VWW -5 %).
* The MobileNet paper gives 14 M MACs for 0.25/128, itself rounded, and counts the 1001-way
  classifier; 5 % as asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.analyze import ModelAnalysis, analyze_model
from agent.errors import ModelError

EDGETPU_MODEL = "mobilenet_v1_0.25_128_quant_edgetpu.tflite"

EXPECTED_PRECISION = {
    "ad_autoencoder_float32.tflite": "float32",
    "ad_autoencoder_int8.tflite": "int8",
    "ad_autoencoder_int8_qdq.onnx": "int8",
    "ic_resnet8_float32.tflite": "float32",
    "ic_resnet8_int8.tflite": "int8",
    "ic_resnet8_int8_qdq.onnx": "int8",
    "kws_dscnn_float32.tflite": "hybrid",
    "kws_dscnn_int8.tflite": "int8",
    "kws_dscnn_int8_qdq.onnx": "int8",
    "mobilenet_v1_0.25_128_quant.tflite": "uint8",
    "retinaface_mnet025_320_int8_qdq.onnx": "int8",
    "vww_96_float.onnx": "float32",
    "vww_96_float.tflite": "float32",
    "vww_96_int8.tflite": "int8",
    "vww_96_int8_qdq.onnx": "int8",
}

# network: (files, published MACs, relative tolerance)
NETWORKS = {
    "vww": (
        ("vww_96_int8.tflite", "vww_96_float.tflite", "vww_96_int8_qdq.onnx", "vww_96_float.onnx"),
        7.5e6,
        0.03,
    ),
    "ic": (
        ("ic_resnet8_int8.tflite", "ic_resnet8_float32.tflite", "ic_resnet8_int8_qdq.onnx"),
        12.5e6,
        0.03,
    ),
    "kws": (
        ("kws_dscnn_int8.tflite", "kws_dscnn_float32.tflite", "kws_dscnn_int8_qdq.onnx"),
        2.7e6,
        0.03,
    ),
    "ad": (
        (
            "ad_autoencoder_int8.tflite",
            "ad_autoencoder_float32.tflite",
            "ad_autoencoder_int8_qdq.onnx",
        ),
        0.26e6,
        0.03,
    ),
}

_cache: dict[str, ModelAnalysis] = {}


def analysis(models: Path, name: str) -> ModelAnalysis:
    if name not in _cache:
        _cache[name] = analyze_model(models / name)
    return _cache[name]


def test_every_shared_model_is_listed_here(models: Path) -> None:
    on_disk = {p.name for p in models.iterdir() if p.suffix in {".onnx", ".tflite"}}
    assert on_disk == set(EXPECTED_PRECISION) | {EDGETPU_MODEL}


@pytest.mark.parametrize("name", sorted(EXPECTED_PRECISION))
def test_every_cpu_model_is_counted(models: Path, name: str) -> None:
    result = analysis(models, name)
    assert result.format == ("onnx" if name.endswith(".onnx") else "tflite")
    assert result.precision == EXPECTED_PRECISION[name]
    assert result.macs > 0 and result.params > 0 and result.weight_bytes > 0
    assert result.flops == 2 * result.macs
    assert result.macs == sum(layer.macs for layer in result.layers)
    assert result.params == sum(layer.params for layer in result.layers)
    assert all(layer.output_shape for layer in result.layers if layer.macs)


def test_edgetpu_model_is_refused_with_a_clear_message(models: Path) -> None:
    with pytest.raises(ModelError, match="compiled for the Edge TPU"):
        analyze_model(models / EDGETPU_MODEL)


def test_the_four_vww_files_agree_within_one_percent(models: Path) -> None:
    files, _, _ = NETWORKS["vww"]
    macs = [analysis(models, name).macs for name in files]
    assert max(macs) <= min(macs) * 1.01, dict(zip(files, macs, strict=True))


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_mlperf_tiny_published_macs(models: Path, network: str) -> None:
    files, published, tolerance = NETWORKS[network]
    for name in files:
        assert analysis(models, name).macs == pytest.approx(published, rel=tolerance), name


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_tflite_and_onnx_versions_of_a_network_agree(models: Path, network: str) -> None:
    files, _, _ = NETWORKS[network]
    results = {name: analysis(models, name) for name in files}
    macs = {r.macs for r in results.values()}
    assert max(macs) <= min(macs) * 1.01, {n: r.macs for n, r in results.items()}
    # Same weights, however stored: QDQ scales and zero points are never params.
    assert len({r.params for r in results.values()}) == 1, {
        n: r.params for n, r in results.items()
    }


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_qdq_onnx_weight_bytes_match_the_int8_tflite(models: Path, network: str) -> None:
    files, _, _ = NETWORKS[network]
    int8_tflite = next(n for n in files if n.endswith("int8.tflite"))
    qdq = next(n for n in files if n.endswith("_qdq.onnx"))
    assert analysis(models, qdq).weight_bytes == analysis(models, int8_tflite).weight_bytes


def test_float_weights_cost_four_bytes_each(models: Path) -> None:
    for name in ("vww_96_float.tflite", "vww_96_float.onnx", "ic_resnet8_float32.tflite"):
        result = analysis(models, name)
        assert result.weight_bytes == 4 * result.params, name


def test_retinaface_float_weights_behind_q_and_dq_count_once(models: Path) -> None:
    # Its weights are float32 initializers, each followed by QuantizeLinear + DequantizeLinear.
    result = analysis(models, "retinaface_mnet025_320_int8_qdq.onnx")
    assert result.weight_bytes == 4 * result.params
    assert 0.40e6 < result.params < 0.45e6  # RetinaFace-MobileNet0.25 has about 0.42 M params
    # Its FPN upsamples with Resize nodes sized by Shape->Gather->Cast->Concat: all shapes known.
    assert [layer.op_type for layer in result.layers].count("Resize") == 2
    assert all(layer.output_shape for layer in result.layers)


def test_mobilenet_v1_025_128_matches_the_paper(models: Path) -> None:
    result = analysis(models, "mobilenet_v1_0.25_128_quant.tflite")
    assert result.macs == pytest.approx(14.0e6, rel=0.05)
    assert result.params == pytest.approx(0.47e6, rel=0.05)  # the paper's 0.47 M parameters
