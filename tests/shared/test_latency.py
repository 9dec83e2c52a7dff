"""The wire's latency histograms: v2 percentiles within the stated 1 % of the exact percentile
(LoadGen's index convention),
runs that round-trip, a size that follows the latencies' spread and not the run's length."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shared import latency
from shared.schema import LatencyHistogram, RawLatencies

QUANTILES = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0]


def _exact_ns(values: np.ndarray, q: float) -> float:
    """LoadGen's percentile: ``sorted[int(n * q)]`` (``loadgen/results.cc``), the last for q = 1."""
    ordered = np.sort(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * q))])


def _synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "lognormal-200us": rng.lognormal(math.log(200_000), 0.3, 50_000),
        "bimodal-cache-miss": np.concatenate([rng.normal(150_000, 5_000, 9_000),
                                              rng.normal(1_200_000, 80_000, 1_000)]),
        "pareto-tail": 80_000 * (1 + rng.pareto(1.5, 20_000)),
        "constant": np.full(1_000, 3_000_000.0),
        "ns-to-an-hour": np.geomspace(1, 3.6e12, 5_000),
        "one": np.array([42_000.0]),
        "three": np.array([5e5, 1e5, 3e6]),
        "integers-ns": rng.integers(30_000, 31_000, 2_000).astype(np.float64),
    }


SYNTHETIC = _synthetic()


def test_percentile_takes_loadgens_index_one_rank_above_nearest_rank_where_n_q_is_whole() -> None:
    values = np.arange(1.0, 101.0)  # n = 100: n * 0.9 = 90 is whole
    assert latency.percentile(values, 0.90) == 91.0  # LoadGen: sorted[90]
    assert float(np.quantile(values, 0.90, method="inverted_cdf")) == 90.0  # nearest rank
    odd = np.arange(1.0, 102.0)  # n = 101: n * 0.9 = 90.9, both rules give sorted[90]
    assert latency.percentile(odd, 0.90) == float(np.quantile(odd, 0.90, method="inverted_cdf"))
    assert latency.percentile(values, 1.0) == 100.0


def test_percentile_matches_loadgens_index_at_every_quantile() -> None:
    values = np.sort(SYNTHETIC["pareto-tail"])
    for q in QUANTILES:
        assert latency.percentile(values, q) == _exact_ns(values, q)


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_v2_percentiles_are_within_the_stated_error_of_the_exact_percentile(name: str) -> None:
    values = SYNTHETIC[name]
    hist = LatencyHistogram.of(values)
    assert hist.rel_error == latency.REL_ERROR == 0.01
    assert hist.count == values.size
    for q in QUANTILES:
        exact = _exact_ns(values, q)
        got = hist.quantile_ms(q) * 1e6
        assert abs(got - exact) <= hist.rel_error * exact * (1 + 1e-9), (q, got, exact)


@pytest.mark.parametrize("rel_error", [0.001, 0.005, 0.02, 0.05])
def test_the_bound_holds_at_other_stated_errors(rel_error: float) -> None:
    values = SYNTHETIC["lognormal-200us"]
    hist = LatencyHistogram.of(values, rel_error)
    for q in QUANTILES:
        exact = _exact_ns(values, q)
        assert abs(hist.quantile_ms(q) * 1e6 - exact) <= rel_error * exact * (1 + 1e-9)


def test_every_latency_reads_back_within_the_bound_of_its_bucket() -> None:
    values = SYNTHETIC["ns-to-an-hour"]
    for value in values:
        index = latency.log_index(value)
        low, high = latency.log_bounds_ns(index)
        assert low < value * (1 + 1e-12) and value <= high * (1 + 1e-12)
        assert abs(latency.log_value_ns(index) - value) <= latency.REL_ERROR * value * (1 + 1e-9)


def test_runs_round_trip_to_the_occupied_buckets() -> None:
    values = SYNTHETIC["bimodal-cache-miss"]
    runs = latency.encode_runs(values)
    idx = np.ceil(np.log(values) / math.log(latency.gamma())).astype(int)
    buckets, counts = np.unique(idx, return_counts=True)
    assert latency.from_runs(runs) == (buckets.tolist(), counts.tolist())
    assert len(runs) >= 2  # the two modes are far apart: two runs, not a thousand zeros


def test_small_gaps_are_bridged_with_zeros_and_large_ones_start_a_new_run() -> None:
    assert latency.to_runs([10, 11, 14, 30], [1, 2, 3, 4]) == [[10, 1, 2, 0, 0, 3], [30, 4]]
    assert latency.to_runs([10, 10 + latency.MAX_BRIDGED_ZEROS + 2], [1, 1]) == [[10, 1], [15, 1]]
    assert latency.to_runs([], []) == []


def test_histogram_survives_json_unchanged() -> None:
    hist = LatencyHistogram.of(SYNTHETIC["pareto-tail"])
    again = LatencyHistogram.model_validate_json(hist.model_dump_json())
    assert again == hist
    assert json.loads(hist.model_dump_json())["encoding"] == "log-hist-v2"


def test_size_follows_the_spread_not_the_run_length() -> None:
    rng = np.random.default_rng(3)
    short = LatencyHistogram.of(rng.lognormal(math.log(2e5), 0.25, 1_000))
    long = LatencyHistogram.of(rng.lognormal(math.log(2e5), 0.25, 2_000_000))
    long_json = len(long.model_dump_json())
    lo, hi = long.span_ns() or (1.0, 1.0)
    most_buckets = math.log(hi / lo) / math.log(latency.gamma()) + 1
    assert len(long.buckets()[0]) <= most_buckets
    # two thousand times the queries: at most the digits of the counts grow
    assert long_json < 4 * len(short.model_dump_json())
    assert long_json < 2_000
    v1_buckets, _ = latency.encode(rng.lognormal(math.log(2e5), 0.25, 2_000_000))
    assert len(v1_buckets) > 10 * len(long.buckets()[0])


def test_v1_histograms_still_read_within_their_own_resolution() -> None:
    values = SYNTHETIC["lognormal-200us"]
    buckets, counts = latency.encode(values)
    raw = RawLatencies(buckets=buckets, counts=counts)
    assert raw.rel_error == pytest.approx(0.0005, rel=1e-3)
    for q in QUANTILES:
        exact = _exact_ns(values, q)
        assert abs(raw.quantile_ms(q) * 1e6 - exact) <= raw.rel_error * exact * (1 + 1e-9)
    assert sum(c for _, c in raw.occupied_ns()) == values.size


@pytest.mark.parametrize("form", ["v1", "v2"])
def test_both_forms_answer_the_readers_questions_alike(form: str) -> None:
    values = SYNTHETIC["bimodal-cache-miss"]
    hist: RawLatencies | LatencyHistogram
    if form == "v1":
        buckets, counts = latency.encode(values)
        hist = RawLatencies(buckets=buckets, counts=counts)
    else:
        hist = LatencyHistogram.of(values)
    occupied = hist.occupied_ns()
    span = hist.span_ns()
    assert span is not None
    assert span[0] <= values.min() and values.max() <= span[1]
    assert [v for v, _ in occupied] == sorted(v for v, _ in occupied)
    assert sum(c for _, c in occupied) == hist.count == values.size
    assert hist.bucket_ratio > 1
