"""Percentiles and MLPerf early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from agent.stats import early_stop_estimate_ms, early_stop_min_queries, summarize_ms
from shared.schema import Scenario


def test_early_stopping_minimum_query_counts_match_mlperf_loadgen() -> None:
    # LoadGen asks for 64 queries before it gives a p90 estimate, and 662 for p99.
    assert early_stop_min_queries(0.90) == 64
    assert early_stop_min_queries(0.99) == 662


def test_too_few_queries_give_no_early_stopping_estimate() -> None:
    assert early_stop_estimate_ms(np.arange(63, dtype=float), 0.90) is None
    assert early_stop_estimate_ms(np.arange(64, dtype=float), 0.90) is not None


@pytest.mark.parametrize("n", [64, 500, 10_000])
def test_early_stopping_estimate_is_never_below_the_percentile(n: int) -> None:
    lat_ns = np.random.default_rng(n).lognormal(14, 0.3, size=n)
    summary = summarize_ms(lat_ns, (0.90,))
    assert summary.p90_early_stop is not None
    assert summary.p90_early_stop >= summary.p90


def test_summary_takes_loadgens_sorted_n_times_p_where_it_is_whole() -> None:
    # LoadGen (loadgen/results.cc): sample_latencies[sample_count * percentile], 0-based
    summary = summarize_ms(np.arange(1, 101, dtype=float) * 1e6)
    assert (summary.p50, summary.p90, summary.p99, summary.max) == (51.0, 91.0, 100.0, 100.0)
    assert summary.count == 100
    odd = summarize_ms(np.arange(1, 102, dtype=float) * 1e6)  # n * p not whole: truncated
    assert (odd.p50, odd.p90, odd.p99) == (51.0, 91.0, 100.0)


def test_single_stream_reports_loadgens_p99_estimate_beside_p90() -> None:
    from shared.mlperf_rules import load_rules

    pcts = load_rules().reported_percentiles(Scenario.SINGLE_STREAM)
    assert pcts == (0.90, 0.99)
    lat_ns = np.random.default_rng(1).lognormal(14, 0.3, size=1000)
    summary = summarize_ms(lat_ns, pcts)
    assert summary.p90_early_stop is not None and summary.p99_early_stop is not None
    assert summary.p99_early_stop >= summary.p99
    short = summarize_ms(lat_ns[:200], pcts)  # p99 needs 662 queries: no estimate, not invalid
    assert short.p90_early_stop is not None and short.p99_early_stop is None



def _loadgen_odds(h: int, t: int, p: float) -> float:
    """LoadGen's ``odds(h, t, p, 0)``: P(at most t of h + t queries over latency), each over with
    probability 1 - p (early_stopping.cc's BetaRegularized[p, h, 1 + t]), summed exactly."""
    import math

    n, q = h + t, 1.0 - p
    terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
             + k * math.log(q) + (n - k) * math.log(p) for k in range(t + 1)]
    top = max(terms)
    return math.exp(top) * sum(math.exp(x - top) for x in terms)


def _loadgen_min_passing(t: int, p: float, c: float = 0.99) -> int:
    """LoadGen's MinPassingQueriesFinder: the least h with odds(h, t, p) < 1 - c."""
    lo, hi = 1, 1
    while _loadgen_odds(hi, t, p) >= 1 - c:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _loadgen_odds(mid, t, p) < 1 - c:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _loadgen_estimate(sorted_ns: list[int], p: float) -> int | None:
    """results.cc, PerformanceSummary::EarlyStopping, SingleStream: the loop over t, then
    ``sample_latencies[queries_issued - t]``."""
    n = len(sorted_ns)
    t = 1
    if n < _loadgen_min_passing(1, p) + 1:
        return None
    for i in range(2, n + 1):
        if n < _loadgen_min_passing(i, p) + i:
            t = i - 1
            break
    return sorted_ns[n - t]


@pytest.mark.parametrize(("n", "pct"), [(64, 0.90), (65, 0.90), (300, 0.90), (1000, 0.90),
                                         (662, 0.99), (1000, 0.99), (1500, 0.99)])
def test_early_stopping_estimates_are_loadgens_to_the_nanosecond(n: int, pct: float) -> None:
    lat_ns = sorted(int(v) for v in np.random.default_rng(n).lognormal(13, 0.4, size=n))
    summary = summarize_ms(np.asarray(lat_ns), (pct,))
    got = summary.p90_early_stop if pct == 0.90 else summary.p99_early_stop
    expected = _loadgen_estimate(lat_ns, pct)
    assert expected is not None and got is not None
    assert round(got * 1e6) == expected
    assert early_stop_min_queries(pct) == _loadgen_min_passing(1, pct) + 1
