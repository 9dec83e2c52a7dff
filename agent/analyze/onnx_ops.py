"""Which ONNX operators multiply-accumulate, and how many MACs each one does.

Every node falls in one group of :class:`~shared.schema.MacsCoverage`: ``counted`` (an op below),
``no_macs`` (element-wise, logic, memory and layout ops, which carry no MACs by convention) or
``uncounted`` (anything else: a custom domain, a loop, an FFT, a fused kernel without a formula
here). An op type is only ever ``no_macs`` because it is named in a list below, so an op this
module has never heard of is reported, never silently taken for zero.

Formulas, for one sample (the batch pinned to 1), per node:

* ``Conv``, ``ConvInteger``, ``QLinearConv``, ``DeformConv``, ``com.microsoft`` ``FusedConv``,
  ``NhwcConv``, ``NhwcFusedConv``, ``QLinearConv``: output elements x (input channels per group
  x kernel area). ``ConvTranspose``: input elements x (output channels per group x kernel
  area). ``Gemm``, ``MatMul``, ``MatMulInteger``, ``QLinearMatMul`` and ``com.microsoft``
  ``QGemm``, ``FusedGemm``, ``FusedMatMul``, ``TransposeMatMul``, ``MatMulInteger16``,
  ``DynamicQuantizeMatMul``, ``MatMulIntegerToFloat``: output elements x the reduced dimension
  K (``transA`` honoured).
  The QOperator forms (``QLinear*``, ``*Integer``, ``QGemm``) therefore count exactly what the
  float op they replace counts.
* ``Einsum``: for two operands, the product of the sizes of all distinct indices (``ij,jk->ik``:
  I x J x K; an ellipsis stands for its broadcast dimensions). With more operands the terms are
  contracted pairwise from left to right, as ONNX Runtime does, each step costing the product of
  the distinct index sizes of the two tensors it joins. One operand (a transpose, trace or sum)
  does no multiplication: 0 MACs, its input elements are other ops.
* ``LSTM`` (4 gates), ``GRU`` (3 gates), ``RNN`` (1 gate) and ``com.microsoft``
  ``DynamicQuantizeLSTM``: every time step multiplies the input by W and the previous hidden
  state by R, so MACs = directions x steps x batch x gates x hidden x (input size + hidden);
  ``bidirectional`` doubles it (directions = 2). Steps x batch is read from X whatever its
  ``layout``; a padded sequence counts its full length (``sequence_lens`` is not consulted).
  A graph input X of layout 0 whose first dimension is dynamic is refused: that dimension is
  time, and pinning it to 1 like a batch would count one step of an unknown number.
  Peepholes, biases, gate activations and the cell update are element-wise: other ops are one
  activation per gate element per step, plus one bias add per gate element when B is given.
* Attention. Heads split the hidden size, they do not multiply it: N heads x (S x L x hidden/N)
  = S x L x hidden, for a query of S tokens attending to L keys (L = S, plus any past length).

  - ``com.microsoft`` ``Attention`` and ``QAttention`` project the input inside the op:
    QKV projections (batch x S x input hidden x (q + k + v hidden)) + Q K^T (batch x S x L x q
    hidden) + A V (batch x S x L x v hidden). Their output projection is a separate MatMul in
    the graph and is counted there.
  - ``com.microsoft`` ``MultiHeadAttention`` and ONNX ``Attention`` (opset 23) receive Q, K and
    V already projected (those projections, and the output projection, are MatMul nodes of their
    own): Q K^T + A V only. Packed QKV / KV inputs, BNSH key and value, past keys and grouped
    query heads (ONNX ``kv_num_heads``) are read from the shapes.
  - Other ops: one softmax op per attention score (batch x heads x S x L) and one bias add per
    projected element when a bias is given.

Parameters: the weight and bias inputs of the matrix ops, W, R, B and P of the recurrent cells,
the weight and bias of ``com.microsoft`` ``Attention``, the bias of ``MultiHeadAttention`` and
every constant operand of an ``Einsum``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.analyze._result import CoverageGroup, numel

Shape = tuple[int, ...]
Shapes = Sequence[Shape | None]  # per input index; None for an absent (empty-named) input
Attrs = dict[str, Any]

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class MacSpec:
    """A conv, transposed conv, gemm or matmul: one activation, one weight, maybe a bias."""

    kind: str  # "conv", "convtranspose", "gemm" or "matmul"
    x: int  # index of the activation input (A for gemm/matmul)
    w: int  # index of the weight input (B for gemm/matmul)
    bias: int | None  # index of the bias input, if the op has one


MAC_OPS: dict[tuple[str, str], MacSpec] = {
    ("", "Conv"): MacSpec("conv", 0, 1, 2),
    ("", "ConvTranspose"): MacSpec("convtranspose", 0, 1, 2),
    ("", "DeformConv"): MacSpec("conv", 0, 1, 3),
    ("", "Gemm"): MacSpec("gemm", 0, 1, 2),
    ("", "MatMul"): MacSpec("matmul", 0, 1, None),
    ("", "QLinearConv"): MacSpec("conv", 0, 3, 8),
    ("", "QLinearMatMul"): MacSpec("matmul", 0, 3, None),
    ("", "ConvInteger"): MacSpec("conv", 0, 1, None),
    ("", "MatMulInteger"): MacSpec("matmul", 0, 1, None),
    (MS_DOMAIN, "FusedConv"): MacSpec("conv", 0, 1, 2),
    (MS_DOMAIN, "NhwcConv"): MacSpec("conv", 0, 1, 2),  # output elements are layout-blind
    (MS_DOMAIN, "NhwcFusedConv"): MacSpec("conv", 0, 1, 2),
    (MS_DOMAIN, "QLinearConv"): MacSpec("conv", 0, 3, 8),
    (MS_DOMAIN, "FusedGemm"): MacSpec("gemm", 0, 1, 2),
    (MS_DOMAIN, "FusedMatMul"): MacSpec("matmul", 0, 1, None),
    (MS_DOMAIN, "TransposeMatMul"): MacSpec("matmul", 0, 1, None),
    (MS_DOMAIN, "MatMulInteger16"): MacSpec("matmul", 0, 1, None),
    (MS_DOMAIN, "QGemm"): MacSpec("gemm", 0, 3, 6),
    (MS_DOMAIN, "DynamicQuantizeMatMul"): MacSpec("matmul", 0, 1, 4),
    (MS_DOMAIN, "MatMulIntegerToFloat"): MacSpec("matmul", 0, 1, 6),
}


@dataclass(frozen=True)
class FormulaOp:
    """An op whose MACs come from a formula over several input shapes and its attributes."""

    needs: tuple[int, ...] | None  # inputs whose shapes the formula reads (None: all of them)
    params: tuple[int, ...] | None  # constant inputs that are params (None: every input)
    x: int  # the activation input that labels precision
    w: int  # the weight input that labels precision (an Einsum's first constant wins)
    count: Callable[[Attrs, Shapes], tuple[int, int]]  # -> (macs, other_ops)
    time_major_x: bool = False  # input x is [time, batch, ...] unless the node's layout is 1


def einsum_macs(equation: str, shapes: Sequence[Shape]) -> tuple[int, int]:
    """MACs and other ops of ``Einsum(equation)`` over operands of ``shapes`` (see above)."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"Einsum {equation!r} names {len(terms)} operands, the node has {len(shapes)}")
    broadcast_rank = max(
        (len(shape) - len(term.replace("...", "")) for term, shape in zip(terms, shapes, strict=True)
         if "..." in term),
        default=0,
    )
    broadcast = [f"...{i}" for i in range(broadcast_rank)]
    sizes: dict[str, int] = {}
    operands: list[set[str]] = []
    for term, shape in zip(terms, shapes, strict=True):
        indices = _einsum_indices(term, len(shape), broadcast)
        if len(indices) != len(shape):
            raise ValueError(f"Einsum term {term!r} does not fit an operand of rank {len(shape)}")
        for index, size in zip(indices, shape, strict=True):
            sizes[index] = max(sizes.get(index, 1), int(size))  # a 1 broadcasts
        operands.append(set(indices))
    if arrow:
        output = set(_einsum_indices(rhs, broadcast_rank + len(rhs.replace("...", "")), broadcast))
    else:  # implicit output: the letters used exactly once, plus the broadcast dimensions
        letters = [c for term in terms for c in term.replace("...", "")]
        output = {c for c in letters if letters.count(c) == 1} | set(broadcast)
    if len(operands) == 1:
        return 0, numel(shapes[0])
    macs = 0
    live = operands[0]
    for position in range(1, len(operands)):
        joined = live | operands[position]
        macs += numel(sizes[index] for index in joined)
        needed_later = output.union(*operands[position + 1 :])
        live = joined & needed_later
    return macs, 0


def _einsum_indices(term: str, rank: int, broadcast: list[str]) -> list[str]:
    if "..." not in term:
        return list(term)
    before, after = term.split("...")
    hidden = max(rank - len(before) - len(after), 0)  # the dimensions "..." stands for
    return [*before, *broadcast[len(broadcast) - hidden :][:hidden], *after]


def _einsum(attrs: Attrs, shapes: Shapes) -> tuple[int, int]:
    equation = attrs.get("equation")
    if not isinstance(equation, str):
        raise ValueError("Einsum without an equation attribute")
    return einsum_macs(equation, [shape for shape in shapes if shape is not None])


def _recurrent(gates: int, transposed: bool) -> Callable[[Attrs, Shapes], tuple[int, int]]:
    """LSTM/GRU/RNN: W [directions, gates x hidden, input], R [directions, gates x hidden,
    hidden]; ``transposed`` (DynamicQuantizeLSTM): W [directions, input, gates x hidden]."""

    def count(attrs: Attrs, shapes: Shapes) -> tuple[int, int]:
        x, w, r = _required(shapes, 0, 1, 2)
        directions = w[0]
        input_size = w[1] if transposed else w[2]
        hidden = r[1] if transposed else r[2]
        if numel(w) != directions * gates * hidden * input_size or x[-1] != input_size:
            raise ValueError(
                f"recurrent weights {list(w)}/{list(r)} do not fit {gates} gates of {hidden} "
                f"units over inputs {list(x)}"
            )
        steps = numel(x) // input_size  # time steps x batch, in either layout
        macs = directions * steps * gates * hidden * (input_size + hidden)
        has_bias = len(shapes) > 3 and shapes[3] is not None
        return macs, directions * steps * gates * hidden * (1 + int(has_bias))

    return count


def _ms_attention(past_index: int) -> Callable[[Attrs, Shapes], tuple[int, int]]:
    """``com.microsoft`` Attention/QAttention: input [B, S, D], weights [D, q + k + v hidden]."""

    def count(attrs: Attrs, shapes: Shapes) -> tuple[int, int]:
        x, w = _required(shapes, 0, 1)
        d_in = x[-1]
        rows = numel(x) // d_in  # batch x S
        sizes = [int(s) for s in attrs.get("qkv_hidden_sizes") or []] or [w[-1] // 3] * 3
        q_hidden, k_hidden, v_hidden = sizes
        heads = int(attrs.get("num_heads", 1))
        past = _optional(shapes, past_index)  # [2, B, N, past length, head size]
        kv_len = x[-2] + (past[3] if past is not None and len(past) == 5 else 0)
        projections = rows * d_in * (q_hidden + k_hidden + v_hidden)
        scores = rows * kv_len * q_hidden
        context = rows * kv_len * v_hidden
        bias = rows * (q_hidden + k_hidden + v_hidden) if _optional(shapes, 2) is not None else 0
        return projections + scores + context, rows * heads * kv_len + bias

    return count


def _multi_head_attention(attrs: Attrs, shapes: Shapes) -> tuple[int, int]:
    """``com.microsoft`` MultiHeadAttention: query [B, S, D] or packed QKV [B, S, N, 3, H];
    key [B, L, D], BNSH [B, N, L, H] or packed KV [B, L, N, 2, H]; past_key [B, N, P, H]."""
    query = _required(shapes, 0)[0]
    key, value = _optional(shapes, 1), _optional(shapes, 2)
    batch, seq = query[0], query[1]
    new_kv = 0
    if len(query) == 5:
        q_hidden = v_hidden = query[2] * query[4]
        kv_len = new_kv = seq
    elif key is None:
        raise ValueError("MultiHeadAttention without a key needs a packed QKV query")
    else:
        q_hidden = query[2]
        if len(key) == 5:
            kv_len = new_kv = key[1]
            v_hidden = key[2] * key[4]
        else:
            if value is None:
                raise ValueError("MultiHeadAttention with a separate key needs a value")
            kv_len = key[2] if len(key) == 4 else key[1]
            v_hidden = value[1] * value[3] if len(value) == 4 else value[2]
            past_key = _optional(shapes, 6)
            if len(key) == 3:
                new_kv = kv_len
                if past_key is not None and len(past_key) == 4:
                    kv_len += past_key[2]
    heads = int(attrs.get("num_heads", 1))
    rows = batch * seq
    macs = rows * kv_len * (q_hidden + v_hidden)
    bias = rows * q_hidden + batch * new_kv * (q_hidden + v_hidden) if _optional(shapes, 3) is not None else 0
    return macs, rows * heads * kv_len + bias


def _onnx_attention(attrs: Attrs, shapes: Shapes) -> tuple[int, int]:
    """ONNX Attention (opset 23): Q [B, S, q hidden] or [B, Nq, S, H]; K, V 3-D or 4-D (BNSH)."""
    query, key, value = _required(shapes, 0, 1, 2)
    if len(query) == 4:
        batch, q_heads, seq, head = query
    else:
        batch, seq, q_hidden = query
        q_heads = int(attrs["q_num_heads"])
        head = q_hidden // q_heads
    kv_len = key[2] if len(key) == 4 else key[1]
    v_head = value[3] if len(value) == 4 else value[2] // int(attrs["kv_num_heads"])
    past_key = _optional(shapes, 4)
    if past_key is not None and len(past_key) == 4:
        kv_len += past_key[2]
    rows = batch * q_heads * seq
    return rows * kv_len * (head + v_head), rows * kv_len


def _required(shapes: Shapes, *indices: int) -> list[Shape]:
    found = [_optional(shapes, i) for i in indices]
    missing = [i for i, shape in zip(indices, found, strict=True) if shape is None]
    if missing:
        raise ValueError(f"required input(s) {missing} are missing")
    return [shape for shape in found if shape is not None]


def _optional(shapes: Shapes, index: int) -> Shape | None:
    return shapes[index] if index < len(shapes) else None


FORMULA_OPS: dict[tuple[str, str], FormulaOp] = {
    ("", "Einsum"): FormulaOp(None, None, 0, 1, _einsum),
    ("", "LSTM"): FormulaOp(
        (0, 1, 2), (1, 2, 3, 7), 0, 1, _recurrent(4, transposed=False), time_major_x=True
    ),
    ("", "GRU"): FormulaOp(
        (0, 1, 2), (1, 2, 3), 0, 1, _recurrent(3, transposed=False), time_major_x=True
    ),
    ("", "RNN"): FormulaOp(
        (0, 1, 2), (1, 2, 3), 0, 1, _recurrent(1, transposed=False), time_major_x=True
    ),
    ("", "Attention"): FormulaOp((0, 1, 2, 4), (), 0, 1, _onnx_attention),
    (MS_DOMAIN, "DynamicQuantizeLSTM"): FormulaOp(
        (0, 1, 2), (1, 2, 3, 7), 0, 1, _recurrent(4, transposed=True), time_major_x=True
    ),
    (MS_DOMAIN, "Attention"): FormulaOp((0, 1, 4), (1, 2), 0, 1, _ms_attention(past_index=4)),
    (MS_DOMAIN, "QAttention"): FormulaOp((0, 1, 8), (1, 2), 0, 1, _ms_attention(past_index=8)),
    (MS_DOMAIN, "MultiHeadAttention"): FormulaOp(
        (0, 1, 2, 6), (3,), 0, 1, _multi_head_attention
    ),
}

def _op_names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Default-domain ops that may multiply-accumulate but have no formula here: reported as uncounted
# (as is any op named nowhere). The control-flow ops' sub-graphs are not walked.
KNOWN_UNCOUNTED_OPS = _op_names(
    """
    AffineGrid CausalConvWithState DFT Det If LinearAttention Loop STFT Scan SequenceMap
    """
)

# Default-domain ops that carry no MACs by convention: element-wise math and activations,
# pooling, normalization, softmax, resize, reductions, logic, (de)quantization, memory, layout,
# sequences, strings and random numbers.
NO_MAC_OPS = _op_names(
    """
    Abs Acos Acosh Add Affine And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
    BatchNormalization Bernoulli BitCast BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor
    BlackmanWindow Cast CastLike Ceil Celu CenterCropPad Clip Col2Im Compress Concat
    ConcatFromSequence Constant ConstantOfShape Cos Cosh Crop CumProd CumSum DepthToSpace
    DequantizeLinear Div Dropout DynamicQuantizeLinear DynamicSlice Elu Equal Erf Exp Expand
    EyeLike Flatten Floor Gather GatherElements GatherND Gelu GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HammingWindow HannWindow
    HardSigmoid HardSwish Hardmax Identity ImageDecoder ImageScaler InstanceNormalization IsInf
    IsNaN LRN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LpPool
    Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization MelWeightMatrix Min Mish Mod
    Mul Multinomial Neg NegativeLogLikelihoodLoss NonMaxSuppression NonZero Not OneHot Optional
    OptionalGetElement OptionalHasElement Or PRelu Pad ParametricSoftplus Pow QuantizeLinear
    RMSNormalization RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
    Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
    ReduceProd ReduceSum ReduceSumSquare RegexFullMatch Relu Reshape Resize ReverseSequence
    RoiAlign RotaryEmbedding Round Scale ScaledTanh Scatter ScatterElements ScatterND Selu
    SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength Shape
    Shrink Sigmoid Sign SimplifiedLayerNormalization Sin Sinh Size Slice Softmax
    SoftmaxCrossEntropyLoss Softplus Softsign SpaceToDepth Split SplitToSequence Sqrt Squeeze
    StringConcat StringNormalizer StringSplit Sub Sum SwiGLU Swish Tan Tanh TensorScatter
    TfIdfVectorizer ThresholdedRelu Tile TopK Transpose Trilu Unique Unsqueeze Upsample Where Xor
    """
)

# ONNX Runtime's com.microsoft ops that carry no MACs by convention: the element-wise QOperator
# ops of quantized graphs, fused activations and normalizations, and layout helpers.
MS_NO_MAC_OPS = _op_names(
    """
    BiasAdd BiasDropout BiasGelu BiasSoftmax BiasSplitGelu BitmaskBiasDropout BitmaskDropout
    ComplexMul ComplexMulConj CropAndResize DequantizeLinear DequantizeWithOrder ExpandDims
    FastGelu GatherBlockQuantized GatherND Gelu GemmaRotaryEmbedding GridSample GroupNorm
    IsAllFinite MaxpoolWithMask MulInteger MurmurHash3 NhwcMaxPool Pad QLinearAdd
    QLinearAveragePool QLinearConcat QLinearGlobalAveragePool QLinearLeakyRelu QLinearMul
    QLinearReduceMean QLinearSigmoid QLinearSoftmax QLinearWhere QOrderedGelu
    QOrderedLayerNormalization QuantizeLinear QuantizeWithOrder QuickGelu Range RemovePadding
    RestorePadding RotaryEmbedding ScaledSiLU SkipGroupNorm SkipLayerNormalization
    SkipSimplifiedLayerNormalization SwiGLU Trilu Unique
    """
)


def coverage_group(domain: str, op_type: str) -> CoverageGroup:
    """Which group of the coverage a node falls in (``domain`` "" is the default domain)."""
    key = (domain, op_type)
    if key in MAC_OPS or key in FORMULA_OPS:
        return "counted"
    if (domain == "" and op_type in NO_MAC_OPS) or (domain == MS_DOMAIN and op_type in MS_NO_MAC_OPS):
        return "no_macs"
    return "uncounted"


def coverage_name(domain: str, op_type: str) -> str:
    """The op type as the coverage lists it: ``Conv``, ``com.microsoft::Attention``."""
    return op_type if domain == "" else f"{domain}::{op_type}"
