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

