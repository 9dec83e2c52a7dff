"""Einsum, recurrent cells, attention and QOperator graphs, each counted by hand from the formulas
in :mod:`agent.analyze.onnx_ops`; ops without a formula are reported, never taken for zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.analyze import analyze_model
from agent.analyze.onnx_ops import einsum_macs
from agent.errors import ModelError
from tests.analyze.builders import const, image, save

pytestmark = pytest.mark.usefixtures("onnx_lib")


def test_einsum_of_two_operands_is_the_product_of_all_distinct_index_sizes(
    tmp_path: Path,
) -> None:
    from onnx import helper

    nodes = [helper.make_node("Einsum", ["x", "W"], ["y"], equation="bij,jk->bik")]
    result = analyze_model(save(tmp_path, nodes, [image("x", [1, 6, 8])], [const("W", (8, 5))]))

    assert result.macs == 1 * 6 * 8 * 5  # b x i x j x k
    assert result.params == 8 * 5  # the constant operand is a weight
    assert result.weight_bytes == 4 * 40
    assert result.precision == "float32"
    assert result.macs_coverage.counted == {"Einsum": 1}
    assert result.macs_coverage.complete


def test_a_one_operand_einsum_multiplies_nothing(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Einsum", ["x"], ["t"], equation="ij->ji"),
        helper.make_node("MatMul", ["t", "W"], ["y"]),
    ]
    result = analyze_model(save(tmp_path, nodes, [image("x", [6, 4])], [const("W", (6, 3))]))

    assert [(layer.op_type, layer.macs) for layer in result.layers] == [
        ("Einsum", 0), ("MatMul", 4 * 6 * 3)
    ]
    assert result.precision == "float32"  # the transpose does not make the model "mixed"
    assert result.macs_coverage.counted == {"Einsum": 1, "MatMul": 1}


def test_einsum_of_two_activations_counts_no_params(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [helper.make_node("Einsum", ["q", "k"], ["y"], equation="bhqd,bhkd->bhqk")]
    inputs = [image("q", [1, 2, 5, 4]), image("k", [1, 2, 7, 4])]
    result = analyze_model(save(tmp_path, nodes, inputs, []))

    assert result.macs == 1 * 2 * 5 * 7 * 4
    assert result.params == 0
    assert result.precision == "float32"


@pytest.mark.parametrize(
    ("equation", "shapes", "macs"),
    [
        ("...ij,jk->...ik", [(2, 3, 4, 5), (5, 6)], 2 * 3 * 4 * 5 * 6),  # ellipsis: batch dims
        ("ij,jk", [(4, 5), (5, 6)], 4 * 5 * 6),  # implicit output "ik"
        ("bij,bjk->bik", [(1, 4, 5), (3, 5, 6)], 3 * 4 * 5 * 6),  # a batch of 1 broadcasts
        # three operands, pairwise left to right: ij,jk -> ik (i j k), then ik,kl -> il (i k l)
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], 2 * 3 * 4 + 2 * 4 * 5),
        ("ij->ji", [(3, 4)], 0),  # one operand: a transpose, no multiplication
    ],
)
def test_einsum_formula(equation: str, shapes: list[tuple[int, ...]], macs: int) -> None:
    assert einsum_macs(equation, shapes)[0] == macs


@pytest.mark.parametrize(
    ("op", "gates", "direction", "layout"),
    [
        ("LSTM", 4, "bidirectional", 0),
        ("LSTM", 4, "forward", 1),
        ("GRU", 3, "forward", 0),
        ("GRU", 3, "reverse", 1),
        ("RNN", 1, "bidirectional", 0),
    ],
)
def test_recurrent_cells_count_input_and_recurrent_matmuls_per_step(
    tmp_path: Path, op: str, gates: int, direction: str, layout: int
) -> None:
    from onnx import helper

    steps, batch, inputs_n, hidden = 5, 1, 8, 16
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = [steps, batch, inputs_n] if layout == 0 else [batch, steps, inputs_n]
    node = helper.make_node(
        op, ["x", "W", "R", "B"], ["y"], hidden_size=hidden, direction=direction, layout=layout
    )
    inits = [
        const("W", (dirs, gates * hidden, inputs_n)),
        const("R", (dirs, gates * hidden, hidden)),
        const("B", (dirs, 2 * gates * hidden)),
    ]
    result = analyze_model(save(tmp_path, [node], [image("x", x_shape)], inits))

    # every step: W x (gates*hidden x inputs) and R h (gates*hidden x hidden), per direction
    assert result.macs == dirs * steps * batch * gates * hidden * (inputs_n + hidden)
    assert result.params == dirs * gates * hidden * (inputs_n + hidden + 2)
    assert result.precision == "float32"
    # an activation and a bias add per gate element per step
    assert result.other_ops == dirs * steps * batch * gates * hidden * 2
    assert result.macs_coverage.counted == {op: 1}
    assert result.macs_coverage.complete


def test_a_bidirectional_lstm_of_known_size(tmp_path: Path) -> None:
    """2 directions x 5 steps x 4 gates x 16 units x (8 inputs + 16 units) = 15,360."""
    from onnx import helper

    node = helper.make_node(
        "LSTM", ["x", "W", "R"], ["y"], hidden_size=16, direction="bidirectional"
    )
    inits = [const("W", (2, 64, 8)), const("R", (2, 64, 16))]
    result = analyze_model(save(tmp_path, [node], [image("x", [5, 1, 8])], inits))
    assert result.macs == 15_360
    assert result.params == 2 * 64 * 8 + 2 * 64 * 16


def test_com_microsoft_attention_then_its_output_projection(tmp_path: Path) -> None:
    # onnx shape inference does not know com.microsoft ops: onnxruntime reads the MatMul's shapes
    pytest.importorskip("onnxruntime")
    from onnx import helper

    seq, d_in, hidden, heads = 4, 8, 8, 2
    nodes = [
        helper.make_node(
            "Attention", ["x", "W", "B"], ["a"], domain="com.microsoft", num_heads=heads
        ),
        helper.make_node("MatMul", ["a", "Wo"], ["y"]),  # the output projection
    ]
    inits = [const("W", (d_in, 3 * hidden)), const("B", (3 * hidden,)), const("Wo", (8, 8))]
    result = analyze_model(save(tmp_path, nodes, [image("x", [1, seq, d_in])], inits))

    projections = seq * d_in * 3 * hidden  # Q, K and V
    scores = heads * seq * seq * (hidden // heads)  # Q K^T per head: S x L x head size
    context = heads * seq * seq * (hidden // heads)  # A V per head
    output = seq * hidden * 8
    assert [layer.macs for layer in result.layers] == [projections + scores + context, output]
    assert result.macs == 768 + 128 + 128 + 256
    assert result.params == d_in * 3 * hidden + 3 * hidden + 64
    assert result.macs_coverage.counted == {"com.microsoft::Attention": 1, "MatMul": 1}


@pytest.mark.parametrize("past", [0, 3])
def test_multi_head_attention_counts_scores_and_context_over_past_keys(
    tmp_path: Path, past: int
) -> None:
    from onnx import helper

    inputs = [image("q", [1, 4, 8]), image("k", [1, 6, 8]), image("v", [1, 6, 12])]
    names = ["q", "k", "v"]
    if past:
        inputs += [image("pk", [1, 2, past, 4]), image("pv", [1, 2, past, 6])]
        names += ["", "", "", "pk", "pv"]
    node = helper.make_node(
        "MultiHeadAttention", names, ["y"], domain="com.microsoft", num_heads=2
    )
    result = analyze_model(save(tmp_path, [node], inputs, []))

    keys = 6 + past
    assert result.macs == 4 * keys * 8 + 4 * keys * 12  # Q K^T + A V, heads split the width
    assert result.params == 0


def test_onnx_attention_with_grouped_query_heads(tmp_path: Path) -> None:
    from onnx import helper

    node = helper.make_node(
        "Attention", ["q", "k", "v"], ["y"], q_num_heads=2, kv_num_heads=1
    )
    inputs = [image("q", [1, 4, 8]), image("k", [1, 6, 4]), image("v", [1, 6, 6])]
    result = analyze_model(save(tmp_path, [node], inputs, [], opset=23))

    # 2 query heads of 4, sharing one key/value head (key 4 wide, value 6 wide), 6 keys each
    rows = 2 * 4  # query heads x query tokens
    assert result.macs == rows * 6 * 4 + rows * 6 * 6
    assert result.macs_coverage.counted == {"Attention": 1}


def _float_graph(tmp_path: Path, head: str) -> Path:
    from onnx import helper

    rng = np.random.default_rng(7)

    def weight(name: str, *shape: int) -> Any:
        from onnx import numpy_helper

        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
    ]
    if head == "gemm":
        nodes.append(helper.make_node("Gemm", ["f", "W2", "B2"], ["y"]))
    else:
        nodes += [
            helper.make_node("MatMul", ["f", "W2"], ["m"]),
            helper.make_node("Add", ["m", "B2"], ["y"]),
        ]
    inits = [weight("W", 4, 3, 3, 3), weight("B", 4), weight("W2", 256, 10), weight("B2", 10)]
    return save(tmp_path, nodes, [image("x", [1, 3, 8, 8])], inits, opset=13, name="float.onnx")


@pytest.mark.parametrize("head", ["matmul", "gemm"])
def test_qoperator_graph_counts_what_its_float_graph_counts(tmp_path: Path, head: str) -> None:
    ort_quant = pytest.importorskip("onnxruntime.quantization")
    float_path = _float_graph(tmp_path, head)

    class Calibration(ort_quant.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            rng = np.random.default_rng(11)
            self._batches = iter(
                [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(2)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    int8_path = tmp_path / "qop.onnx"
    ort_quant.quantize_static(
        str(float_path),
        str(int8_path),
        Calibration(),
        quant_format=ort_quant.QuantFormat.QOperator,
        activation_type=ort_quant.QuantType.QUInt8,
        weight_type=ort_quant.QuantType.QInt8,
    )
    float_result, int8_result = analyze_model(float_path), analyze_model(int8_path)

    quantized_ops = set(int8_result.macs_coverage.counted)
    expected = {"QLinearConv", "com.microsoft::QGemm" if head == "gemm" else "QLinearMatMul"}
    assert quantized_ops == expected  # the QOperator form, not QDQ
    assert int8_result.macs == float_result.macs == 4 * 64 * 27 + 256 * 10
    assert int8_result.params == float_result.params == (108 + 4) + (2560 + 10)
    assert int8_result.precision == "int8"  # int8 weights on uint8 activations
    assert int8_result.macs_coverage.complete


def test_qlinear_nodes_built_by_hand_count_like_conv_and_matmul(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    scalar, zero = const("s", ()), const("z", (), np.uint8)
    nodes = [
        helper.make_node("QLinearConv", ["xq", "s", "z", "Wq", "s", "wz", "s", "z", "Bq"],
                         ["cq"], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["cq"], ["fq"]),
        helper.make_node("QLinearMatMul", ["fq", "s", "z", "W2q", "s", "wz", "s", "z"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "s", "z"], ["y"]),
    ]
    inits = [
        scalar, zero, const("wz", (), np.int8), const("Wq", (4, 3, 3, 3), np.int8),
        const("Bq", (4,), np.int32), const("W2q", (256, 10), np.int8),
    ]
    x = helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, 3, 8, 8])
    result = analyze_model(save(tmp_path, nodes, [x], inits))

    assert result.macs == 4 * 64 * 27 + 256 * 10
    assert result.params == 108 + 4 + 2560  # scales and zero points are never params
    assert result.weight_bytes == 108 + 4 * 4 + 2560  # int8 weights, int32 bias
    assert result.precision == "int8"


def test_ops_without_a_formula_are_listed_as_uncounted(tmp_path: Path) -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Mystery", ["r"], ["m"], domain="com.example"),
        helper.make_node("Mystery", ["m"], ["n"], domain="com.example"),
        helper.make_node("Det", ["n"], ["y"]),
    ]
    inputs, inits = [image("x", [1, 3, 8, 8])], [const("W", (4, 3, 3, 3))]
    result = analyze_model(save(tmp_path, nodes, inputs, inits, domains=("com.example",)))

    coverage = result.macs_coverage
    assert coverage.counted == {"Conv": 1}
    assert coverage.uncounted == {"Det": 1, "com.example::Mystery": 2}
    assert coverage.no_macs == {"Relu": 1}
    assert not coverage.complete
    assert result.macs == 4 * 36 * 27  # what is counted stays right; it is a lower bound


def test_a_dynamic_sequence_length_is_refused_not_pinned_to_one_step(tmp_path: Path) -> None:
    from onnx import helper

    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=16)
    inits = [const("W", (1, 64, 8)), const("R", (1, 64, 16))]
    with pytest.raises(ModelError, match="sequence length of LSTM input 'x' is dynamic"):
        analyze_model(save(tmp_path, [node], [image("x", ["T", 1, 8])], inits))
    # with layout 1 the first dimension is the batch, which counts as 1 as everywhere else
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=16, layout=1)
    result = analyze_model(save(tmp_path, [node], [image("x", ["N", 5, 8])], inits))
    assert result.macs == 5 * 4 * 16 * (8 + 16)


def test_com_microsoft_transpose_matmul_honours_trans_a(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")  # its output shape comes from onnxruntime
    from onnx import helper

    node = helper.make_node(
        "TransposeMatMul", ["a", "W"], ["y"], domain="com.microsoft", transA=1
    )
    result = analyze_model(save(tmp_path, [node], [image("a", [6, 4])], [const("W", (6, 3))]))

    assert result.macs == (4 * 3) * 6  # A^T is 4 x 6: output elements x K = 6
    assert result.macs_coverage.counted == {"com.microsoft::TransposeMatMul": 1}
