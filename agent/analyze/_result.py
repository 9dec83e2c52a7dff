"""Result types of :mod:`agent.analyze` and the helpers both graph readers share."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared.schema import MacsCoverage

logger = logging.getLogger(__name__)

CONVENTION = (
    "edgemeter-macs-v1: MACs of conv/deconv/gemm/matmul/fully-connected, einsum, recurrent cells "
    "and attention, flops=2*macs, per sample (a graph with a fixed batch N is counted and divided "
    "by N), other_ops=1 per output element"
)

CoverageGroup = Literal["counted", "uncounted", "no_macs"]

QUANTIZED_8BIT = frozenset({"int8", "uint8"})
FLOATING = frozenset({"float32", "float16", "bfloat16", "float64"})


@dataclass(frozen=True)
class LayerCount:
    """What one node (ONNX) or operator (TFLite) of the graph contributes."""

    name: str
    op_type: str
    macs: int
    other_ops: int
    params: int
    output_shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "macs": self.macs,
            "other_ops": self.other_ops,
            "params": self.params,
            "output_shape": list(self.output_shape),
        }


@dataclass(frozen=True)
class ModelAnalysis:
    """Counts for one model file, for one sample.

    ``batch`` is the number of samples one call of the model takes as the file fixes it (1 when
    the batch dimension is dynamic); the counts are the graph's divided by it. ``batch_axes`` names
    the batch axis of each graph input (0, or 1 for a recurrent op's time-major input).
    """

    format: Literal["onnx", "tflite"]
    macs: int
    other_ops: int
    params: int
    weight_bytes: int
    precision: str
    layers: tuple[LayerCount, ...]
    macs_coverage: MacsCoverage
    batch: int = 1
    batch_axes: tuple[tuple[str, int], ...] = ()

    @property
    def flops(self) -> int:
        """Floating-point (or integer) operations of the MAC layers: two per MAC."""
        return 2 * self.macs

    def to_json(self, per_layer: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "precision": self.precision,
            "other_ops": self.other_ops,
            "batch": self.batch,
            "convention": CONVENTION,
            "macs_coverage": self.macs_coverage.model_dump(),
        }
        if per_layer:
            out["layers"] = [layer.to_json() for layer in self.layers]
        return out


def build_analysis(
    fmt: Literal["onnx", "tflite"],
    layers: Sequence[LayerCount],
    weight_bytes: int,
    precision: str,
    coverage: MacsCoverage,
) -> ModelAnalysis:
    """Sum the per-layer counts into a :class:`ModelAnalysis`."""
    return ModelAnalysis(
        format=fmt,
        macs=sum(layer.macs for layer in layers),
        other_ops=sum(layer.other_ops for layer in layers),
        params=sum(layer.params for layer in layers),
        weight_bytes=weight_bytes,
        precision=precision,
        layers=tuple(layers),
        macs_coverage=coverage,
    )


def per_sample(analysis: ModelAnalysis, batch: int,
               batch_axes: Iterable[tuple[str, int]]) -> ModelAnalysis:
    """``analysis`` of a graph whose calls take ``batch`` samples, counted per sample.

    Each layer's MACs and other ops are divided by ``batch`` (they grow linearly with it); params
    and weights do not change. A count that does not divide evenly is rounded.
    """
    axes = tuple(batch_axes)
    if batch <= 1:
        return replace(analysis, batch=1, batch_axes=axes)
    layers = tuple(
        replace(layer, macs=round(layer.macs / batch), other_ops=round(layer.other_ops / batch))
        for layer in analysis.layers
    )
    return replace(
        analysis, layers=layers, macs=sum(layer.macs for layer in layers),
        other_ops=sum(layer.other_ops for layer in layers), batch=batch, batch_axes=axes,
    )


class CoverageTally:
    """Count the nodes of each op type in the group it falls in (see :class:`MacsCoverage`)."""

    def __init__(self) -> None:
        self._groups: dict[CoverageGroup, Counter[str]] = {
            "counted": Counter(),
            "uncounted": Counter(),
            "no_macs": Counter(),
        }

    def add(self, op_type: str, group: CoverageGroup) -> None:
        self._groups[group][op_type] += 1

    def build(self) -> MacsCoverage:
        def ordered(counter: Counter[str]) -> dict[str, int]:
            return dict(sorted(counter.items()))

        return MacsCoverage(
            counted=ordered(self._groups["counted"]),
            uncounted=ordered(self._groups["uncounted"]),
            no_macs=ordered(self._groups["no_macs"]),
        )


def numel(shape: Iterable[int]) -> int:
    """Number of elements of a tensor of ``shape`` (1 for a scalar)."""
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def op_precision(weight_dtype: str, activation_dtype: str) -> str:
    """Label the arithmetic of one MAC op from the dtypes of its weight and its input.

    Both 8-bit integers: ``int8`` (``uint8`` only when both are uint8, as in legacy TFLite).
    Integer weights with float activations: ``hybrid`` (dynamic-range quantization).
    float16 weights with float32 activations: ``float16`` (float16 weight quantization).
    Same float type on both sides: that type. Anything else (16x8, int4, ...): ``mixed``.
    """
    if weight_dtype in QUANTIZED_8BIT and activation_dtype in QUANTIZED_8BIT:
        if weight_dtype == activation_dtype == "uint8":
            return "uint8"
        return "int8"
    if weight_dtype in QUANTIZED_8BIT and activation_dtype in FLOATING:
        return "hybrid"
    if weight_dtype == "float16" and activation_dtype in {"float16", "float32"}:
        return "float16"
    if weight_dtype == activation_dtype and weight_dtype in FLOATING:
        return weight_dtype
    return "mixed"


def model_precision(per_op: Iterable[str], fallback: str) -> str:
    """Combine per-op labels: one label wins; float plus hybrid is hybrid; else mixed."""
    labels = set(per_op)
    if not labels:
        return fallback
    if len(labels) == 1:
        return next(iter(labels))
    if "hybrid" in labels and labels <= {"hybrid", "float32", "float16"}:
        return "hybrid"
    return "mixed"
