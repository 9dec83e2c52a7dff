"""What ``/api/runs/{run_id}`` adds to a stored result: histogram, CDF, power and catalogue figures.

* ``histogram``: the raw latencies (:mod:`shared.latency`: 1 % log buckets in schema v2, 0.1 % in
  v1) re-binned into at
  most :data:`HISTOGRAM_BINS` log-spaced bins from the fastest to the slowest query, so a chart
  gets a readable number of bars whatever the spread; ``edges_ms`` has one more entry than
  ``counts``. ``null`` when the result carries no raw latencies.
* ``cdf``: one point per occupied bucket (its representative latency, at most 1 % off the exact
  one in v2, 0.05 % in v1) and the fraction of queries at or below it, so the curve is exact to
  the wire's resolution.
* ``power``: the sampled trace, the measured window ``[0, window_s]`` (trace times count from the
  start of the timed phase), and the idle baseline in watts; each ``null`` when not measured.
* ``catalogue``: the hardware catalogue's peak for the model's precision as GMAC/s (a MAC is two
  operations) and memory bandwidth, for the device's ``hardware_key``; ``null`` when unknown.
"""

from __future__ import annotations

import math
from typing import Any

from shared.catalogue import Catalogue
from shared.schema import BenchmarkResult

__all__ = ["HISTOGRAM_BINS", "catalogue_figures", "cdf", "histogram", "run_detail"]

HISTOGRAM_BINS = 60


def histogram(result: BenchmarkResult, bins: int = HISTOGRAM_BINS) -> dict[str, list[Any]] | None:
    raw = result.latencies
    span = raw.span_ns() if raw is not None else None
    if raw is None or span is None:
        return None
    occupied = raw.occupied_ns()
    lo_ns, hi_ns = span
    # never finer than the encoding's own buckets, never more than ``bins`` bars
    n = max(1, min(bins, round(math.log(hi_ns / lo_ns) / math.log(raw.bucket_ratio))))
    ratio = math.log(hi_ns / lo_ns) / n
    edges_ms = [lo_ns * math.exp(i * ratio) / 1e6 for i in range(n + 1)]
    counts = [0] * n
    for value_ns, count in occupied:
        index = min(n - 1, max(0, int(math.log(value_ns / lo_ns) / ratio)))
        counts[index] += count
    return {"edges_ms": edges_ms, "counts": counts}


def cdf(result: BenchmarkResult) -> dict[str, list[float]] | None:
    raw = result.latencies
    occupied = raw.occupied_ns() if raw is not None else []
    if not occupied:
        return None
    total = sum(count for _, count in occupied)
    seen = 0
    latency_ms, fraction = [], []
    for value_ns, count in occupied:
        seen += count
        latency_ms.append(value_ns / 1e6)
        fraction.append(seen / total)
    return {"latency_ms": latency_ms, "fraction": fraction}


def power(result: BenchmarkResult) -> dict[str, Any]:
    energy = result.energy
    if energy is None:
        return {"trace": None, "window": None, "idle_power_w": None}
    return {
        "trace": energy.trace.model_dump(mode="json") if energy.trace else None,
        "window": [0.0, energy.window_s] if energy.window_s is not None else None,
        "idle_power_w": energy.idle_power_w,
    }


def catalogue_figures(result: BenchmarkResult, catalogue: Catalogue) -> dict[str, Any] | None:
    key = result.device.hardware_key
    entry = catalogue.entries.get(key) if key else None
    if entry is None:
        return None
    ops = entry.peak_ops_per_s(result.model.precision)
    return {
        "hardware_key": entry.key,
        "name": entry.name,
        "peak_gmacs_per_s": ops / 2 / 1e9 if ops is not None else None,
        "memory_gbps": entry.mem_bandwidth_gbs,
    }


def run_detail(result: BenchmarkResult, catalogue: Catalogue) -> dict[str, Any]:
    return {
        "result": result.model_dump(mode="json"),
        "histogram": histogram(result),
        "cdf": cdf(result),
        "power": power(result),
        "catalogue": catalogue_figures(result, catalogue),
    }
