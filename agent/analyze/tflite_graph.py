"""Count MACs, other ops and params of a TFLite flatbuffer (the convention is in
:mod:`agent.analyze`).

The file is read with the flatbuffer schema that ai-edge-litert ships
(``ai_edge_litert.schema_py_generated``); no interpreter is created. Shapes are the tensor shapes
stored in the file; a ``-1`` (dynamic batch) counts as 1. Only the main subgraph is counted.

MACs per operator, for one sample:

* ``CONV_2D`` (weights [Cout, kH, kW, Cin/groups]): output elements x kH x kW x Cin/groups;
  ``DEPTHWISE_CONV_2D`` ([1, kH, kW, Cout]): output elements x kH x kW; ``CONV_3D``
  ([kD, kH, kW, Cin, Cout]): output elements x kD x kH x kW x Cin.
* ``TRANSPOSE_CONV`` (inputs: output shape, weights [Cout, kH, kW, Cin], input, bias): input
  elements x Cout x kH x kW; ``CONV_3D_TRANSPOSE`` (weights [kD, kH, kW, Cout, Cin]): input
  elements x kD x kH x kW x Cout.
* ``FULLY_CONNECTED`` (weights [units, K]) and ``BATCH_MATMUL`` (K from ``adj_x``): output
  elements x K.
* ``LSTM``, ``UNIDIRECTIONAL_SEQUENCE_LSTM``, ``BIDIRECTIONAL_SEQUENCE_LSTM``: every time step
  multiplies the input by the input-to-gate weights [cells, inputs] and the previous output by the
  recurrent weights [cells, outputs] of each gate (4 gates, 3 with CIFG, whose input gate is
  absent), then by the projection [outputs, cells] when there is one. MACs = steps x batch x the
  elements of those matrices; the bidirectional op adds the backward direction's matrices (x2)
  and its auxiliary-input weights times the auxiliary input's steps. Steps x batch is the input's
  elements / its last dimension, in either ``time_major`` layout. Diagonal recurrent weights
  ([cells]) count one MAC per element, peepholes, biases and layer norms none (element-wise).
  Other ops: a bias add and an activation per gate element per step. The BASIC kernel of ``LSTM``
  (one [4 x cells, inputs + outputs] matrix) is steps x batch x that matrix's elements.
* ``RNN``, ``UNIDIRECTIONAL_SEQUENCE_RNN``, ``BIDIRECTIONAL_SEQUENCE_RNN``: steps x batch x
  (input weights + recurrent weights elements), per direction, as above (1 gate).
* ``SVDF`` (feature weights [filters, inputs], time weights [filters, memory]): batch x (feature
  weights + time weights elements); summing the ``rank`` filters of a unit is element-wise.

Any other operator that may multiply-accumulate (a custom op, ``WHILE``, the StableHLO
convolution and dot, ...) is reported as uncounted in the coverage, never taken for zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.analyze._result import (
    CoverageGroup,
    CoverageTally,
    LayerCount,
    ModelAnalysis,
    build_analysis,
    model_precision,
    numel,
    op_precision,
    per_sample,
)
from agent.errors import ModelError
from shared.errors import MissingExtraError

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
_IDENTIFIER = b"TFL3"
_CUSTOM = 32  # BuiltinOperator.CUSTOM
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127


Shapes = Sequence[Shape | None]  # per input index; None for an absent (-1) input


@dataclass(frozen=True)
class _MacSpec:
    x: int  # activation input index (labels precision)
    w: int  # weight input index (labels precision)
    params: tuple[int, ...]  # constant inputs counted as params
    count: Callable[[Shapes, Shape, Any, bool], tuple[int, int]]
    # (input shapes, output shape, options, fused activation) -> (macs, other_ops)


MacsOf = Callable[[Shape, Shape, Shape, Any], int]  # (out, weight, x, options) -> MACs


def _conv_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    return numel(out) * numel(w[1:])  # weights [Cout, kH, kW, Cin/groups]


def _depthwise_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    return numel(out) * numel(w[1:3])  # weights [1, kH, kW, Cout]


def _transpose_conv_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    return numel(x) * numel(w[:3])  # weights [Cout, kH, kW, Cin]


def _fully_connected_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    return numel(out) * w[-1]  # weights [units, K]


def _conv3d_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    return numel(out) * numel(w[:4])  # weights [kD, kH, kW, Cin, Cout]


def _conv3d_transpose_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    return numel(x) * numel(w[:4])  # weights [kD, kH, kW, Cout, Cin]


def _batch_matmul_macs(out: Shape, w: Shape, x: Shape, options: Any) -> int:
    adj_x = bool(getattr(options, "adjX", False))
    k = x[-2] if adj_x and len(x) > 1 else x[-1]
    return numel(out) * k


def _matrix(x: int, w: int, bias: int | None, macs: MacsOf) -> _MacSpec:
    """A conv, deconv or matmul: other ops are the bias add and fused activation per output."""

    def count(shapes: Shapes, out: Shape, options: Any, fused: bool) -> tuple[int, int]:
        has_bias = bias is not None and _shape_at(shapes, bias) is not None
        other_ops = numel(out) * (int(has_bias) + int(fused))
        return macs(out, _shape_at(shapes, w) or (), _shape_at(shapes, x) or (), options), other_ops

    return _MacSpec(x, w, (w,) if bias is None else (w, bias), count)


def _steps(shape: Shape | None) -> int:
    """Time steps x batch of a sequence input (or batch of a one-step input), any layout."""
    return numel(shape) // shape[-1] if shape else 0


def _recurrent(
    groups: tuple[tuple[int, tuple[int, ...]], ...], gate_weights: tuple[int, ...]
) -> Callable[[Shapes, Shape, Any, bool], tuple[int, int]]:
    """MACs of a recurrent op: for each (sequence input, weight matrices) group, the input's
    steps x batch x the elements of the matrices present. Other ops: a bias add and an
    activation per gate row of ``gate_weights`` (the input-to-gate weights) per step."""

    def count(shapes: Shapes, out: Shape, options: Any, fused: bool) -> tuple[int, int]:
        macs = sum(
            _steps(_shape_at(shapes, source)) * sum(numel(w) for w in _present(shapes, weights))
            for source, weights in groups
        )
        rows = sum(w[0] for w in _present(shapes, gate_weights) if w)
        return macs, _steps(_shape_at(shapes, 0)) * rows * 2

    return count


_LSTM_WEIGHTS = (1, 2, 3, 4, 5, 6, 7, 8, 16)  # input-to-gate, recurrent-to-gate, projection
_LSTM_PARAMS = (*range(1, 18), 20, 21, 22, 23)  # + peepholes, biases, projection bias, norms
_lstm_full = _recurrent(((0, _LSTM_WEIGHTS),), (1, 2, 3, 4))


def _lstm(shapes: Shapes, out: Shape, options: Any, fused: bool) -> tuple[int, int]:
    if len(shapes) <= 5:  # BASIC kernel: input, previous output, weights, bias, previous state
        weights = _shape_at(shapes, 2) or ()
        steps = _steps(_shape_at(shapes, 0))
        return steps * numel(weights), steps * (weights[0] if weights else 0) * 2
    return _lstm_full(shapes, out, options, fused)


def _svdf(shapes: Shapes, out: Shape, options: Any, fused: bool) -> tuple[int, int]:
    batch = _steps(_shape_at(shapes, 0))
    feature, time = _shape_at(shapes, 1) or (0,), _shape_at(shapes, 2) or (0,)  # absent: none
    has_bias = _shape_at(shapes, 3) is not None
    return batch * (numel(feature) + numel(time)), numel(out) * (int(has_bias) + int(fused))


_BIDI_LSTM_GROUPS = (
    (0, _LSTM_WEIGHTS),  # forward
    (0, (18, 19, 20, 21, 22, 23, 24, 25, 33)),  # backward
    (39, (40, 41, 42, 43, 44, 45, 46, 47)),  # auxiliary input, both directions
)
_BIDI_LSTM_PARAMS = (*range(1, 35), *range(40, 48))

_MAC_OPS: dict[str, _MacSpec] = {
    "CONV_2D": _matrix(0, 1, 2, _conv_macs),
    "DEPTHWISE_CONV_2D": _matrix(0, 1, 2, _depthwise_macs),
    "TRANSPOSE_CONV": _matrix(2, 1, 3, _transpose_conv_macs),
    "FULLY_CONNECTED": _matrix(0, 1, 2, _fully_connected_macs),
    "BATCH_MATMUL": _matrix(0, 1, None, _batch_matmul_macs),
    "CONV_3D": _matrix(0, 1, 2, _conv3d_macs),
    "CONV_3D_TRANSPOSE": _matrix(2, 1, 3, _conv3d_transpose_macs),
    "LSTM": _MacSpec(0, 2, _LSTM_PARAMS, _lstm),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _MacSpec(0, 2, _LSTM_PARAMS, _lstm_full),
    "BIDIRECTIONAL_SEQUENCE_LSTM": _MacSpec(
        0, 2, _BIDI_LSTM_PARAMS, _recurrent(_BIDI_LSTM_GROUPS, (1, 2, 3, 4, 18, 19, 20, 21))
    ),
    "RNN": _MacSpec(0, 1, (1, 2, 3), _recurrent(((0, (1, 2)),), (1,))),
    "UNIDIRECTIONAL_SEQUENCE_RNN": _MacSpec(0, 1, (1, 2, 3), _recurrent(((0, (1, 2)),), (1,))),
    "BIDIRECTIONAL_SEQUENCE_RNN": _MacSpec(
        0, 1, (1, 2, 3, 5, 6, 7, 10, 11),
        _recurrent(((0, (1, 2, 5, 6)), (9, (10, 11))), (1, 5)),
    ),
    "SVDF": _MacSpec(0, 1, (1, 2, 3), _svdf),
}

def _op_names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Builtin operators that may multiply-accumulate (or run a sub-graph) but have no formula here:
# reported as uncounted, like every CUSTOM:* operator and any operator named nowhere.
_KNOWN_UNCOUNTED_OPS = _op_names(
    """
    CALL CALL_ONCE DELEGATE EMBEDDING_LOOKUP_SPARSE IF LSH_PROJECTION REDUCE_WINDOW RFFT2D WHILE
    STABLEHLO_CASE STABLEHLO_COMPOSITE STABLEHLO_CONVOLUTION STABLEHLO_CUSTOM_CALL
    STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE STABLEHLO_REDUCE_WINDOW STABLEHLO_SCATTER STABLEHLO_WHILE
    """
)

# Operators that carry no MACs by convention (element-wise, pooling, normalization, logic,
# memory, layout, (de)quantization).
_NO_MAC_OPS = _op_names(
    """
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE ATAN2 AVERAGE_POOL_2D BATCH_TO_SPACE_ND BITCAST
    BITWISE_XOR BROADCAST_ARGS BROADCAST_TO BUCKETIZE CAST CEIL COMPLEX_ABS CONCATENATION
    CONCAT_EMBEDDINGS COS CUMSUM DENSIFY DEPTH_TO_SPACE DEQUANTIZE DILATE DIV DYNAMIC_UPDATE_SLICE
    ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FAKE_QUANT FILL FLOOR FLOOR_DIV FLOOR_MOD GATHER
    GATHER_ND GELU GREATER GREATER_EQUAL HARD_SWISH HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT
    HASHTABLE_LOOKUP HASHTABLE_SIZE IMAG L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL
    LOCAL_RESPONSE_NORMALIZATION LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX
    MATRIX_DIAG MATRIX_SET_DIAG MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL MULTINOMIAL NEG
    NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU
    QUANTIZE RANDOM_STANDARD_NORMAL RANDOM_UNIFORM RANGE RANK READ_VARIABLE REAL REDUCE_ALL
    REDUCE_ANY REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_0_TO_1 RELU_N1_TO_1 RESHAPE
    RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_SEQUENCE REVERSE_V2 RIGHT_SHIFT ROUND RSQRT
    SCATTER_ND SEGMENT_SUM SELECT SELECT_V2 SHAPE SIGN SIN SKIP_GRAM SLICE SOFTMAX
    SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPARSE_TO_DENSE SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
    SQUEEZE STRIDED_SLICE SUB SUM TANH TILE TOPK_V2 TRANSPOSE UNIQUE UNPACK UNSORTED_SEGMENT_MAX
    UNSORTED_SEGMENT_MIN UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_SUM VAR_HANDLE WHERE ZEROS_LIKE
    STABLEHLO_ABS STABLEHLO_ADD STABLEHLO_AND STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CBRT
    STABLEHLO_CLAMP STABLEHLO_COMPARE STABLEHLO_CONCATENATE STABLEHLO_CONVERT STABLEHLO_COSINE
    STABLEHLO_DIVIDE STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_EXPONENTIAL
    STABLEHLO_FLOOR STABLEHLO_GATHER STABLEHLO_IOTA STABLEHLO_LOG STABLEHLO_LOGISTIC
    STABLEHLO_MAXIMUM STABLEHLO_MINIMUM STABLEHLO_MULTIPLY STABLEHLO_NEGATE STABLEHLO_OR
    STABLEHLO_PAD STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RESHAPE STABLEHLO_RNG_BIT_GENERATOR
    STABLEHLO_RSQRT STABLEHLO_SELECT STABLEHLO_SHIFT_LEFT STABLEHLO_SLICE STABLEHLO_SORT
    STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_TRANSPOSE
    """
)


def _coverage_group(op_name: str) -> CoverageGroup:
    if op_name in _MAC_OPS:
        return "counted"
    return "no_macs" if op_name in _NO_MAC_OPS else "uncounted"


# Operators that only move, reshape or (de)quantize data: zero other_ops.
_ZERO_COST_OPS = frozenset(
    {
        "BROADCAST_TO",
        "CAST",
        "CONCATENATION",
        "DEPTH_TO_SPACE",
        "DEQUANTIZE",
        "EXPAND_DIMS",
        "FILL",
        "GATHER",
        "GATHER_ND",
        "MIRROR_PAD",
        "PACK",
        "PAD",
        "PADV2",
        "QUANTIZE",
        "RESHAPE",
        "SHAPE",
        "SLICE",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SPLIT_V",
        "SQUEEZE",
        "STRIDED_SLICE",
        "TILE",
        "TRANSPOSE",
        "UNPACK",
    }
)

# Operators whose non-scalar constant inputs are learned weights.
_WEIGHT_CARRYING_OPS = frozenset({"ADD", "DIV", "MUL", "PRELU", "SUB"})

_DTYPE_BITS: dict[str, int] = {
    "float32": 32,
    "float16": 16,
    "bfloat16": 16,
    "float64": 64,
    "int4": 4,
    "int8": 8,
    "uint8": 8,
    "int16": 16,
    "uint16": 16,
    "int32": 32,
    "uint32": 32,
    "int64": 64,
    "uint64": 64,
    "bool": 8,
    "complex64": 64,
    "complex128": 128,
}


@dataclass(frozen=True)
class _Tensor:
    index: int
    name: str
    shape: Shape
    dtype: str
    constant: bool

    @property
    def nbytes(self) -> int:
        return (numel(self.shape) * _DTYPE_BITS.get(self.dtype, 8) + 7) // 8


@dataclass(frozen=True)
class _Op:
    name: str  # builtin name, or CUSTOM:<code>
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any  # unpacked builtin options (object API) or None
    fused_activation: bool


class _CorruptError(Exception):
    """The flatbuffer contradicts itself; translated to ModelError with the path."""


def _import_schema() -> Any:
    try:
        import flatbuffers  # noqa: F401  (the generated schema imports it)
        from ai_edge_litert import schema_py_generated
    except ImportError as err:
        module = "flatbuffers" if "flatbuffers" in str(err) else "ai_edge_litert"
        raise MissingExtraError("litert", module) from err
    return schema_py_generated


def analyze_tflite(path: Path) -> ModelAnalysis:
    """Analyze the TFLite model at ``path``; see :func:`agent.analyze.analyze_model`."""
    schema = _import_schema()
    try:
        buf = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file ({err.strerror or err})") from err
    if buf[4:8] != _IDENTIFIER:
        raise ModelError(
            f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier at offset 4); the file is "
            "corrupt or in another format"
        )
    try:
        tensors, ops = _read(schema, buf)
    except _CorruptError as err:
        raise ModelError(f"{path}: corrupt TFLite flatbuffer ({err})") from err
    except Exception as err:  # struct.error, IndexError, UnicodeDecodeError, ...: a broken file
        raise ModelError(f"{path}: corrupt TFLite flatbuffer ({type(err).__name__}: {err})") from err
    if any(op.name == f"CUSTOM:{EDGETPU_CUSTOM_OP}" for op in ops):
        raise ModelError(
            f"{path}: its operators are compiled for the Edge TPU ({EDGETPU_CUSTOM_OP}), so MACs "
            "cannot be counted from the graph; analyze the CPU .tflite it was compiled from"
        )
    try:
        batch, axes = _fixed_batch(schema, buf, tensors, ops)
        return per_sample(_count(tensors, ops), batch, axes)
    except (IndexError, ValueError, TypeError) as err:
        raise ModelError(f"{path}: inconsistent TFLite graph ({type(err).__name__}: {err})") from err


def _fixed_batch(schema: Any, buf: bytes, tensors: list[_Tensor],
                 ops: list[_Op]) -> tuple[int, tuple[tuple[str, int], ...]]:
    """Samples per call the main subgraph fixes, and each input's batch axis.

    The batch axis is 0, except for an input read only as the sequence (input 0) of sequence ops
    whose ``timeMajor`` option is set, where it is 1. The first input of rank 2 or more decides
    (a shape or a scalar setting has no batch): its batch dimension is the batch when the shape
    signature does not make it dynamic and every graph output carries it too (a batch flows
    through to the outputs); otherwise 1.
    """
    graph = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
    axes: list[tuple[str, int]] = []
    batch, decided = 1, False
    for i in range(graph.InputsLength()):
        index = graph.Inputs(i)
        tensor = graph.Tensors(index)
        name = (tensor.Name() or b"").decode("utf-8", "replace")
        users = [(op, op.inputs.index(index)) for op in ops if index in op.inputs]
        time_major = bool(users) and all(
            "SEQUENCE" in op.name and at == 0 and bool(getattr(op.options, "timeMajor", False))
            for op, at in users)
        axis = 1 if time_major else 0
        if not decided and tensor.ShapeLength() >= 2:
            decided = True
            dynamic = (tensor.ShapeSignatureLength() > axis
                       and tensor.ShapeSignature(axis) == -1)
            batch = 1 if dynamic else max(int(tensor.Shape(axis)), 1)
        axes.append((name, axis))
    outputs = [tensors[graph.Outputs(i)].shape for i in range(graph.OutputsLength())
               if 0 <= graph.Outputs(i) < len(tensors)]
    if batch > 1 and not (outputs and all(batch in shape for shape in outputs)):
        batch = 1
    return batch, tuple(axes)


def _read(schema: Any, buf: bytes) -> tuple[list[_Tensor], list[_Op]]:
    model = schema.Model.GetRootAs(buf, 0)
    limit = len(buf) // 4  # no honest vector has more entries than the file has words
    if not 0 < model.SubgraphsLength() <= limit:
        raise _CorruptError("it holds no subgraph")
    if model.SubgraphsLength() > 1:
        logger.info("only the main subgraph of %d is counted", model.SubgraphsLength())
    builtin_names = _enum_names(schema.BuiltinOperator)
    dtype_names = _enum_names(schema.TensorType)
    codes = []
    for i in range(_bounded(model.OperatorCodesLength(), limit)):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == _CUSTOM:
            custom = code.CustomCode()
            codes.append("CUSTOM:" + (custom.decode("utf-8", "replace") if custom else ""))
        else:
            codes.append(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    constant_buffers = set()
    for i in range(_bounded(model.BuffersLength(), limit)):
        buffer = model.Buffers(i)
        if buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1):
            constant_buffers.add(i)
    graph = model.Subgraphs(0)
    tensors = []
    for i in range(_bounded(graph.TensorsLength(), limit)):
        tensor = graph.Tensors(i)
        shape = tuple(
            max(int(tensor.Shape(j)), 1) for j in range(_bounded(tensor.ShapeLength(), limit))
        )
        name = (tensor.Name() or b"").decode("utf-8", "replace")
        dtype = dtype_names.get(tensor.Type(), f"type{tensor.Type()}").lower()
        tensors.append(_Tensor(i, name, shape, dtype, tensor.Buffer() in constant_buffers))
    ops = []
    for i in range(_bounded(graph.OperatorsLength(), limit)):
        operator = graph.Operators(i)
        if not 0 <= operator.OpcodeIndex() < len(codes):
            raise _CorruptError(f"operator {i} names opcode {operator.OpcodeIndex()}, not stored")
        name = codes[operator.OpcodeIndex()]
        options = None
        if name in _MAC_OPS:
            options = schema.OperatorT.InitFromObj(operator).builtinOptions
        fused = getattr(options, "fusedActivationFunction", 0) not in (0, None)
        inputs = tuple(operator.Inputs(j) for j in range(_bounded(operator.InputsLength(), limit)))
        outputs = tuple(
            operator.Outputs(j) for j in range(_bounded(operator.OutputsLength(), limit))
        )
        if any(not -1 <= index < len(tensors) for index in (*inputs, *outputs)):
            raise _CorruptError(f"operator {i} refers to a tensor that is not stored")
        ops.append(_Op(name, inputs, outputs, options, fused))
    return tensors, ops


def _count(tensors: list[_Tensor], ops: list[_Op]) -> ModelAnalysis:
    producers = {out: op for op in ops for out in op.outputs}
    counted: set[int] = set()
    weight_bytes = 0

    def resolve(index: int) -> _Tensor | None:
        """The constant behind ``index``, also through a DEQUANTIZE (float16/int8 weights)."""
        if index < 0:
            return None
        tensor = tensors[index]
        if tensor.constant:
            return tensor
        producer = producers.get(index)
        if producer is not None and producer.name == "DEQUANTIZE" and producer.inputs:
            source = tensors[producer.inputs[0]]
            return source if source.constant else None
        return None

    def count_param(index: int) -> int:
        nonlocal weight_bytes
        const = resolve(index)
        if const is None or const.index in counted:
            return 0
        counted.add(const.index)
        weight_bytes += const.nbytes
        return numel(const.shape)

    def activation_dtype(index: int) -> str:
        return tensors[index].dtype if index >= 0 else "unknown"

    layers: list[LayerCount] = []
    labels: list[str] = []
    coverage = CoverageTally()
    for op in ops:
        coverage.add(op.name, _coverage_group(op.name))
        out = tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
        out_shape = out.shape if out is not None else ()
        name = out.name if out is not None else op.name
        spec = _MAC_OPS.get(op.name)
        if spec is not None:
            x_index = _at(op.inputs, spec.x)
            w_index = _at(op.inputs, spec.w)
            shapes = [tensors[i].shape if i >= 0 else None for i in op.inputs]
            macs, other_ops = spec.count(shapes, out_shape, op.options, op.fused_activation)
            params = sum(count_param(_at(op.inputs, i)) for i in spec.params)
            weight = resolve(w_index)
            w_dtype = weight.dtype if weight is not None else activation_dtype(w_index)
            labels.append(op_precision(w_dtype, activation_dtype(x_index)))
            layers.append(LayerCount(name, op.name, macs, other_ops, params, out_shape))
            continue
        if op.name in _ZERO_COST_OPS:
            continue
        params = 0
        if op.name in _WEIGHT_CARRYING_OPS:
            for index in op.inputs:
                const = resolve(index)
                if const is not None and numel(const.shape) > 1:
                    params += count_param(index)
        layers.append(LayerCount(name, op.name, 0, numel(out_shape), params, out_shape))
    stored = {tensors[i].dtype for i in counted}
    fallback = next(iter(stored)) if len(stored) == 1 else ("mixed" if stored else "unknown")
    return build_analysis(
        "tflite", layers, weight_bytes, model_precision(labels, fallback), coverage.build()
    )


def _shape_at(shapes: Shapes, index: int) -> Shape | None:
    return shapes[index] if index < len(shapes) else None


def _present(shapes: Shapes, indices: tuple[int, ...]) -> list[Shape]:
    """The shapes of the inputs at ``indices`` that the operator has (optional ones are -1)."""
    return [shape for i in indices if (shape := _shape_at(shapes, i)) is not None]


def _at(inputs: tuple[int, ...], index: int | None) -> int:
    if index is None or index >= len(inputs):
        return -1
    return inputs[index]


def _bounded(length: int, limit: int) -> int:
    if not 0 <= length <= limit:
        raise _CorruptError(f"a vector length of {length} exceeds the file size")
    return length


def _enum_names(enum: type) -> dict[int, str]:
    return {
        value: key
        for key, value in vars(enum).items()
        if not key.startswith("_") and isinstance(value, int)
    }
