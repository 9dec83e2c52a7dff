"""Count MACs, other operations, parameters and weight bytes of a model from its graph alone.

Nothing is run: ONNX shapes come from ``onnx.shape_inference`` (helped by folding the small
shape-computing sub-graphs, such as ``Shape -> Gather -> Concat -> Resize``, into constants) and
TFLite shapes from the tensors stored in the flatbuffer. Only when graph inference still leaves a
MAC op's shapes unknown does the ONNX reader run onnxruntime once on zeros to read shapes.

Convention (``edgemeter-macs-v1``, the ``convention`` key of the JSON output)
-------------------------------------------------------------------------------
* **MACs** are the multiply-accumulates of the ops that multiply and accumulate, for one sample
  (a batch the file fixes is counted whole and divided by it: the first input of rank 2 or more
  holds the batch on axis 0, or 1 when it is only a time-major recurrent op's sequence, and a
  dimension counts as the batch when every output carries it too):

  - ONNX ``Conv``, ``ConvTranspose``, ``DeformConv``, ``Gemm``, ``MatMul``, ``Einsum``,
    ``LSTM``, ``GRU``, ``RNN``, ``Attention`` and the QOperator forms ``QLinearConv``,
    ``QLinearMatMul``, ``ConvInteger``, ``MatMulInteger`` (and ORT's ``com.microsoft``
    ``FusedConv``, ``NhwcConv``, ``NhwcFusedConv``, ``QLinearConv``, ``FusedGemm``,
    ``FusedMatMul``, ``TransposeMatMul``, ``MatMulInteger16``, ``QGemm``,
    ``DynamicQuantizeMatMul``, ``MatMulIntegerToFloat``, ``DynamicQuantizeLSTM``,
    ``Attention``, ``QAttention``, ``MultiHeadAttention``);
  - TFLite ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``TRANSPOSE_CONV``, ``FULLY_CONNECTED``,
    ``BATCH_MATMUL``, ``CONV_3D``, ``CONV_3D_TRANSPOSE``, ``LSTM``,
    ``UNIDIRECTIONAL_SEQUENCE_LSTM``, ``BIDIRECTIONAL_SEQUENCE_LSTM``, ``RNN``,
    ``UNIDIRECTIONAL_SEQUENCE_RNN``, ``BIDIRECTIONAL_SEQUENCE_RNN``, ``SVDF``.

  Conv (grouped and depthwise included): output elements x (input channels per group x kernel
  area). Transposed conv: input elements x (output channels per group x kernel area). Gemm,
  MatMul, fully-connected and batched matmul: output elements x the reduced dimension K.
  Einsum: the product of all distinct index sizes (two operands). LSTM / GRU / RNN (4 / 3 / 1
  gates): directions x steps x batch x gates x hidden x (input size + hidden), the input and
  the recurrent matmul of every time step. Attention: QKV projections (when the op holds
  them) + Q K^T + A V (+ the output projection, which every supported op leaves to a separate
  MatMul); heads split the hidden size, so the head count does not multiply it. Each op's
  formula and its edge cases are in :mod:`agent.analyze.onnx_ops` and
  :mod:`agent.analyze.tflite_graph`.
* **Coverage** (``macs_coverage``): every op type of the graph, with its node count, is
  ``counted``, ``no_macs`` (element-wise, logic, memory and layout ops: no MACs by convention)
  or ``uncounted`` (it may multiply-accumulate but has no formula here: a custom op, a loop, an
  FFT, ...). An uncounted op adds nothing to ``macs``, which is then a lower bound, and
  ``edgemeter analyze`` names it on stderr. Only op types listed as ``no_macs`` are ever taken
  for zero, so an op the analyzer has never heard of is reported, not hidden.
* **FLOPs** = 2 x MACs (nothing else is added).
* **other_ops** counts everything else that computes, one op per output element: each bias add
  and each fused activation of a MAC op, and each element-wise, activation, pooling,
  normalization, softmax, resize or reduction node. Nodes that only move, reshape or re-type
  data count zero: Reshape, Transpose, Concat, Slice, Gather, Pad, Cast, Shape, ... and the
  quantization nodes themselves (QuantizeLinear / DequantizeLinear, TFLite QUANTIZE /
  DEQUANTIZE), so a QDQ graph counts each conv exactly once, like its fused int8 kernel.
* **Batch**: a dynamic (symbolic or unset) first input dimension counts as 1. Other dynamic
  dimensions are not guessed: a graph whose MAC shapes depend on them is refused.
* **Params** are the elements of constant tensors (initializers, Constant nodes, TFLite buffers)
  used as weights: the weight and bias inputs of MAC ops (for recurrent cells every weight,
  recurrent weight, bias, peephole and projection; for Einsum every constant operand), plus
  non-scalar constant inputs of Add, Sub, Mul, Div, PRelu (and their QOperator forms
  QLinearAdd, QLinearMul) and the normalization ops (an unfolded batch norm, a learned scale).
  A constant is found through the nodes that only re-type it: DequantizeLinear, QuantizeLinear,
  Cast, Identity, Transpose, Reshape, (Un)Squeeze, TFLite DEQUANTIZE. So in QDQ ONNX an int8
  initializer followed by DequantizeLinear counts once, a float32 initializer followed by
  QuantizeLinear + DequantizeLinear also once, and the scales and zero points never count.
  Shape, index and axis constants (Reshape targets, Slice bounds, ...) are not params. A
  constant shared by several ops counts once, in the first layer that uses it.
* **Weight bytes** are the bytes of those same param tensors as stored in the file (int8: 1 per
  element, float32: 4, int4: half), so a QDQ model with float32 initializers reports float32
  bytes.
* **Precision** labels each MAC op from its weight dtype (as quantized, when a Q/DQ pair sits in
  between) and its input activation dtype: ``int8`` (8-bit integer weights and activations),
  ``uint8`` (both uint8), ``float32``, ``float16`` (float16 weights), ``hybrid`` (integer weights,
  float activations) or ``mixed``. The model's precision is the one label all ops share;
  float ops next to hybrid ones make ``hybrid``; any other mix is ``mixed``.

Public surface: :class:`ModelAnalysis`, :class:`LayerCount`, :func:`detect_format`,
:func:`analyze_model` and :data:`CONVENTION`. ``onnx`` and the LiteRT flatbuffer schema are
imported on first use only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from agent.analyze._result import CONVENTION, LayerCount, ModelAnalysis
from agent.errors import ModelError as ModelError  # re-exported for callers of analyze_model

__all__ = ["CONVENTION", "LayerCount", "ModelAnalysis", "ModelError", "analyze_model", "detect_format"]

logger = logging.getLogger(__name__)

_TFLITE_IDENTIFIER = b"TFL3"
_ONNX_SUFFIXES = frozenset({".onnx"})
_TFLITE_SUFFIXES = frozenset({".tflite", ".lite"})


def detect_format(path: Path) -> Literal["onnx", "tflite"]:
    """Say whether ``path`` is a TFLite or an ONNX model: magic bytes first, then the suffix.

    Raises :class:`ModelError` when the file is missing, unreadable or of no known format.
    """
    head = _read_head(path)
    if head[4:8] == _TFLITE_IDENTIFIER:
        return "tflite"
    suffix = path.suffix.lower()
    if suffix in _ONNX_SUFFIXES:
        return "onnx"
    if suffix in _TFLITE_SUFFIXES:
        return "tflite"
    # An ONNX ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08.
    if head[:1] == b"\x08":
        return "onnx"
    raise ModelError(
        f"{path}: unknown model format (no TFLite 'TFL3' identifier and the suffix is neither "
        f".onnx nor .tflite)"
    )


def analyze_model(path: Path) -> ModelAnalysis:
    """Count MACs, other ops, params and weight bytes of the model at ``path``, per sample.

    A dynamic batch is counted as 1; a batch the file fixes (N samples per call, see
    :attr:`ModelAnalysis.batch`) is counted for the whole graph and divided by N.

    Raises :class:`ModelError` for a missing, corrupt or unsupported file and
    :class:`~shared.errors.MissingExtraError` when the reader's library is not installed.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "onnx":
        from agent.analyze.onnx_graph import analyze_onnx

        return analyze_onnx(path)
    from agent.analyze.tflite_graph import analyze_tflite

    return analyze_tflite(path)


def _read_head(path: Path) -> bytes:
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelError(f"{path}: not a regular file (give the path of a .onnx or .tflite model)")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file ({err.strerror or err})") from err
    if not head:
        raise ModelError(f"{path}: the model file is empty")
    return head
