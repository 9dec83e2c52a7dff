"""Graph builders for the analyze tests: ONNX through ``onnx.helper``, TFLite through the
flatbuffer schema's object API (as :mod:`edgemeter.demo.models` writes its TFLite models).

onnx and ai-edge-litert are imported inside the helpers, so a test module that uses only one
format does not need the other installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def save(
    tmp_path: Path,
    nodes: list[Any],
    inputs: list[Any],
    inits: list[Any],
    opset: int = 17,
    name: str = "hand.onnx",
    domains: tuple[str, ...] = (),
) -> Path:
    """Write a one-graph model whose output is ``y``; ``com.microsoft`` is always imported,
    ``domains`` (custom op domains) as well."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    opsets = [helper.make_opsetid(domain, 1) for domain in ("com.microsoft", *domains)]
    opsets.insert(0, helper.make_opsetid("", opset))
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def const(name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def image(name: str, shape: list[int | str]) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def np_const(name: str, value: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(value, name)


class FlatModel:
    """Build a one-subgraph TFLite model with the schema's object API."""

    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.s = schema
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty buffer
        self.tensors: list[Any] = []
        self.ops: list[Any] = []
        self.codes: list[Any] = []

    def tensor(
        self,
        name: str,
        shape: tuple[int, ...],
        data: np.ndarray | None = None,
        variable: bool = False,
    ) -> int:
        """Add a tensor: a constant when ``data`` is given, a state when ``variable``."""
        tensor = self.s.TensorT()
        tensor.name, tensor.shape = name, list(shape)
        tensor.isVariable = variable
        dtype = np.float32 if data is None else data.dtype
        tensor.type = {
            np.dtype(np.float32): self.s.TensorType.FLOAT32,
            np.dtype(np.int8): self.s.TensorType.INT8,
            np.dtype(np.int32): self.s.TensorType.INT32,
        }[np.dtype(dtype)]
        tensor.buffer = 0
        if data is not None:
            buffer = self.s.BufferT()
            buffer.data = list(data.astype(dtype).tobytes())
            self.buffers.append(buffer)
            tensor.buffer = len(self.buffers) - 1
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def op(
        self,
        builtin: int,
        inputs: list[int],
        outputs: list[int],
        options: tuple[int, Any] | None = None,
        custom: str | None = None,
    ) -> None:
        code = self.s.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        if custom is not None:
            code.customCode = custom
        self.codes.append(code)
        op = self.s.OperatorT()
        op.opcodeIndex = len(self.codes) - 1
        op.inputs, op.outputs = inputs, outputs
        if options is not None:
            op.builtinOptionsType, op.builtinOptions = options
        self.ops.append(op)

    def save(self, path: Path) -> Path:
        import flatbuffers

        graph = self.s.SubGraphT()
        graph.tensors, graph.operators = self.tensors, self.ops
        graph.inputs, graph.outputs = [0], [len(self.tensors) - 1]
        model = self.s.ModelT()
        model.version, model.subgraphs = 3, [graph]
        model.buffers, model.operatorCodes = self.buffers, self.codes
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        path.write_bytes(bytes(builder.Output()))
        return path


def weights(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return np.ones(shape, dtype=dtype)

