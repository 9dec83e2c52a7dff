"""Raw latencies on the wire: log-bucketed histograms with a stated error bound.

Two encodings exist; a reader handles both (:class:`shared.schema.RawLatencies` and
:class:`shared.schema.LatencyHistogram` give them one interface).

``log-hist-v1`` (schema version 1): bucket ``i = floor(ln(ns) / ln(1 + rel))`` with ``rel`` = 0.001,
read back as its geometric midpoint (within ``rel / 2`` of every latency in it). Every occupied
bucket travels as an index and a count, so a long run of a jittery model sends thousands of them.

``log-hist-v2`` (schema version 2, what the agent sends): the relative-error mapping of DDSketch.
With ``a`` the stated bound (:data:`REL_ERROR`, 1 %) and ``g = (1 + a) / (1 - a)``, bucket
``i = ceil(log_g(ns))`` holds the latencies in ``(g**(i-1), g**i]`` and is read back as
``2 g**i / (g + 1)``, which lies within ``a`` (relative) of every latency in the bucket. The index
range grows with the *spread* of the latencies (about 115 buckets per decade), never with the run's
length. Occupied buckets travel as runs ``[first_index, count, count, ...]`` of consecutive
buckets; gaps of at most :data:`MAX_BRIDGED_ZEROS` empty buckets are written as zeros inside a
run, because a zero is shorter than a new run's index.

Percentiles use MLPerf LoadGen's index convention (:func:`percentile_index`: the value at sorted
index ``floor(q * n)``). From a histogram, :func:`quantile_ns` finds the bucket holding that exact
sample and returns its representative, so the answer is within the encoding's bound of the exact
percentile (v2: 1 %). The summary's percentiles (``latency_ms``) are computed on the
device from the raw latencies and are exact.

Latencies under 1 ns are counted as 1 ns (bucket 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

REL_ERROR = 0.01
"""The v2 bound: every latency read back from a v2 histogram is within 1 % of the true one."""
MAX_BRIDGED_ZEROS = 3
"""A gap of up to this many empty buckets stays inside a run (``0,`` is shorter than a new run)."""


def percentile_index(n: int, q: float) -> int:
    """0-based index of the ``q`` quantile (0..1) among ``n`` ascending values, as LoadGen takes it.

    MLPerf LoadGen (mlcommons/inference ``loadgen/results.cc`` at 05a9cec,
    ``PerformanceSummary::ProcessLatencies``) reads
    ``pr.sample_latencies[sample_count * percentile]`` from the sorted latencies: the double
    ``n * q`` truncated to an index. Where ``n * q`` is whole that is ``sorted[n * q]``, one rank
    above the nearest-rank rule (``ceil(n * q) - 1``); elsewhere the two agree. ``q = 1`` (which
    LoadGen never asks for) gives the maximum.
    """
    if n <= 0:
        raise ValueError("no values")
    return max(0, min(n - 1, int(n * q)))


def percentile(sorted_values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (LoadGen's :func:`percentile_index`)."""
    return float(sorted_values[percentile_index(len(sorted_values), q)])


# -- log-hist-v1 ----------------------------------------------------------------------------------


def encode(latencies_ns: np.ndarray, rel: float = 0.001) -> tuple[list[int], list[int]]:
    """``log-hist-v1``: bucket indices and counts (both ascending by index) for the latencies."""
    values = np.maximum(np.asarray(latencies_ns, dtype=np.float64), 1.0)
    idx = np.floor(np.log(values) / math.log1p(rel)).astype(np.int64)
    buckets, counts = np.unique(idx, return_counts=True)
    return buckets.tolist(), counts.tolist()


def bucket_value_ns(bucket: int, rel: float = 0.001) -> float:
    """``log-hist-v1``: representative latency of a bucket, the geometric midpoint of its bounds."""
    return math.exp((bucket + 0.5) * math.log1p(rel))


def bucket_bounds_ns(bucket: int, rel: float = 0.001) -> tuple[float, float]:
    """``log-hist-v1``: the latencies ``[low, high)`` a bucket holds."""
    step = math.log1p(rel)
    return math.exp(bucket * step), math.exp((bucket + 1) * step)


def quantile(buckets: Sequence[int], counts: Sequence[int], q: float, rel: float = 0.001) -> float:
    """``log-hist-v1``: the ``q`` quantile in nanoseconds (LoadGen's index convention)."""
    return quantile_ns([bucket_value_ns(int(b), rel) for b in buckets], counts, q)


# -- log-hist-v2 ----------------------------------------------------------------------------------


def gamma(rel_error: float = REL_ERROR) -> float:
    """Ratio of a v2 bucket's upper to its lower bound."""
    return (1 + rel_error) / (1 - rel_error)


def log_index(latency_ns: float, rel_error: float = REL_ERROR) -> int:
    """``log-hist-v2``: the bucket of one latency."""
    return max(0, math.ceil(math.log(max(latency_ns, 1.0)) / math.log(gamma(rel_error))))


def log_value_ns(index: int, rel_error: float = REL_ERROR) -> float:
    """``log-hist-v2``: the latency a bucket is read back as (within ``rel_error`` of its members)."""
    g = gamma(rel_error)
    return 2.0 * math.exp(index * math.log(g)) / (g + 1.0)


def log_bounds_ns(index: int, rel_error: float = REL_ERROR) -> tuple[float, float]:
    """``log-hist-v2``: the latencies ``(low, high]`` a bucket holds."""
    step = math.log(gamma(rel_error))
    return math.exp((index - 1) * step), math.exp(index * step)


def encode_runs(latencies_ns: Sequence[float] | np.ndarray, rel_error: float = REL_ERROR) -> list[list[int]]:
    """``log-hist-v2``: the runs ``[first_index, count, ...]`` for the given latencies."""
    values = np.maximum(np.asarray(latencies_ns, dtype=np.float64).reshape(-1), 1.0)
    if values.size == 0:
        return []
    idx = np.maximum(np.ceil(np.log(values) / math.log(gamma(rel_error))), 0).astype(np.int64)
    buckets, counts = np.unique(idx, return_counts=True)
    return to_runs(buckets.tolist(), counts.tolist())


def to_runs(buckets: Sequence[int], counts: Sequence[int]) -> list[list[int]]:
    """Ascending occupied ``buckets`` and their ``counts`` as runs (small gaps bridged by zeros)."""
    runs: list[list[int]] = []
    end = -1  # the index after the last bucket of the current run
    for bucket, count in zip(buckets, counts, strict=True):
        if runs and 0 <= bucket - end <= MAX_BRIDGED_ZEROS:
            runs[-1].extend([0] * (bucket - end))
            runs[-1].append(int(count))
        else:
            runs.append([int(bucket), int(count)])
        end = bucket + 1
    return runs


def from_runs(runs: Iterable[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Occupied bucket indices and counts (zeros dropped) from runs."""
    buckets: list[int] = []
    counts: list[int] = []
    for run in runs:
        first = int(run[0])
        for offset, count in enumerate(run[1:]):
            if count:
                buckets.append(first + offset)
                counts.append(int(count))
    return buckets, counts


# -- both -----------------------------------------------------------------------------------------


def quantile_ns(values_ns: Sequence[float], counts: Sequence[int], q: float) -> float:
    """The ``q`` quantile from ascending representative values and their counts (the value of the
    sample at LoadGen's :func:`percentile_index`)."""
    total = int(sum(counts))
    if total == 0:
        raise ValueError("empty histogram")
    rank = percentile_index(total, q) + 1
    seen = 0
    for value, count in zip(values_ns, counts, strict=True):
        seen += int(count)
        if seen >= rank:
            return float(value)
    return float(values_ns[-1])
