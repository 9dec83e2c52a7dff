"""Hand-built ONNX graphs whose MACs, params and weight bytes are computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.analyze import analyze_model
from agent.errors import ModelError
from tests.analyze.builders import const, image, np_const, save

pytestmark = pytest.mark.usefixtures("onnx_lib")


def test_conv_then_gemm_exact_counts_with_a_dynamic_batch(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "W2", "B2"], ["y"], transB=1),
    ]
    inits = [
        const("W", (16, 3, 3, 3)),
        const("B", (16,)),
        const("W2", (10, 16 * 32 * 32)),
        const("B2", (10,)),
    ]
    result = analyze_model(save(tmp_path, nodes, [image("x", ["N", 3, 32, 32])], inits))

    conv_macs = (16 * 32 * 32) * (3 * 3 * 3)  # output elements x (Cin x kH x kW)
    gemm_macs = 10 * (16 * 32 * 32)  # M x N x K with M = 1 (batch pinned to 1)
    assert result.macs == conv_macs + gemm_macs == 606_208
    assert result.flops == 2 * result.macs
    assert result.params == (16 * 27 + 16) + (10 * 16384 + 10)
    assert result.weight_bytes == 4 * result.params
    assert result.other_ops == 16384 + 16384 + 10  # conv bias, relu, gemm bias
    assert result.precision == "float32"
    assert [(layer.op_type, layer.macs) for layer in result.layers] == [
        ("Conv", conv_macs),
        ("Relu", 0),
        ("Gemm", gemm_macs),
    ]
    assert result.layers[0].output_shape == (1, 16, 32, 32)


def test_depthwise_then_pointwise_conv(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [
        helper.make_node(
            "Conv", ["x", "Wd"], ["d"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Conv", ["d", "Wp"], ["y"]),
    ]
    inits = [const("Wd", (8, 1, 3, 3)), const("Wp", (16, 8, 1, 1))]
    result = analyze_model(save(tmp_path, nodes, [image("x", [1, 8, 16, 16])], inits))

    depthwise = (8 * 8 * 8) * 9  # each output element: one 3x3 window of its own channel
    pointwise = (16 * 8 * 8) * 8
    assert [layer.macs for layer in result.layers] == [depthwise, pointwise]
    assert result.macs == 4608 + 8192
    assert result.params == 8 * 9 + 16 * 8
    assert result.other_ops == 0  # no bias, no activation


def test_conv_transpose_and_batched_matmul(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [
        helper.make_node("ConvTranspose", ["x", "W"], ["t"], strides=[2, 2]),  # -> 1x2x17x17
        helper.make_node("MatMul", ["a", "b"], ["y"]),
    ]
    inputs = [image("x", [1, 4, 8, 8]), image("a", [1, 4, 8, 16]), image("b", [1, 4, 16, 32])]
    result = analyze_model(save(tmp_path, nodes, inputs, [const("W", (4, 2, 3, 3))]))

    transposed = (4 * 8 * 8) * (2 * 3 * 3)  # input elements x (Cout/groups x kH x kW)
    batched = (4 * 8 * 32) * 16  # output elements x K
    assert [layer.macs for layer in result.layers] == [transposed, batched]
    assert result.params == 4 * 2 * 9  # two activations multiplied: no params


@pytest.mark.parametrize("stored", ["int8", "float32"])
def test_qdq_weights_count_once_and_scales_never(tmp_path: Path, stored: str) -> None:
    from onnx import helper

    scale = const("w_scale", (16,))
    zero = const("w_zero", (16,), np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["Wq", "w_scale", "w_zero"], ["Wd"], axis=0),
        helper.make_node("Conv", ["xd", "Wd"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [const("x_scale", ()), const("x_zero", (), np.int8), scale, zero]
    if stored == "int8":
        inits.append(const("Wq", (16, 3, 3, 3), np.int8))
    else:  # float32 initializer -> QuantizeLinear -> DequantizeLinear, as RetinaFace stores them
        inits.append(const("Wf", (16, 3, 3, 3)))
        nodes.insert(
            2, helper.make_node("QuantizeLinear", ["Wf", "w_scale", "w_zero"], ["Wq"], axis=0)
        )
    result = analyze_model(save(tmp_path, nodes, [image("x", [1, 3, 8, 8])], inits))

    assert result.macs == (16 * 8 * 8) * 27
    assert result.params == 16 * 27
    assert result.weight_bytes == 16 * 27 * (1 if stored == "int8" else 4)
    assert result.precision == "int8"
    assert [layer.op_type for layer in result.layers] == ["Conv"]  # Q/DQ are not layers


def test_shapes_inference_cannot_see_are_read_from_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from onnx import helper

    nodes = [  # Abs is not folded, so the Reshape target stays unknown to graph inference
        helper.make_node("Abs", ["target"], ["shape"]),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Conv", ["r", "W"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [const("W", (4, 3, 3, 3)), np_const("target", np.array([1, 3, 8, 8], np.int64))]
    result = analyze_model(save(tmp_path, nodes, [image("x", ["N", 192])], inits))
    conv = next(layer for layer in result.layers if layer.op_type == "Conv")
    assert conv.output_shape == (1, 4, 8, 8)
    assert conv.macs == 4 * 8 * 8 * 27


def test_dynamic_spatial_dims_are_refused(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [helper.make_node("Conv", ["x", "W"], ["y"])]
    path = save(tmp_path, nodes, [image("x", ["N", 3, "H", "W"])], [const("W", (4, 3, 3, 3))])
    with pytest.raises(ModelError, match="dynamic beyond the batch"):
        analyze_model(path)


def test_a_graph_without_nodes_is_not_a_model(tmp_path: Path) -> None:
    path = save(tmp_path, [], [image("y", [1])], [])
    with pytest.raises(ModelError, match="no graph nodes"):
        analyze_model(path)
