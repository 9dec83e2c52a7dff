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


def test_unstable_throughput_invalidates_only_runs_long_enough_to_judge() -> None:
    from agent.runner import stability_reasons
    from shared.schema import Stability

    shaky = Stability(warmup_iterations=10, warmup_settled=True, throughput_cv=0.25)
    assert stability_reasons(shaky, wall_ns=6_000_000_000)[0].startswith("unstable: throughput varies 25%")
    assert stability_reasons(shaky, wall_ns=1_000_000_000) == []
    steady = Stability(warmup_iterations=10, warmup_settled=True, throughput_cv=0.02)
    assert stability_reasons(steady, wall_ns=60_000_000_000) == []
    unsettled = Stability(warmup_iterations=10, warmup_settled=False)
    assert stability_reasons(unsettled, wall_ns=1) == ["warm-up did not settle within its time limit"]
