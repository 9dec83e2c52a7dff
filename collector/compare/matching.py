"""Which baselines an edge run is compared with, and by which rule.

A baseline is a stored run whose role is ``datacenter`` or ``hpc`` (kind "measured"), or a published
result (kind "cited", :class:`~collector.records.CitedBaseline`). It matches an edge run of the
same scenario (``spec.effective.scenario``) by, in order of preference:

``sha256``
    the very same model file (measured baselines only: a citation names no file);
``network``
    the same ``ModelInfo.network`` (the int8 TFLite and the float ONNX of one network share it) and,
    when both sides know their MACs per sample, MACs within :data:`MACS_TOLERANCE` of each other.
"""

from __future__ import annotations

from typing import Literal

from collector.records import CitedBaseline
from shared.schema import BenchmarkResult, Role, Scenario

MatchRule = Literal["sha256", "network"]
Baseline = BenchmarkResult | CitedBaseline

MACS_TOLERANCE = 0.02
"""|a - b| <= 2 % of the larger of the two MAC counts"""

BASELINE_ROLES = frozenset({Role.DATACENTER, Role.HPC})


def is_measured_baseline(result: BenchmarkResult) -> bool:
    """A stored run is a baseline when its role is datacenter or hpc."""
    return result.role in BASELINE_ROLES


def scenario_of(run: Baseline) -> Scenario:
    """The scenario that actually ran (the effective one for a measured run)."""
    if isinstance(run, CitedBaseline):
        return run.scenario
    return run.spec.effective.scenario


def macs_agree(a: int | None, b: int | None, tolerance: float = MACS_TOLERANCE) -> bool:
    """True when either count is unknown, or both are within ``tolerance`` of the larger one."""
    if a is None or b is None:
        return True
    return abs(a - b) <= tolerance * max(a, b)


def match_rule(edge: BenchmarkResult, baseline: Baseline) -> MatchRule | None:
    """The rule by which ``baseline`` matches ``edge``, or ``None`` when it does not."""
    if scenario_of(edge) != scenario_of(baseline):
        return None
    network: str | None
    macs: int | None
    if isinstance(baseline, CitedBaseline):
        network, macs = baseline.network, baseline.macs
    else:
        if baseline.run_id == edge.run_id:
            return None
        if baseline.model.sha256 == edge.model.sha256:
            return "sha256"
        network, macs = baseline.model.network, baseline.model.macs
    if edge.model.network is None or network is None or network != edge.model.network:
        return None
    if not macs_agree(edge.model.macs, macs):
        return None
    return "network"
