"""A TFLite flatbuffer written in the test with the LiteRT schema, counted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.analyze import analyze_model, detect_format
from agent.errors import ModelError
from tests.analyze.builders import FlatModel, weights

pytestmark = pytest.mark.usefixtures("litert_lib")


def test_conv_depthwise_fully_connected_exact_counts(tmp_path: Path) -> None:
    fm = FlatModel()
    ops, s = fm.s.BuiltinOperator, fm.s
    relu = s.Conv2DOptionsT()
    relu.fusedActivationFunction = s.ActivationFunctionType.RELU
    x = fm.tensor("x", (1, 8, 8, 3))
    conv = fm.tensor("conv", (1, 8, 8, 4))
    fm.op(
        ops.CONV_2D,
        [x, fm.tensor("w", (4, 3, 3, 3), weights(4, 3, 3, 3, dtype=np.int8)),
         fm.tensor("b", (4,), weights(4))],
        [conv],
        (s.BuiltinOptions.Conv2DOptions, relu),
    )
    dw = fm.tensor("dw", (1, 8, 8, 4))
    fm.op(ops.DEPTHWISE_CONV_2D, [conv, fm.tensor("wd", (1, 3, 3, 4), weights(1, 3, 3, 4)), -1],
          [dw])
    flat = fm.tensor("flat", (1, 256))
    fm.op(ops.RESHAPE, [dw], [flat])
    out = fm.tensor("y", (1, 10))
    fm.op(ops.FULLY_CONNECTED,
          [flat, fm.tensor("wf", (10, 256), weights(10, 256)), fm.tensor("bf", (10,), weights(10))],
          [out])
    result = analyze_model(fm.save(tmp_path / "hand.tflite"))

    conv_macs = (8 * 8 * 4) * (3 * 3 * 3)
    depthwise_macs = (8 * 8 * 4) * (3 * 3)
    fc_macs = 10 * 256
    assert [(layer.op_type, layer.macs) for layer in result.layers] == [
        ("CONV_2D", conv_macs),
        ("DEPTHWISE_CONV_2D", depthwise_macs),
        ("FULLY_CONNECTED", fc_macs),
    ]
    assert result.macs == 6912 + 2304 + 2560
    assert result.params == (108 + 4) + 36 + (2560 + 10)
    assert result.weight_bytes == 108 * 1 + (4 + 36 + 2560 + 10) * 4  # conv weights are int8
    assert result.other_ops == 256 * 2 + 10  # conv bias + fused relu, fc bias
    assert result.precision == "hybrid"  # int8 conv weights on float activations
    assert result.layers[0].output_shape == (1, 8, 8, 4)


def test_edgetpu_custom_op_is_refused(tmp_path: Path) -> None:
    fm = FlatModel()
    x, y = fm.tensor("x", (1, 4)), fm.tensor("y", (1, 4))
    fm.op(fm.s.BuiltinOperator.CUSTOM, [x], [y], custom="edgetpu-custom-op")
    with pytest.raises(ModelError, match="Edge TPU"):
        analyze_model(fm.save(tmp_path / "tpu.tflite"))


def test_magic_bytes_win_over_the_suffix(tmp_path: Path) -> None:
    fm = FlatModel()
    x, y = fm.tensor("x", (1, 4)), fm.tensor("y", (1, 4))
    fm.op(fm.s.BuiltinOperator.RELU, [x], [y])
    path = fm.save(tmp_path / "misnamed.onnx")
    assert detect_format(path) == "tflite"
    result = analyze_model(path)
    assert (result.macs, result.other_ops, result.params) == (0, 4, 0)


def test_truncated_flatbuffer_is_a_model_error(tmp_path: Path, shared_models: Path) -> None:
    data = (shared_models / "vww_96_int8.tflite").read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match=r"cut\.tflite"):
        analyze_model(path)
