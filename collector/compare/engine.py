"""The comparison engine: pure functions from stored runs and baselines to comparison rows.

Nothing here reads a database, a file or the clock: :func:`compare` takes the edge runs, the
baselines (measured runs and cited rows), the hardware catalogue's entries and the cost settings,
and returns one validated :class:`ComparisonRow` per (edge run, matching baseline). The formulas
are documented in ``docs/compare.md``; the cost ones live in :mod:`collector.compare.cost`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from collector.compare.cost import (
    CostSettings,
    break_even_inferences,
    cloud_cost_per_million_usd,
    cost_per_million_usd,
)
from collector.compare.matching import Baseline, MatchRule, match_rule, scenario_of
from collector.records import CitedBaseline
from shared.catalogue import HardwareEntry
from shared.schema import BenchmarkResult, Fidelity, FidelityDigest, OutputFingerprint

logger = logging.getLogger(__name__)

PowerBasis = Literal["measured", "estimated", "cited", "tdp-assumed", "per-core-share"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaselineRef(_Row):
    """Which baseline a row compares with: a stored run (``run_id``) or a citation (``source``)."""

    kind: Literal["measured", "cited"]
    run_id: str | None = None
    source: str | None = None
    baseline_id: str | None = Field(None, description="stable id of a cited row")
    label: str = Field(description="device id of a measured run, hardware in words of a cited one")
    hardware_key: str | None = None
    model: str | None = Field(None, description="model file name (measured) or network (cited)")
    network: str | None = None


class Ratios(_Row):
    """Edge divided by baseline; ``null`` when either side lacks the figure."""

    latency_p50: float | None = None
    latency_p90: float | None = None
    throughput: float | None = None
    joules_per_inference: float | None = None


class CostPair(_Row):
    """Cost per million inferences in USD: owning each device, and renting the baseline's."""

    edge: float | None = None
    baseline: float | None = None
    baseline_cloud: float | None = None


class BreakEven(_Row):
    """Inferences after which buying the edge device is cheaper than renting the baseline."""

    inferences: float | None = None
    days: float | None = Field(None, description="at the edge run's throughput and duty cycle")
    reason: str | None = Field(None, description="why there is no break-even, when null")


class FidelityComparison(_Row):
    """How closely the edge outputs follow the baseline's on the same seeded inputs."""

    top1_agreement: float | None = Field(None, description="fraction with the same top-1 index")
    mae: float | None = Field(None, description="mean absolute error over all output values")
    cosine: float | None = Field(None, description="mean cosine similarity (values, else sketch)")
    pairs: int = Field(0, description="(output, input) fingerprint pairs compared")
    reason: str | None = Field(None, description="why nothing was compared, when pairs is 0")


class SideMetrics(_Row):
    """One side of a comparison, with every derived figure and where its power came from."""

    label: str
    hardware_key: str | None = None
    hardware: str | None = Field(None, description="catalogue entry name")
    precision: str | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    throughput_sps: float | None = None
    avg_power_w: float | None = None
    power_basis: PowerBasis | None = None
    power_scope: str | None = Field(None, description="what the power covers (energy.scope)")
    joules_per_inference: float | None = None
    inferences_per_joule: float | None = None
    macs: int | None = None
    macs_per_s: float | None = None
    ops_per_s: float | None = Field(None, description="2 x MACs x throughput")
    peak_ops_per_s: float | None = None
    utilisation: float | None = Field(None, description="ops_per_s / peak_ops_per_s")
    weight_bytes: int | None = Field(None, description="model file size, taken as the weights")
    arithmetic_intensity: float | None = Field(
        None, description="ops per byte: 2 x MACs x batch / weight_bytes"
    )
    mem_bandwidth_gbs: float | None = None
    cost_per_million_usd: float | None = None
    cloud_per_million_usd: float | None = None
    cost_reason: str | None = Field(None, description="why cost_per_million_usd is null")
    hardware_share: float | None = Field(
        None, description="share of the catalogue entry's price, cloud rate and TDP charged: the "
        "cores used / the entry's cores when the run used a slice of that machine; null: all"
    )
    share_note: str | None = Field(None, description="which share was charged, in words")


class ComparisonRow(_Row):
    """One edge run against one matching baseline (the JSON ``edgemeter compare --json`` prints)."""

    edge_run_id: str
    edge_device_id: str
    model: str
    network: str | None = None
    baseline: BaselineRef
    match: MatchRule
    scenario: str
    ratios: Ratios
    cost_per_million_usd: CostPair
    break_even: BreakEven
    fidelity: FidelityComparison
    edge_metrics: SideMetrics
    baseline_metrics: SideMetrics
    notes: list[str] = Field(default_factory=list)


def ratio(edge: float | None, baseline: float | None) -> float | None:
    """``edge / baseline``, or ``None`` when either is unknown or the baseline is zero."""
    if edge is None or baseline is None or baseline == 0:
        return None
    return edge / baseline


# ------------------------------------------------------------------------------------ fidelity


def _cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) != len(b) or not a:
        return None
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return None if norm == 0 else dot / norm


def fidelity_agreement(edge: Fidelity | FidelityDigest | None,
                       baseline: Fidelity | FidelityDigest | None) -> FidelityComparison:
    """Top-1 agreement, MAE and cosine similarity between two fingerprint sets.

    Compared only when both have the same seed, input source and output names. Per output and
    input: top-1 from ``top_k[0]``; MAE from ``values`` (pooled over every value); cosine from
    ``values`` when both have them, else from ``sketch`` (over the leading values both sketches
    have: schema v2 sends the first 16 of v1's 64, so a v1 run compares with a v2 one); each
    metric is averaged over the pairs that have what it needs. Schema v2 sends values only for
    outputs of at most 16 elements (rounded to 4 significant digits) unless the run asked for
    ``--full-fidelity``, so MAE of larger outputs is unknown (``null``) for lean runs.
    """
    if edge is None or baseline is None:
        side = "edge run" if edge is None else "baseline"
        return FidelityComparison(reason=f"the {side} has no fidelity fingerprints")
    if edge.seed != baseline.seed:
        return FidelityComparison(reason=f"different seeds ({edge.seed} vs {baseline.seed})")
    if edge.input_source != baseline.input_source:
        return FidelityComparison(
            reason=f"different inputs ({edge.input_source!r} vs {baseline.input_source!r})"
        )
    if set(edge.outputs) != set(baseline.outputs):
        return FidelityComparison(reason="different output names")
    edge_prints, baseline_prints = edge.fingerprints(), baseline.fingerprints()
    pairs: list[tuple[OutputFingerprint, OutputFingerprint]] = []
    for name in sorted(edge_prints):
        pairs.extend(zip(edge_prints[name], baseline_prints[name], strict=False))
    if not pairs:
        return FidelityComparison(reason="no fingerprints to compare")
    top1 = [e.top_k[0] == b.top_k[0] for e, b in pairs if e.top_k and b.top_k]
    abs_errors: list[float] = []
    cosines: list[float] = []
    for e, b in pairs:
        if e.values is not None and b.values is not None and len(e.values) == len(b.values):
            abs_errors.extend(abs(x - y) for x, y in zip(e.values, b.values, strict=True))
            cos = _cosine(e.values, b.values)
        elif e.sketch is not None and b.sketch is not None:
            common = min(len(e.sketch), len(b.sketch))
            cos = _cosine(e.sketch[:common], b.sketch[:common])
        else:
            cos = None
        if cos is not None:
            cosines.append(cos)
    return FidelityComparison(
        top1_agreement=sum(top1) / len(top1) if top1 else None,
        mae=sum(abs_errors) / len(abs_errors) if abs_errors else None,
        cosine=sum(cosines) / len(cosines) if cosines else None,
        pairs=len(pairs),
    )


# ------------------------------------------------------------------------------------- sides


def machine_share(result: BenchmarkResult, entry: HardwareEntry | None) -> tuple[float, str | None]:
    """The share of ``entry`` a run used, and why: cores used (threads x streams, at most the
    host's) / the entry's cores, when the entry states its cores and the host has another count
    (``--hardware xeon-8380-2s`` on a 2-core VM); else 1 (the whole machine, no note). As the
    agent's energy estimate scales idle and TDP, cost scales price, cloud rate and TDP."""
    if entry is None or entry.cores is None:
        return 1.0, None
    host = result.device.cpu_cores
    if host is None or host == entry.cores:
        return 1.0, None
    eff = result.spec.effective
    used = min((eff.threads or host) * (eff.streams or 1), host, entry.cores)
    share = used / entry.cores
    return share, (f"{used} of {entry.key}'s {entry.cores} cores used: {share:.4g} of its price, "
                   "cloud rate and TDP charged")


def _power_of_result(
    result: BenchmarkResult, entry: HardwareEntry | None
) -> tuple[float | None, PowerBasis | None, str | None]:
    energy = result.energy
    if energy is not None and energy.avg_power_w is not None:
        return energy.avg_power_w, ("estimated" if energy.estimated else "measured"), energy.scope.value
    if entry is not None and entry.tdp_w is not None:
        return entry.tdp_w * machine_share(result, entry)[0], "tdp-assumed", "tdp"
    cores = result.runtime.threads or result.device.cpu_cores
    if entry is not None and entry.per_core_w is not None and cores:
        return entry.per_core_w * cores, "per-core-share", "tdp"
    return None, None, None


def _finish_side(
    side: SideMetrics,
    entry: HardwareEntry | None,
    settings: CostSettings,
    *,
    batch: int = 1,
    share: float = 1.0,
) -> SideMetrics:
    """Fill the figures derived from throughput, power, MACs and the catalogue entry; ``share``
    of the entry's price and cloud rate is charged (a slice of the machine)."""
    thr = side.throughput_sps if side.throughput_sps else None
    if side.joules_per_inference is None and side.avg_power_w is not None and thr:
        side.joules_per_inference = side.avg_power_w / thr
    if side.joules_per_inference:
        side.inferences_per_joule = 1.0 / side.joules_per_inference
    if side.macs is not None and thr:
        side.macs_per_s = side.macs * thr
        side.ops_per_s = 2.0 * side.macs * thr
    if side.macs is not None and side.weight_bytes:
        side.arithmetic_intensity = 2.0 * side.macs * batch / side.weight_bytes
    if entry is None:
        side.cost_reason = (
            f"hardware {side.hardware_key!r} is not in the catalogue"
            if side.hardware_key
            else "no hardware key: cost and peak unknown"
        )
        return side
    side.hardware = entry.name
    side.mem_bandwidth_gbs = entry.mem_bandwidth_gbs
    if side.precision is not None:
        side.peak_ops_per_s = entry.peak_ops_per_s(side.precision)
    if side.ops_per_s is not None and side.peak_ops_per_s:
        side.utilisation = side.ops_per_s / side.peak_ops_per_s
    if share != 1.0:
        side.hardware_share = share
    if entry.cloud_usd_per_hour is not None and thr:
        side.cloud_per_million_usd = cloud_cost_per_million_usd(
            entry.cloud_usd_per_hour * share, thr)
    if entry.price_usd is None:
        side.cost_reason = f"no price for {entry.key} in the catalogue"
    elif side.avg_power_w is None:
        side.cost_reason = "no power figure (no energy measured, no TDP in the catalogue)"
    elif not thr:
        side.cost_reason = "no throughput"
    else:
        side.cost_per_million_usd = cost_per_million_usd(
            price_usd=entry.price_usd * share,
            lifetime_years=settings.lifetime_years or entry.lifetime_years,
            duty_cycle=settings.duty_cycle,
            avg_power_w=side.avg_power_w,
            tariff_usd_per_kwh=settings.tariff_usd_per_kwh,
            throughput_sps=thr,
        )
    return side


def side_of_result(
    result: BenchmarkResult, entry: HardwareEntry | None, settings: CostSettings
) -> SideMetrics:
    """Metrics of a stored run; ``entry`` is its ``device.hardware_key`` in the catalogue."""
    power_w, basis, scope = _power_of_result(result, entry)
    energy = result.energy
    side = SideMetrics(
        label=result.device_id,
        hardware_key=result.device.hardware_key,
        precision=result.model.precision,
        latency_p50_ms=result.latency_ms.p50,
        latency_p90_ms=result.latency_ms.p90,
        throughput_sps=result.throughput_sps,
        avg_power_w=power_w,
        power_basis=basis,
        power_scope=scope,
        joules_per_inference=energy.joules_per_inference if energy is not None else None,
        macs=result.model.macs,
        weight_bytes=result.model.size_bytes or None,
    )
    share, note = machine_share(result, entry)
    side.share_note = note
    return _finish_side(side, entry, settings, batch=result.spec.effective.batch, share=share)


def side_of_cited(
    row: CitedBaseline,
    entry: HardwareEntry | None,
    settings: CostSettings,
    *,
    fallback_macs: int | None = None,
) -> SideMetrics:
    """Metrics of a cited row; MACs default to the edge run's (same network) when not cited."""
    power_w: float | None = row.avg_power_w
    basis: PowerBasis | None = "cited" if power_w is not None else None
    if power_w is None and row.joules_per_inference is not None and row.throughput_sps:
        power_w, basis = row.joules_per_inference * row.throughput_sps, "cited"
    scope: str | None = "cited" if basis else None
    if power_w is None and entry is not None and entry.tdp_w is not None:
        power_w, basis, scope = entry.tdp_w, "tdp-assumed", "tdp"
    side = SideMetrics(
        label=row.hardware,
        hardware_key=row.hardware_key,
        precision=row.precision,
        latency_p50_ms=row.latency_p50_ms,
        latency_p90_ms=row.latency_p90_ms,
        throughput_sps=row.throughput_sps,
        avg_power_w=power_w,
        power_basis=basis,
        power_scope=scope,
        joules_per_inference=row.joules_per_inference,
        macs=row.macs if row.macs is not None else fallback_macs,
    )
    return _finish_side(side, entry, settings, batch=row.batch or 1)


# ---------------------------------------------------------------------------------- the rows


def _entry(hardware: Mapping[str, HardwareEntry], key: str | None) -> HardwareEntry | None:
    return hardware.get(key) if key else None


def _break_even(
    edge: SideMetrics,
    base: SideMetrics,
    edge_entry: HardwareEntry | None,
    base_entry: HardwareEntry | None,
    settings: CostSettings,
) -> BreakEven:
    if edge_entry is None or edge_entry.price_usd is None:
        return BreakEven(reason="the edge hardware has no price")
    if base_entry is None or base_entry.cloud_usd_per_hour is None:
        return BreakEven(reason="the baseline hardware has no cloud price")
    if edge.avg_power_w is None or not edge.throughput_sps or not base.throughput_sps:
        return BreakEven(reason="edge power or either throughput is unknown")
    inferences = break_even_inferences(
        edge_price_usd=edge_entry.price_usd,
        edge_avg_power_w=edge.avg_power_w,
        edge_throughput_sps=edge.throughput_sps,
        tariff_usd_per_kwh=settings.tariff_usd_per_kwh,
        cloud_usd_per_hour=base_entry.cloud_usd_per_hour,
        cloud_throughput_sps=base.throughput_sps,
    )
    if inferences is None:
        return BreakEven(reason="renting the baseline costs less per inference than the edge energy")
    days = inferences / (edge.throughput_sps * settings.duty_cycle * 86400.0)
    return BreakEven(inferences=inferences, days=days)


_Side = tuple[HardwareEntry | None, SideMetrics, BaselineRef]
"""A side's catalogue entry, figures, and reference (as a baseline)."""


class _Sides:
    """Each side's figures and reference computed once per :func:`compare` call, not once per
    row: a fleet's compare pairs each run with many baselines (rows share these objects, which
    are read-only by convention). Keyed by object identity; each entry holds its object, so an
    id is never reused while the cache lives."""

    def __init__(self, hardware: Mapping[str, HardwareEntry], settings: CostSettings) -> None:
        self.hardware = hardware
        self.settings = settings
        self._runs: dict[int, tuple[BenchmarkResult, _Side]] = {}
        self._cited: dict[tuple[int, int | None], tuple[CitedBaseline, _Side]] = {}

    def of_result(self, run: BenchmarkResult) -> _Side:
        known = self._runs.get(id(run))
        if known is None:
            entry = _entry(self.hardware, run.device.hardware_key)
            ref = BaselineRef(
                kind="measured",
                run_id=str(run.run_id),
                label=run.device_id,
                hardware_key=run.device.hardware_key,
                model=run.model.name,
                network=run.model.network,
            )
            known = (run, (entry, side_of_result(run, entry, self.settings), ref))
            self._runs[id(run)] = known
        return known[1]

    def of_cited(self, row: CitedBaseline, fallback_macs: int | None) -> _Side:
        key = (id(row), fallback_macs)
        known = self._cited.get(key)
        if known is None:
            entry = _entry(self.hardware, row.hardware_key)
            ref = BaselineRef(
                kind="cited",
                source=row.source,
                baseline_id=row.baseline_id,
                label=row.hardware,
                hardware_key=row.hardware_key,
                model=row.network,
                network=row.network,
            )
            known = (row, (entry, side_of_cited(row, entry, self.settings,
                                                fallback_macs=fallback_macs), ref))
            self._cited[key] = known
        return known[1]


#: The fidelity of every row against a cited baseline (read-only, shared by those rows).
_NO_CITED_FIDELITY = FidelityComparison(reason="cited baselines carry no output fingerprints")


def compare_pair(
    edge: BenchmarkResult,
    baseline: Baseline,
    rule: MatchRule,
    hardware: Mapping[str, HardwareEntry],
    settings: CostSettings,
) -> ComparisonRow:
    """The comparison row of one edge run against one baseline it matches by ``rule``."""
    return _pair(edge, baseline, rule, _Sides(hardware, settings))


def _pair(edge: BenchmarkResult, baseline: Baseline, rule: MatchRule,
          sides: _Sides) -> ComparisonRow:
    notes: list[str] = []
    settings = sides.settings
    edge_entry, edge_side, _ = sides.of_result(edge)
    if isinstance(baseline, CitedBaseline):
        base_entry, base_side, ref = sides.of_cited(baseline, edge.model.macs)
        fidelity = _NO_CITED_FIDELITY
        if baseline.notes:
            notes.append(f"about the cited figures: {baseline.notes}")
        if baseline.macs is None and edge.model.macs is not None:
            notes.append("baseline MACs not cited: the edge run's MACs are used")
    else:
        base_entry, base_side, ref = sides.of_result(baseline)
        fidelity = fidelity_agreement(edge.fidelity, baseline.fidelity)
        if not baseline.validity.valid:
            notes.append("baseline run is marked invalid: " + "; ".join(baseline.validity.reasons))
    if not edge.validity.valid:
        notes.append("edge run is marked invalid: " + "; ".join(edge.validity.reasons))
    for name, side in (("edge", edge_side), ("baseline", base_side)):
        if side.power_basis in ("tdp-assumed", "per-core-share"):
            notes.append(f"{name} power is the catalogue's {side.power_basis} figure, not measured")
        elif side.power_basis == "estimated":
            notes.append(f"{name} power is an estimate ({side.power_scope})")
    return ComparisonRow(
        edge_run_id=str(edge.run_id),
        edge_device_id=edge.device_id,
        model=edge.model.name,
        network=edge.model.network,
        baseline=ref,
        match=rule,
        scenario=scenario_of(edge).value,
        ratios=Ratios(
            latency_p50=ratio(edge_side.latency_p50_ms, base_side.latency_p50_ms),
            latency_p90=ratio(edge_side.latency_p90_ms, base_side.latency_p90_ms),
            throughput=ratio(edge_side.throughput_sps, base_side.throughput_sps),
            joules_per_inference=ratio(
                edge_side.joules_per_inference, base_side.joules_per_inference
            ),
        ),
        cost_per_million_usd=CostPair(
            edge=edge_side.cost_per_million_usd,
            baseline=base_side.cost_per_million_usd,
            baseline_cloud=base_side.cloud_per_million_usd,
        ),
        break_even=_break_even(edge_side, base_side, edge_entry, base_entry, settings),
        fidelity=fidelity,
        edge_metrics=edge_side,
        baseline_metrics=base_side,
        notes=notes,
    )


def compare(
    edge_runs: Iterable[BenchmarkResult],
    baselines: Sequence[Baseline],
    hardware: Mapping[str, HardwareEntry],
    settings: CostSettings | None = None,
) -> list[ComparisonRow]:
    """Every (edge run, matching baseline) row: edge runs in the given order, and for each one
    the ``sha256`` matches first, then ``network`` matches, measured before cited."""
    sides = _Sides(hardware, settings or CostSettings())
    rows: list[ComparisonRow] = []
    for edge in edge_runs:
        matched: list[tuple[int, int, int, Baseline, MatchRule]] = []
        for index, baseline in enumerate(baselines):
            rule = match_rule(edge, baseline)
            if rule is not None:
                kind_rank = 1 if isinstance(baseline, CitedBaseline) else 0
                matched.append((0 if rule == "sha256" else 1, kind_rank, index, baseline, rule))
        matched.sort(key=lambda item: item[:3])
        for *_, baseline, rule in matched:
            rows.append(_pair(edge, baseline, rule, sides))
    logger.debug("compared: %d row(s) from %d baseline(s)", len(rows), len(baselines))
    return rows
