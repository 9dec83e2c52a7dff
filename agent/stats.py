"""Latency statistics: LoadGen's percentiles and its early-stopping estimate.

Percentiles take LoadGen's index (``sorted[int(n * q)]``, :func:`shared.latency.percentile_index`),
so the same latencies give LoadGen's numbers exactly.

Early stopping (MLPerf LoadGen, ``loadgen/early_stopping.cc`` and ``results.cc``): with ``n``
queries of which ``t`` were slower than the estimate, the estimate is accepted when seeing at most
``t`` over-latency queries in ``n`` would be unlikely (probability <= 1 - confidence, 0.01) if the
true over-latency rate were ``1 - percentile``. The conservative estimate is the ``t``-th highest
latency for the largest such ``t`` (LoadGen's ``sample_latencies[n - t]``, ascending); fewer
queries than the minimum (64 for p90, 662 for p99) give
no estimate. That is ``t = max{i >= 1 : BinomialCDF(i; n, 1 - percentile) <= 0.01}``, and the
minimum query count is the smallest ``n`` for which ``i = 1`` passes. The confidence is LoadGen's,
read from ``shared/mlperf_rules.toml`` with its citation.
"""

from __future__ import annotations

import math

import numpy as np

from shared.latency import percentile as loadgen_percentile
from shared.mlperf_rules import load_rules
from shared.schema import LatencyBoundCheck, LatencySummary


def _confidence(given: float | None) -> float:
    return load_rules().early_stopping.confidence if given is None else given


def _log_binom_cdf(n: int, q: float, k_max: int) -> np.ndarray:
    """log P(X <= k) for k = 0..k_max, X ~ Binomial(n, q)."""
    k = np.arange(k_max, dtype=np.float64)
    # pmf(k + 1) / pmf(k) = (n - k) / (k + 1) * q / (1 - q), summed in logs (vectorised)
    steps = np.log(n - k) - np.log(k + 1) + (math.log(q) - math.log1p(-q))
    log_pmf = np.concatenate(([n * math.log1p(-q)], n * math.log1p(-q) + np.cumsum(steps)))
    return np.logaddexp.accumulate(log_pmf)


def early_stop_min_queries(percentile: float, confidence: float | None = None) -> int:
    """Smallest query count for which early stopping can give an estimate of ``percentile``."""
    confidence = _confidence(confidence)
    q = 1.0 - percentile
    n = 1
    while True:
        if _log_binom_cdf(n, q, 1)[1] <= math.log(1.0 - confidence):
            return n
        n += 1


def early_stop_estimate_ms(
    sorted_ms: np.ndarray, percentile: float, confidence: float | None = None
) -> float | None:
    """Conservative estimate of ``percentile`` from ascending latencies, or None if too few."""
    confidence = _confidence(confidence)
    n = len(sorted_ms)
    q = 1.0 - percentile
    k_max = min(n, int(n * q + 1))
    log_cdf = _log_binom_cdf(n, q, k_max)
    passing = np.nonzero(log_cdf[1:] <= math.log(1.0 - confidence))[0]
    if len(passing) == 0:
        return None
    t = int(passing[-1]) + 1
    return float(sorted_ms[n - t])


def summarize_ms(
    latencies_ns: np.ndarray,
    early_stop_percentiles: tuple[float, ...] = (),
    confidence: float | None = None,
) -> LatencySummary:
    """Summary of per-query latencies (nanoseconds in, milliseconds out)."""
    if len(latencies_ns) == 0:
        raise ValueError("no latencies to summarize")
    ms = np.sort(np.asarray(latencies_ns, dtype=np.float64)) / 1e6
    extra: dict[str, float | None] = {}
    for pct in early_stop_percentiles:
        extra[f"p{round(pct * 100)}_early_stop"] = early_stop_estimate_ms(ms, pct, confidence)
    return LatencySummary(
        p50=loadgen_percentile(ms, 0.50),
        p90=loadgen_percentile(ms, 0.90),
        p95=loadgen_percentile(ms, 0.95),
        p99=loadgen_percentile(ms, 0.99),
        p999=loadgen_percentile(ms, 0.999),
        mean=float(ms.mean()),
        std=float(ms.std()),
        min=float(ms[0]),
        max=float(ms[-1]),
        count=len(ms),
        **extra,
    )


def coefficient_of_variation(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    return float(arr.std(ddof=1) / mean) if mean > 0 else None


def _passes_over_bound(n: int, over: int, percentile: float, confidence: float) -> bool:
    """LoadGen's server test: P(at most ``over`` of ``n`` over the bound) < 1 - confidence."""
    return bool(_log_binom_cdf(n, 1.0 - percentile, over)[over] < math.log(1.0 - confidence))


def latency_bound_check(
    latencies_ns: np.ndarray, bound_ms: float, percentile: float, confidence: float | None = None
) -> LatencyBoundCheck:
    """MLPerf LoadGen's early-stopping test of a server run against its latency bound.

    ``t`` queries slower than the bound out of ``n`` pass when seeing at most ``t`` would be
    unlikely had the true over-bound rate been ``1 - percentile`` (LoadGen ``results.cc``, Server
    case, with ``early_stopping.cc``'s binomial odds). A failing run reports how many queries it
    would need, if every further one met the bound (LoadGen's "would need to run at least ...").
    """
    confidence = _confidence(confidence)
    ms = np.sort(np.asarray(latencies_ns, dtype=np.float64)) / 1e6
    n = len(ms)
    over = int(np.count_nonzero(ms > bound_ms))
    passed = n > 0 and _passes_over_bound(n, over, percentile, confidence)
    needed = None
    if not passed:
        lo, hi = max(n, over + 1), max(2 * n, over + 1)
        while not _passes_over_bound(hi, over, percentile, confidence):
            lo, hi = hi, hi * 2
        while lo < hi:  # smallest passing count in [lo, hi]
            mid = (lo + hi) // 2
            if _passes_over_bound(mid, over, percentile, confidence):
                hi = mid
            else:
                lo = mid + 1
        needed = lo
    return LatencyBoundCheck(
        bound_ms=bound_ms,
        percentile=percentile,
        queries=n,
        over_bound=over,
        passed=passed,
        queries_needed=needed,
        early_stop_ms=early_stop_estimate_ms(ms, percentile, confidence) if n else None,
    )
