"""Percentiles and MLPerf early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from agent.stats import early_stop_estimate_ms, early_stop_min_queries, summarize_ms


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


def test_summary_uses_nearest_rank_percentiles() -> None:
    summary = summarize_ms(np.arange(1, 101, dtype=float) * 1e6)
    assert (summary.p50, summary.p90, summary.p99, summary.max) == (50.0, 90.0, 99.0, 100.0)
    assert summary.count == 100

