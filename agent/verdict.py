"""A run's verdict from its measured data, by MLPerf LoadGen's rules, and its one-line wording.

What makes a run INVALID is what LoadGen judges (``loadgen/results.cc``, ``LogSummary``): the
minimum duration and query count (for the ``mlperf`` profile, LoadGen's own), the early-stopping
estimate's minimum query count, and in the server scenario the latency bound (the p99 under it and
the early-stopping test on over-bound queries) and the completed rate against the scheduled one.
edgemeter adds what a measurement of the device needs: no throttling during the run, and usable
power readings when energy is measured.

Throughput stability is a verdict of its own (:attr:`Stability.stable`, with the windows' CV):
shown beside validity and warned about, it never makes a run invalid; a server run's Poisson
arrivals are not judged by it (windows of a hundred arrivals vary by about 9 % on their own).
A run below its profile's minimums (``--iterations``, a short ``--duration-s``) is *custom*, so
labelled, and never "valid for" that profile. Use::

    stability = judge_stability(timed, scenario, warmup_iterations, warmup_settled)
    validity = judge(settings, rules, timed, summary, stability, system, energy, warnings)
    print(verdict_line(validity, profile))
"""

from __future__ import annotations

import itertools

import numpy as np

from agent.config import BenchSettings
from agent.scenarios import Timed
from agent.stats import coefficient_of_variation, early_stop_min_queries, latency_bound_check
from shared.mlperf_rules import Rules
from shared.schema import (
    EnergyReport,
    LatencyBoundCheck,
    LatencySummary,
    Scenario,
    ServerQps,
    Stability,
    StabilityWindow,
    SystemState,
    Validity,
)

UNSTABLE_CV = 0.10
"""Throughput CV between windows above which a run is called unstable (a warning)."""
MIN_POWER_COVERAGE = 0.9
MIN_STABILITY_WINDOW_NS = 1_000_000_000
"""Stability is judged only when each window lasts at least this long (a timed phase of 5 s or
more): windows of a few hundred milliseconds on a shared machine measure scheduler noise."""
STABILITY_WINDOWS = 5


# stability ------------------------------------------------------------------------------------


def windows(timed: Timed, samples_per_query: float,
            count: int = STABILITY_WINDOWS) -> list[StabilityWindow]:
    """Queries, throughput and median latency in ``count`` equal windows of the timed phase."""
    if len(timed.starts_ns) < count * 2:
        return []
    span = max(int(timed.starts_ns[-1]) + 1, 1)
    edges = np.linspace(0, span, count + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        mask = (timed.starts_ns >= lo) & (timed.starts_ns < hi)
        queries = int(mask.sum())
        if queries == 0:
            continue
        out.append(StabilityWindow(
            start_s=float(lo / 1e9), queries=queries,
            throughput_sps=queries * samples_per_query / ((hi - lo) / 1e9),
            p50_ms=float(np.median(timed.latencies_ns[mask]) / 1e6),
        ))
    return out


def judge_stability(timed: Timed, scenario: Scenario, warmup_iterations: int,
                    warmup_settled: bool) -> Stability:
    """The windows, their CVs and the ``stable`` verdict (null for server runs and short ones)."""
    found = windows(timed, timed.samples / max(len(timed.latencies_ns), 1))
    cv = coefficient_of_variation([w.throughput_sps for w in found])
    judged = (scenario != Scenario.SERVER and cv is not None
              and timed.wall_ns >= STABILITY_WINDOWS * MIN_STABILITY_WINDOW_NS)
    return Stability(
        warmup_iterations=warmup_iterations, warmup_settled=warmup_settled, windows=found,
        throughput_cv=cv, p50_cv=coefficient_of_variation([w.p50_ms for w in found]),
        stable=(cv is not None and cv <= UNSTABLE_CV) if judged else None,
        cv_limit=UNSTABLE_CV if judged else None,
    )


def stability_warnings(stability: Stability) -> list[str]:
    """What the stability verdict warns about (it never makes a run invalid)."""
    out = []
    if stability.stable is False and stability.throughput_cv is not None:
        out.append(f"unstable: throughput varies {stability.throughput_cv:.0%} between windows "
                   f"(limit {UNSTABLE_CV:.0%}); the machine's speed shifted during the run")
    if not stability.warmup_settled:
        out.append("warm-up did not settle within its time limit")
    return out


# minimums -------------------------------------------------------------------------------------


def custom_label(settings: BenchSettings, rules: Rules, wall_ns: int, queries: int) -> str | None:
    """``"custom: below the standard profile's 10 s / 100 queries"`` for a run short of its
    (non-mlperf) profile's minimums; None when it met them or the profile is ``mlperf`` (whose
    minimums are LoadGen's and make a short run invalid instead)."""
    if rules.profile_rule(settings.profile).mlperf:
        return None
    min_s = rules.min_duration_s(settings.profile, settings.scenario)
    min_queries = rules.min_query_count(settings.profile, settings.scenario)
    if wall_ns / 1e9 >= min_s and queries >= min_queries:
        return None
    return f"custom: below the {settings.profile} profile's {min_s:g} s / {min_queries} queries"


def minimum_reasons(settings: BenchSettings, rules: Rules, summary: LatencySummary,
                    wall_ns: int) -> list[str]:
    """LoadGen's minimums: early stopping's query count, and the mlperf profile's duration and
    queries."""
    reasons: list[str] = []
    scenario = settings.scenario
    estimated = () if scenario == Scenario.SERVER else rules.early_stop_percentiles(scenario)
    for pct in estimated:
        need = early_stop_min_queries(pct, rules.early_stopping.confidence)
        if summary.count < need:
            reasons.append(f"too few queries: {summary.count} < {need} needed for the "
                           f"early-stopping p{round(pct * 100)} estimate")
    if rules.profile_rule(settings.profile).mlperf:
        min_s = rules.min_duration_s(settings.profile, scenario)
        min_queries = rules.min_query_count(settings.profile, scenario)
        if wall_ns / 1e9 < min_s:
            reasons.append(f"too short: {wall_ns / 1e9:.1f} s < {min_s:.0f} s (mlperf profile)")
        if summary.count < min_queries:
            reasons.append(f"too few queries: {summary.count} < {min_queries} (mlperf profile)")
    return reasons


# the server scenario --------------------------------------------------------------------------


def server_qps(settings: BenchSettings, rules: Rules, timed: Timed) -> ServerQps | None:
    """LoadGen's scheduled and completed rates of a server run, and whether it kept up."""
    if settings.scenario != Scenario.SERVER or settings.target_qps is None:
        return None
    n = len(timed.starts_ns)
    ratio = rules.scenario[Scenario.SERVER].min_completed_ratio or 0.0
    if n < 2:
        return ServerQps(target_qps=settings.target_qps, scheduled_qps=0.0, completed_qps=0.0,
                         min_ratio=ratio, passed=False)
    last_scheduled_s = max(float(timed.starts_ns.max()), 1.0) / 1e9
    last_done_s = max(float((timed.starts_ns + timed.latencies_ns).max()), 1.0) / 1e9
    scheduled, completed = (n - 1) / last_scheduled_s, (n - 1) / last_done_s
    return ServerQps(target_qps=settings.target_qps, scheduled_qps=scheduled,
                     completed_qps=completed, min_ratio=ratio,
                     passed=completed >= ratio * scheduled)


def server_bound_check(settings: BenchSettings, rules: Rules,
                       timed: Timed) -> LatencyBoundCheck | None:
    if settings.scenario != Scenario.SERVER or settings.latency_bound_ms is None:
        return None
    (percentile,) = rules.early_stop_percentiles(Scenario.SERVER)
    return latency_bound_check(timed.latencies_ns, settings.latency_bound_ms, percentile,
                               rules.early_stopping.confidence)


def server_reasons(settings: BenchSettings, summary: LatencySummary,
                   check: LatencyBoundCheck | None, qps: ServerQps | None = None) -> list[str]:
    """LoadGen's server verdict: the p99 under the bound (its performance constraint), the
    early-stopping test on over-bound queries, and (edgemeter) the completed rate."""
    if settings.scenario != Scenario.SERVER:
        return []
    if check is None:
        return ["a server run is judged against a latency bound: give --latency-bound-ms"]
    reasons = []
    if summary.p99 > check.bound_ms:
        reasons.append(f"server: p99 {summary.p99:.3g} ms is over the latency bound of "
                       f"{check.bound_ms:g} ms (LoadGen's performance constraint): lower "
                       "--target-qps")
    if not check.passed:
        reasons.append(
            f"server: {check.over_bound} of {check.queries} queries over the latency bound of "
            f"{check.bound_ms:g} ms; LoadGen's early-stopping test for "
            f"p{check.percentile * 100:g} fails (it would need at least {check.queries_needed} "
            "queries, every further one under the bound)")
    if qps is not None and not qps.passed:
        reasons.append(
            f"server: completed {qps.completed_qps:.1f} queries/s, under {qps.min_ratio:.0%} of "
            f"the {qps.scheduled_qps:.1f}/s scheduled (target {qps.target_qps:g}): the device "
            "did not keep up; lower --target-qps")
    return reasons


# the verdict ----------------------------------------------------------------------------------


def validity_reasons(
    settings: BenchSettings,
    rules: Rules,
    summary: LatencySummary,
    wall_ns: int,
    system: SystemState,
    energy: EnergyReport | None,
    latency_bound: LatencyBoundCheck | None = None,
    qps: ServerQps | None = None,
) -> list[str]:
    """Every reason the measured data make a run invalid (empty: valid)."""
    reasons = minimum_reasons(settings, rules, summary, wall_ns)
    if system.throttled:
        now = [r for r in system.throttle_reasons if "occurred" not in r]
        if now:
            reasons.append(f"throttling seen: {', '.join(now)}")
    if energy is not None:
        reasons.extend(f"power: {r}" for r in energy.reasons if not energy.valid)
        if energy.coverage is not None and energy.coverage < MIN_POWER_COVERAGE:
            reasons.append(f"power coverage low: {energy.coverage:.0%} < {MIN_POWER_COVERAGE:.0%}")
    reasons.extend(server_reasons(settings, summary, latency_bound, qps))
    return reasons


def judge(settings: BenchSettings, rules: Rules, timed: Timed, summary: LatencySummary,
          stability: Stability, system: SystemState, energy: EnergyReport | None,
          warnings: list[str] | None = None) -> Validity:
    """The run's :class:`Validity`: LoadGen's reasons, the warnings, the custom label."""
    check = server_bound_check(settings, rules, timed)
    qps = server_qps(settings, rules, timed)
    reasons = validity_reasons(settings, rules, summary, timed.wall_ns, system, energy, check, qps)
    custom = custom_label(settings, rules, timed.wall_ns, summary.count)
    return Validity(
        valid=not reasons,
        reasons=reasons,
        warnings=[*stability_warnings(stability), *(warnings or [])],
        mlperf_valid=rules.profile_rule(settings.profile).mlperf and not reasons,
        profile_minimums_met=custom is None,
        custom=custom,
        latency_bound=check,
        server_qps=qps,
    )


def verdict_line(validity: Validity, profile: str | None) -> str:
    """The verdict as ``bench`` prints it; never "VALID for" a profile whose minimums were not
    met."""
    if not validity.valid:
        return "INVALID: " + "; ".join(validity.reasons)
    if validity.mlperf_valid:
        return "VALID (MLPerf LoadGen's minimums met)"
    if validity.custom:
        return f"{validity.custom} (otherwise valid; not MLPerf-valid)"
    return f"VALID for the {profile} profile (not MLPerf-valid: only --profile mlperf can be)"


def stability_line(stability: Stability | None) -> str:
    """The stability verdict beside validity: stable / unstable with the CV, or not judged."""
    if stability is None or stability.throughput_cv is None:
        return "not judged (too few queries for windows)"
    cv = f"throughput CV {stability.throughput_cv:.1%} over {len(stability.windows)} windows"
    if stability.stable is None:
        return f"not judged ({cv}; server arrivals or a run under 5 s)"
    return f"{'stable' if stability.stable else 'UNSTABLE'} ({cv}, limit {UNSTABLE_CV:.0%})"
