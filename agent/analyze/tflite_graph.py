"""Count MACs, other ops and params of a TFLite flatbuffer (the convention is in
:mod:`agent.analyze`).

The file is read with the flatbuffer schema that ai-edge-litert ships
(``ai_edge_litert.schema_py_generated``); no interpreter is created. Shapes are the tensor shapes
stored in the file; a ``-1`` (dynamic batch) counts as 1. Only the main subgraph is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.analyze._result import (
    LayerCount,
    ModelAnalysis,
    build_analysis,
    model_precision,
    numel,
    op_precision,
)
from agent.errors import ModelError
from shared.errors import MissingExtraError

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
_IDENTIFIER = b"TFL3"
_CUSTOM = 32  # BuiltinOperator.CUSTOM
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127


@dataclass(frozen=True)
class _MacSpec:
    x: int  # activation input index
    w: int  # weight input index
    bias: int | None
    macs: Callable[[Shape, Shape, Shape, Any], int]  # (out, weight, x, operator) -> MACs


def _conv_macs(out: Shape, w: Shape, x: Shape, op: Any) -> int:
    return numel(out) * numel(w[1:])  # weights [Cout, kH, kW, Cin/groups]


def _depthwise_macs(out: Shape, w: Shape, x: Shape, op: Any) -> int:
    return numel(out) * numel(w[1:3])  # weights [1, kH, kW, Cout]


def _transpose_conv_macs(out: Shape, w: Shape, x: Shape, op: Any) -> int:
    return numel(x) * numel(w[:3])  # weights [Cout, kH, kW, Cin]


def _fully_connected_macs(out: Shape, w: Shape, x: Shape, op: Any) -> int:
    return numel(out) * w[-1]  # weights [units, K]


def _conv3d_macs(out: Shape, w: Shape, x: Shape, op: Any) -> int:
    return numel(out) * numel(w[:4])  # weights [kD, kH, kW, Cin, Cout]


def _batch_matmul_macs(out: Shape, w: Shape, x: Shape, op: Any) -> int:
    adj_x = bool(getattr(op, "adjX", False))
    k = x[-2] if adj_x and len(x) > 1 else x[-1]
    return numel(out) * k


_MAC_OPS: dict[str, _MacSpec] = {
    "CONV_2D": _MacSpec(0, 1, 2, _conv_macs),
    "DEPTHWISE_CONV_2D": _MacSpec(0, 1, 2, _depthwise_macs),
    "TRANSPOSE_CONV": _MacSpec(2, 1, 3, _transpose_conv_macs),
    "FULLY_CONNECTED": _MacSpec(0, 1, 2, _fully_connected_macs),
    "BATCH_MATMUL": _MacSpec(0, 1, None, _batch_matmul_macs),
    "CONV_3D": _MacSpec(0, 1, 2, _conv3d_macs),
}

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
        return _count(tensors, ops)
    except (IndexError, ValueError, TypeError) as err:
        raise ModelError(f"{path}: inconsistent TFLite graph ({type(err).__name__}: {err})") from err


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
    unknown_custom: set[str] = set()
    for op in ops:
        out = tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
        out_shape = out.shape if out is not None else ()
        name = out.name if out is not None else op.name
        spec = _MAC_OPS.get(op.name)
        if spec is not None:
            x_index = _at(op.inputs, spec.x)
            w_index = _at(op.inputs, spec.w)
            bias_index = _at(op.inputs, spec.bias) if spec.bias is not None else -1
            x_shape = tensors[x_index].shape if x_index >= 0 else ()
            w_shape = tensors[w_index].shape if w_index >= 0 else ()
            macs = spec.macs(out_shape, w_shape, x_shape, op.options)
            other_ops = numel(out_shape) * (int(bias_index >= 0) + int(op.fused_activation))
            params = count_param(w_index) + count_param(bias_index)
            weight = resolve(w_index)
            w_dtype = weight.dtype if weight is not None else activation_dtype(w_index)
            labels.append(op_precision(w_dtype, activation_dtype(x_index)))
            layers.append(LayerCount(name, op.name, macs, other_ops, params, out_shape))
            continue
        if op.name in _ZERO_COST_OPS:
            continue
        if op.name.startswith("CUSTOM:"):
            unknown_custom.add(op.name)
        params = 0
        if op.name in _WEIGHT_CARRYING_OPS:
            for index in op.inputs:
                const = resolve(index)
                if const is not None and numel(const.shape) > 1:
                    params += count_param(index)
        layers.append(LayerCount(name, op.name, 0, numel(out_shape), params, out_shape))
    if unknown_custom:
        logger.warning(
            "custom operators %s are counted as element-wise (no MACs)",
            ", ".join(sorted(unknown_custom)),
        )
    stored = {tensors[i].dtype for i in counted}
    fallback = next(iter(stored)) if len(stored) == 1 else ("mixed" if stored else "unknown")
    return build_analysis("tflite", layers, weight_bytes, model_precision(labels, fallback))


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
