"""Count MACs, other ops and params of an ONNX graph (the convention is in :mod:`agent.analyze`,
each operator's MAC formula in :mod:`agent.analyze.onnx_ops`).

Shapes come from ``onnx.shape_inference`` on a copy of the model whose dynamic batch is pinned to
1. Shape-computing sub-graphs that inference cannot see through (``Shape -> Gather -> Cast ->
Concat`` feeding a ``Resize``, as PyTorch exports write them) are folded into Constant nodes in that
copy, and inference runs again, until nothing more folds. Only if a MAC op's shapes are still
unknown is onnxruntime run once on zeros, to read the missing shapes. Counting always walks the
original graph, never the folded copy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.analyze._result import (
    CoverageTally,
    LayerCount,
    ModelAnalysis,
    build_analysis,
    model_precision,
    numel,
    op_precision,
    per_sample,
)
from agent.analyze.onnx_ops import (
    FORMULA_OPS,
    MAC_OPS,
    MS_DOMAIN,
    FormulaOp,
    MacSpec,
    coverage_group,
    coverage_name,
)
from agent.errors import ModelError
from shared.errors import MissingExtraError

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
_MAX_FOLD_ROUNDS = 10
_MAX_FOLD_ELEMENTS = 1024
_MAX_PASS_THROUGH = 16


# Nodes that move, reshape, re-type or (de)quantize data: zero other_ops.
_ZERO_COST_OPS = frozenset(
    {
        "Cast",
        "CastLike",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "DepthToSpace",
        "DequantizeLinear",
        "Dropout",
        "Expand",
        "Flatten",
        "Gather",
        "GatherElements",
        "GatherND",
        "Identity",
        "NonZero",
        "Pad",
        "QuantizeLinear",
        "Range",
        "Reshape",
        "Shape",
        "Size",
        "Slice",
        "SpaceToDepth",
        "Split",
        "Squeeze",
        "Tile",
        "Transpose",
        "Unsqueeze",
    }
)

# com.microsoft nodes that only (de)quantize or move data: zero other_ops.
_MS_ZERO_COST_OPS = frozenset({"DequantizeLinear", "ExpandDims", "QLinearConcat", "QuantizeLinear"})

# Nodes whose non-scalar constant inputs are learned weights (counted as params).
_WEIGHT_CARRYING_OPS = frozenset(
    {
        "Add",
        "BatchNormalization",
        "Div",
        "InstanceNormalization",
        "LayerNormalization",
        "Mul",
        "PRelu",
        "QLinearAdd",
        "QLinearMul",
        "Sub",
    }
)

# Nodes a weight passes through on its way from its constant to a MAC op (data is input 0).
_PASS_THROUGH_OPS = frozenset(
    {
        "Cast",
        "DequantizeLinear",
        "Flatten",
        "Identity",
        "QuantizeLinear",
        "Reshape",
        "Squeeze",
        "Transpose",
        "Unsqueeze",
    }
)

# Nodes that only change the layout of a tensor, never its values or dtype.
_LAYOUT_OPS = frozenset({"Flatten", "Identity", "Reshape", "Squeeze", "Transpose", "Unsqueeze"})

_DTYPE_BITS: dict[str, int] = {
    "float32": 32,
    "float16": 16,
    "bfloat16": 16,
    "float64": 64,
    "int8": 8,
    "uint8": 8,
    "int16": 16,
    "uint16": 16,
    "int32": 32,
    "uint32": 32,
    "int64": 64,
    "uint64": 64,
    "bool": 8,
    "int4": 4,
    "uint4": 4,
    "float4e2m1": 4,
    "complex64": 64,
    "complex128": 128,
}

_ORT_INPUT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class _Const:
    """A constant tensor of the original graph: an initializer or a Constant node's output."""

    name: str
    dims: Shape
    dtype: str

    @property
    def nbytes(self) -> int:
        return (numel(self.dims) * _DTYPE_BITS.get(self.dtype, 8) + 7) // 8


@dataclass(frozen=True)
class _WeightRef:
    const: _Const
    effective_dtype: str  # the quantized type when a DequantizeLinear sits in between


class _Uncountable(Exception):
    """The graph is readable but its MACs cannot be counted; the message says why and what to do."""


class _MissingShapes(Exception):
    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(", ".join(names))
        self.names = list(names)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise MissingExtraError("onnx", "onnx") from err
    return onnx


def analyze_onnx(path: Path) -> ModelAnalysis:
    """Analyze the ONNX model at ``path``; see :func:`agent.analyze.analyze_model`."""
    onnx = _import_onnx()
    model = _load(onnx, path)
    analysis, shapes = _analyze_graph(onnx, model, path)
    batch, axes = fixed_batch(model.graph, shapes)
    return per_sample(analysis, batch, axes)


_TIME_MAJOR_OPS = frozenset({"LSTM", "GRU", "RNN"})


def fixed_batch(graph: Any, shapes: dict[str, Shape]) -> tuple[int, tuple[tuple[str, int], ...]]:
    """Samples per call the graph fixes, and each input's batch axis.

    The batch axis is 0, except for an input read only as the sequence (input 0) of recurrent ops
    (LSTM, GRU, RNN) in their default time-major layout, where it is 1. The first input of rank 2
    or more decides the batch (a shape or a scalar setting has none): a fixed dimension N > 1 there
    is the batch when every graph output (``shapes``: the inferred shapes) carries N too, as a
    batch flows through to the outputs; a dimension that does not reach them (a contraction, a
    transposed matrix) is no batch. A dynamic dimension (pinned to 1 for counting) is 1.
    """
    initializers = {init.name for init in graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    axes: list[tuple[str, int]] = []
    batch, decided = 1, False
    for value in graph.input:
        if value.name in initializers:
            continue
        users = consumers.get(value.name, [])
        time_major = bool(users) and all(
            node.op_type in _TIME_MAJOR_OPS and index == 0 and not any(
                attr.name == "layout" and attr.i for attr in node.attribute)
            for node, index in users
        )
        axis = 1 if time_major else 0
        dims = value.type.tensor_type.shape.dim if value.type.tensor_type.HasField("shape") else []
        if not decided and len(dims) >= 2:
            decided = True
            batch = int(dims[axis].dim_value) if dims[axis].dim_value > 0 else 1
        axes.append((value.name, axis))
    outputs = [shapes.get(value.name) for value in graph.output]
    if batch > 1 and not all(shape is not None and batch in shape for shape in outputs):
        batch = 1
    return batch, tuple(axes)


def _analyze_graph(onnx: Any, model: Any, path: Path) -> tuple[ModelAnalysis, dict[str, Shape]]:
    """The counts of the whole graph, and the shapes they were counted from."""
    shapes, dtypes, dynamic = _infer_shapes(onnx, model, path)
    try:
        return _count(onnx, model, shapes, dtypes, path), shapes
    except _MissingShapes as missing:
        logger.info(
            "%s: graph shape inference left %d shapes unknown; reading them from onnxruntime",
            path.name,
            len(missing.names),
        )
        if dynamic:
            raise ModelError(
                f"{path}: input dimension(s) {', '.join(dynamic)} are dynamic beyond the batch, "
                "so MACs cannot be counted; export the model with fixed input shapes"
            ) from None
        shapes.update(_shapes_from_onnxruntime(onnx, model, missing.names, path))
    try:
        return _count(onnx, model, shapes, dtypes, path), shapes
    except _MissingShapes as missing:
        raise ModelError(
            f"{path}: cannot determine the shapes of {', '.join(missing.names[:3])}; "
            "MACs cannot be counted"
        ) from None


def _count(
    onnx: Any, model: Any, shapes: dict[str, Shape], dtypes: dict[str, str], path: Path
) -> ModelAnalysis:
    try:
        return _Counter(onnx, model.graph, shapes, dtypes).count()
    except _Uncountable as err:
        raise ModelError(f"{path}: {err}") from err
    except (IndexError, ValueError, TypeError, KeyError, ArithmeticError) as err:
        raise ModelError(f"{path}: inconsistent ONNX graph ({_one_line(err)})") from err


def _load(onnx: Any, path: Path) -> Any:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError, OSError, ... all mean "not a usable file"
        raise ModelError(f"{path}: not a readable ONNX model ({_one_line(err)})") from err
    if model.ir_version <= 0 or not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no IR version or no graph nodes)")
    return model


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _dtype_name(onnx: Any, elem_type: int) -> str:
    name = str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


# --------------------------------------------------------------------------- shape inference


def _pin_batch(graph: Any) -> list[str]:
    """Set a dynamic first dimension of every graph input to 1; return other dynamic dims."""
    initializers = {init.name for init in graph.initializer}
    dynamic: list[str] = []
    for value in graph.input:
        if value.name in initializers or not value.type.tensor_type.HasField("shape"):
            continue
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if index == 0:
                dim.Clear()
                dim.dim_value = 1
            else:
                dynamic.append(f"{value.name}[{index}]")
    return dynamic


def _infer_shapes(
    onnx: Any, model: Any, path: Path
) -> tuple[dict[str, Shape], dict[str, str], list[str]]:
    work = onnx.ModelProto()
    work.CopyFrom(model)
    dynamic = _pin_batch(work.graph)
    shapes: dict[str, Shape] = {}
    dtypes: dict[str, str] = {}
    for round_index in range(_MAX_FOLD_ROUNDS):
        try:
            inferred = onnx.shape_inference.infer_shapes(work, strict_mode=False, data_prop=True)
        except Exception as err:
            raise ModelError(f"{path}: ONNX shape inference failed ({_one_line(err)})") from err
        shapes, dtypes = _collect_value_info(onnx, inferred.graph)
        folded = _fold_shape_subgraphs(onnx, work.graph, shapes)
        logger.debug("%s: shape-inference round %d folded %d nodes", path.name, round_index, folded)
        if not folded:
            break
    return shapes, dtypes, dynamic


def _collect_value_info(onnx: Any, graph: Any) -> tuple[dict[str, Shape], dict[str, str]]:
    shapes: dict[str, Shape] = {}
    dtypes: dict[str, str] = {}
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
        dtypes[init.name] = _dtype_name(onnx, init.data_type)
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            dtypes[value.name] = _dtype_name(onnx, tensor_type.elem_type)
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes, dtypes


def _constant_node_value(onnx: Any, node: Any) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return np.asarray(onnx.numpy_helper.to_array(attr.t))
        if attr.name == "value_int":
            return np.asarray(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.asarray(list(attr.ints), dtype=np.int64)
        if attr.name == "value_float":
            return np.asarray(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.asarray(list(attr.floats), dtype=np.float32)
    return None


def _fold_shape_subgraphs(onnx: Any, graph: Any, shapes: dict[str, Shape]) -> int:
    """Replace nodes whose small outputs can be computed now by Constant nodes; count them."""
    values: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if numel(init.dims) <= _MAX_FOLD_ELEMENTS and not init.external_data:
            try:
                values[init.name] = np.asarray(onnx.numpy_helper.to_array(init))
            except Exception:  # an odd dtype: just not foldable
                continue
    replacements: list[tuple[int, Any]] = []
    for index, node in enumerate(graph.node):
        if node.domain not in _DEFAULT_DOMAINS:
            continue
        if node.op_type == "Constant":
            value = _constant_node_value(onnx, node)
            if value is not None and node.output:
                values[node.output[0]] = value
            continue
        if len(node.output) != 1 or node.op_type not in _FOLDERS:
            continue
        args = [values.get(name) if name else None for name in node.input]
        if node.op_type != "Shape" and any(
            name and arg is None for name, arg in zip(node.input, args, strict=True)
        ):
            continue
        attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        try:
            result = _FOLDERS[node.op_type](node, args, attrs, shapes)
        except (ValueError, IndexError, TypeError, KeyError, OverflowError):
            result = None
        if result is None or result.size > _MAX_FOLD_ELEMENTS:
            continue
        values[node.output[0]] = result
        constant = onnx.helper.make_node(
            "Constant",
            [],
            [node.output[0]],
            name=node.name,
            value=onnx.numpy_helper.from_array(result, node.output[0]),
        )
        replacements.append((index, constant))
    for index, constant in replacements:
        graph.node[index].CopyFrom(constant)
    return len(replacements)


FoldArgs = list[np.ndarray | None]


def _fold_shape(node: Any, args: FoldArgs, attrs: dict[str, Any], shapes: dict[str, Shape]) -> Any:
    shape = shapes.get(node.input[0])
    if shape is None:
        return None
    start = attrs.get("start", 0)
    end = attrs.get("end")
    return np.asarray(shape[start:end], dtype=np.int64)


def _axes(args: FoldArgs, attrs: dict[str, Any]) -> list[int] | None:
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in np.asarray(args[1]).reshape(-1)]
    return None


def _fold_unsqueeze(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    data = np.asarray(args[0])
    axes = _axes(args, attrs) or []
    rank = data.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        data = np.expand_dims(data, axis)
    return data


def _fold_squeeze(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    data = np.asarray(args[0])
    axes = _axes(args, attrs)
    return np.squeeze(data) if axes is None else np.squeeze(data, axis=tuple(axes))


def _fold_slice(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    data = np.asarray(args[0])
    if "starts" in attrs:  # opset < 10
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:

        def arg(i: int) -> list[int] | None:
            if len(args) > i and args[i] is not None:
                return [int(v) for v in np.asarray(args[i]).reshape(-1)]
            return None

        starts, ends = arg(1) or [], arg(2) or []
        axes = arg(3) or list(range(len(starts)))
        steps = arg(4) or [1] * len(starts)
    index: list[slice] = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=False):
        index[axis % data.ndim] = slice(start, end, step)
    return data[tuple(index)]


def _fold_reshape(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    data = np.asarray(args[0])
    target = [int(v) for v in np.asarray(args[1]).reshape(-1)]
    if not attrs.get("allowzero", 0):
        target = [data.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return data.reshape(target)


def _fold_div(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    num, den = np.asarray(args[0]), np.asarray(args[1])
    if np.issubdtype(num.dtype, np.integer):
        return np.trunc(num / den).astype(num.dtype)
    return num / den


def _fold_cast(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    import onnx

    return np.asarray(args[0]).astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))


def _fold_constant_of_shape(node: Any, args: FoldArgs, attrs: dict[str, Any], _: Any) -> Any:
    import onnx

    shape = [int(v) for v in np.asarray(args[0]).reshape(-1)]
    if numel(shape) > _MAX_FOLD_ELEMENTS:
        return None
    fill = attrs.get("value")
    value = onnx.numpy_helper.to_array(fill) if fill is not None else np.zeros(1, np.float32)
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


_FOLDERS: dict[str, Any] = {
    "Shape": _fold_shape,
    "Identity": lambda n, a, at, s: np.asarray(a[0]),
    "Cast": _fold_cast,
    "Gather": lambda n, a, at, s: np.take(a[0], a[1], axis=at.get("axis", 0)),
    "Unsqueeze": _fold_unsqueeze,
    "Squeeze": _fold_squeeze,
    "Concat": lambda n, a, at, s: np.concatenate([np.atleast_1d(x) for x in a], axis=at["axis"]),
    "Slice": _fold_slice,
    "Reshape": _fold_reshape,
    "Add": lambda n, a, at, s: np.add(a[0], a[1]),
    "Sub": lambda n, a, at, s: np.subtract(a[0], a[1]),
    "Mul": lambda n, a, at, s: np.multiply(a[0], a[1]),
    "Div": _fold_div,
    "Floor": lambda n, a, at, s: np.floor(a[0]),
    "Ceil": lambda n, a, at, s: np.ceil(a[0]),
    "ConstantOfShape": _fold_constant_of_shape,
}


def _shapes_from_onnxruntime(
    onnx: Any, model: Any, names: Iterable[str], path: Path
) -> dict[str, Shape]:
    """Run the model once on zeros (batch 1) and return the shapes of ``names``."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingExtraError("onnx", "onnxruntime") from err
    wanted = list(dict.fromkeys(names))
    work = onnx.ModelProto()
    work.CopyFrom(model)
    _pin_batch(work.graph)
    declared = {value.name for value in work.graph.output}
    for name in wanted:
        if name not in declared:
            work.graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(
            work.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        feeds = {}
        for value in session.get_inputs():
            dims = [d if isinstance(d, int) and d > 0 else 1 for d in value.shape]
            feeds[value.name] = np.zeros(dims, dtype=_ORT_INPUT_DTYPES.get(value.type, np.float32))
        outputs = session.run(wanted, feeds)
    except Exception as err:
        raise ModelError(
            f"{path}: shapes are not inferable from the graph and onnxruntime could not run it "
            f"to read them ({_one_line(err)})"
        ) from err
    return {name: tuple(int(d) for d in np.shape(out)) for name, out in zip(wanted, outputs, strict=True)}


# --------------------------------------------------------------------------- counting


class _Counter:
    """One pass over the original graph, with the shapes and dtypes found by inference."""

    def __init__(
        self, onnx: Any, graph: Any, shapes: dict[str, Shape], dtypes: dict[str, str]
    ) -> None:
        self._onnx = onnx
        self._graph = graph
        self._shapes = shapes
        self._dtypes = dtypes
        self._producers = {out: node for node in graph.node for out in node.output if out}
        self._consts: dict[str, _Const] = {}
        for init in graph.initializer:
            self._consts[init.name] = _Const(
                init.name, tuple(int(d) for d in init.dims), _dtype_name(onnx, init.data_type)
            )
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                value = _constant_node_value(onnx, node)
                if value is not None:
                    self._consts[node.output[0]] = _Const(
                        node.output[0], tuple(value.shape), _numpy_dtype_name(value.dtype)
                    )
        self._counted: set[str] = set()
        self._weight_bytes = 0

    def count(self) -> ModelAnalysis:
        layers: list[LayerCount] = []
        labels: list[str] = []
        missing: list[str] = []
        unknown_other: list[str] = []
        coverage = CoverageTally()
        for node in self._graph.node:
            key = (_domain(node), str(node.op_type))
            coverage.add(coverage_name(*key), coverage_group(*key))
            spec = MAC_OPS.get(key)
            formula = FORMULA_OPS.get(key)
            out_name = next((name for name in node.output if name), "")
            out_shape = self._shapes.get(out_name)
            if spec is not None:
                layer, label = self._mac_layer(node, spec, out_shape, missing)
            elif formula is not None:
                layer, label = self._formula_layer(node, formula, out_shape, missing)
            else:
                layer, label = self._other_layer(node, out_shape, unknown_other), ""
            if label:
                labels.append(label)
            if layer is not None and (layer.macs or layer.other_ops or layer.params):
                layers.append(layer)
        if missing:
            raise _MissingShapes(missing + unknown_other)
        if unknown_other:
            logger.warning(
                "%d non-MAC nodes have unknown output shapes (first: %s); their other_ops count 0",
                len(unknown_other),
                unknown_other[0],
            )
        fallback = self._fallback_precision()
        return build_analysis(
            "onnx",
            layers,
            self._weight_bytes,
            model_precision(labels, fallback),
            coverage.build(),
        )

    # -- MAC ops

    def _mac_layer(
        self, node: Any, spec: MacSpec, out_shape: Shape | None, missing: list[str]
    ) -> tuple[LayerCount | None, str]:
        x_name = _input(node, spec.x)
        w_name = _input(node, spec.w)
        w_shape = self._known_shape(w_name)
        needed: dict[str, Shape | None] = {_out_name(node): out_shape, w_name: w_shape}
        if spec.kind in {"convtranspose", "gemm", "matmul"}:
            needed[x_name] = self._shapes.get(x_name)
        unknown = [name for name, shape in needed.items() if shape is None]
        if unknown:
            missing.extend(unknown)
            return None, ""
        if out_shape is None or w_shape is None:  # unreachable: both are in ``needed``
            return None, ""
        macs = self._macs(node, spec, out_shape, w_shape, self._shapes.get(x_name, ()))
        bias_name = _input(node, spec.bias) if spec.bias is not None else ""
        other_ops = numel(out_shape) if bias_name else 0
        params = 0
        for name in (w_name, bias_name):
            params += self._count_param(name)
        w_ref = self._resolve(w_name)
        w_dtype = w_ref.effective_dtype if w_ref is not None else self._activation_dtype(w_name)
        label = op_precision(w_dtype, self._activation_dtype(x_name))
        name = node.name or _out_name(node)
        return LayerCount(name, node.op_type, macs, other_ops, params, out_shape), label

    def _macs(
        self, node: Any, spec: MacSpec, out_shape: Shape, w_shape: Shape, x_shape: Shape
    ) -> int:
        if spec.kind == "conv":
            return numel(out_shape) * numel(w_shape[1:])
        if spec.kind == "convtranspose":
            return numel(x_shape) * numel(w_shape[1:])
        trans_a = _attr_int(self._onnx, node, "transA", 0)
        if spec.kind == "gemm":
            k = x_shape[0] if trans_a else x_shape[-1]
        elif len(x_shape) == 1:
            k = x_shape[0]
        else:
            k = x_shape[-2] if trans_a else x_shape[-1]
        return numel(out_shape) * int(k)

    def _formula_layer(
        self, node: Any, op: FormulaOp, out_shape: Shape | None, missing: list[str]
    ) -> tuple[LayerCount | None, str]:
        names = [str(name) for name in node.input]
        needs = set(range(len(names)) if op.needs is None else op.needs)
        shapes: list[Shape | None] = []
        unknown: list[str] = []
        for index, name in enumerate(names):
            shape = self._known_shape(name) if name else None
            if name and shape is None:
                if index in needs:
                    unknown.append(name)
                shape = ()  # present, but a shape the formula does not read
            shapes.append(shape)
        if unknown:
            missing.extend(unknown)
            return None, ""
        attrs = {
            attr.name: _decoded(self._onnx.helper.get_attribute_value(attr))
            for attr in node.attribute
        }
        if op.time_major_x and not attrs.get("layout", 0) and self._dynamic_first_dim(names[0]):
            raise _Uncountable(
                f"the sequence length of {node.op_type} input {names[0]!r} is dynamic (its "
                "first dimension, which is time, not batch, in layout 0), so MACs cannot be "
                "counted; export the model with a fixed sequence length"
            )
        macs, other_ops = op.count(attrs, shapes)
        param_indices = range(len(names)) if op.params is None else op.params
        params = sum(self._count_param(names[i]) for i in param_indices if i < len(names))
        w_index = op.w
        if op.params is None:  # any operand may be the weight: the first constant one is
            w_index = next((i for i, name in enumerate(names) if self._resolve(name)), op.w)
        x_dtype = self._activation_dtype(_input(node, op.x))
        w_name = _input(node, w_index) or _input(node, op.x)  # a one-operand Einsum: x alone
        w_ref = self._resolve(w_name) if w_name else None
        w_dtype = w_ref.effective_dtype if w_ref is not None else self._activation_dtype(w_name)
        label = op_precision(w_dtype, x_dtype)
        name = node.name or _out_name(node)
        return LayerCount(name, node.op_type, macs, other_ops, params, out_shape or ()), label

    # -- everything else

    def _other_layer(
        self, node: Any, out_shape: Shape | None, unknown: list[str]
    ) -> LayerCount | None:
        domain = _domain(node)
        if (domain == "" and node.op_type in _ZERO_COST_OPS) or (
            domain == MS_DOMAIN and node.op_type in _MS_ZERO_COST_OPS
        ):
            return None
        params = 0
        if node.op_type in _WEIGHT_CARRYING_OPS:
            for name in node.input:
                ref = self._resolve(name) if name else None
                if ref is not None and numel(ref.const.dims) > 1:
                    params += self._count_param(name)
        if out_shape is None:
            unknown.append(_out_name(node))
            other_ops = 0
        else:
            other_ops = numel(out_shape)
        return LayerCount(
            node.name or _out_name(node), node.op_type, 0, other_ops, params, out_shape or ()
        )

    # -- constants and dtypes

    def _dynamic_first_dim(self, name: str) -> bool:
        """Whether ``name`` is a graph input whose first dimension is not a fixed size."""
        for value in self._graph.input:
            if value.name == name and value.type.tensor_type.HasField("shape"):
                dims = value.type.tensor_type.shape.dim
                return bool(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0)
        return False

    def _known_shape(self, name: str) -> Shape | None:
        """The inferred shape of ``name``, else that of the constant it re-types, if any."""
        shape = self._shapes.get(name)
        if shape is None:
            ref = self._resolve(name)
            if ref is not None and not self._reshaped_on_the_way(name):
                shape = ref.const.dims
        return shape

    def _resolve(self, name: str) -> _WeightRef | None:
        """Follow ``name`` back through re-typing nodes to a constant, if it comes from one."""
        effective: str | None = None
        current = name
        for _ in range(_MAX_PASS_THROUGH):
            const = self._consts.get(current)
            if const is not None:
                return _WeightRef(const, effective or const.dtype)
            node = self._producers.get(current)
            if node is None or node.op_type not in _PASS_THROUGH_OPS or not node.input:
                return None
            if node.op_type == "DequantizeLinear" and effective is None:
                effective = self._dtype_of(node.input[0])
            current = node.input[0]
        return None

    def _reshaped_on_the_way(self, name: str) -> bool:
        """Whether a layout node (Transpose, Reshape, ...) sits between ``name`` and its constant."""
        current = name
        for _ in range(_MAX_PASS_THROUGH):
            node = self._producers.get(current)
            if node is None or node.op_type not in _PASS_THROUGH_OPS or not node.input:
                return False
            if node.op_type in _LAYOUT_OPS and node.op_type != "Identity":
                return True
            current = node.input[0]
        return False

    def _count_param(self, name: str) -> int:
        ref = self._resolve(name) if name else None
        if ref is None or ref.const.name in self._counted:
            return 0
        self._counted.add(ref.const.name)
        self._weight_bytes += ref.const.nbytes
        return numel(ref.const.dims)

    def _dtype_of(self, name: str) -> str:
        const = self._consts.get(name)
        if const is not None:
            return const.dtype
        return self._dtypes.get(name, "unknown")

    def _activation_dtype(self, name: str) -> str:
        """The dtype ``name`` is computed in: a DequantizeLinear's input, through layout ops."""
        current = name
        for _ in range(_MAX_PASS_THROUGH):
            node = self._producers.get(current)
            if node is None or not node.input:
                break
            if node.op_type == "DequantizeLinear":
                return self._dtype_of(node.input[0])
            if node.op_type not in _LAYOUT_OPS:
                break
            current = node.input[0]
        return self._dtype_of(name)

    def _fallback_precision(self) -> str:
        stored = {self._consts[name].dtype for name in self._counted if name in self._consts}
        if len(stored) == 1:
            return next(iter(stored))
        return "mixed" if stored else "unknown"


def _domain(node: Any) -> str:
    return "" if node.domain in _DEFAULT_DOMAINS else str(node.domain)


def _input(node: Any, index: int) -> str:
    return str(node.input[index]) if index < len(node.input) else ""


def _out_name(node: Any) -> str:
    return next((str(name) for name in node.output if name), node.op_type)


def _attr_int(onnx: Any, node: Any, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(onnx.helper.get_attribute_value(attr))
    return default


def _decoded(value: Any) -> Any:
    """An attribute value with its strings (bytes in the protobuf) decoded."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _numpy_dtype_name(dtype: np.dtype[Any]) -> str:
    return str(np.dtype(dtype).name)
