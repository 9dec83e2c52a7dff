"""Monitor windows: what a monitored model did during one window of time, and merging them.

A :class:`MonitorWindow` travels on ``edgemeter/v1/{fleet}/{device_id}/monitor`` (QoS 1, not
retained; topic built in :mod:`shared.topics`). Two writers make them: a monitoring job that runs
a model continuously at a target rate (``JobCommand(kind="monitor")``), and an application timing
its own inference through ``agent.monitor.InferenceMonitor``. Both name their windows (``name``);
a job's windows also carry its ``job_id``.

A window holds every query it saw as the same raw-latency histogram a result carries
(:class:`shared.schema.LatencyHistogram`, ``log-hist-v2``, 1 % relative error), so windows of one
monitor merge exactly into any longer span: :func:`merge_windows` adds the histograms bucket by
bucket, which gives the histogram of all the span's latencies, and reads p50/p90/p99 from it.
The other figures merge as follows: ``queries`` and ``samples`` add; ``throughput_sps`` is
``samples`` over the windows' total duration; ``power_w`` is the duration-weighted mean of the
windows that measured it (energy adds); ``temperature_c`` is the highest; ``throttled`` is true
when any window was; ``dropped`` adds.

Windows go through the agent's spool like results: each has a ``window_id`` (a UUID), and the
collector's :class:`shared.messages.Receipt` names it among its ``run_ids`` once stored; until then
the agent sends it again (``replayed: true``). The collector stores each ``window_id`` once.

Same rules as :mod:`shared.messages`: units in names, ``null`` for unmeasured, unknown fields
refused, nothing impossible (``end`` before ``start``, a histogram whose counts differ from
``queries``, percentiles out of order).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from shared import latency as latency_codec
from shared.messages import Level, UtcTime
from shared.schema import Celsius, Count, LatencyHistogram, NonNegative, Strict, WireVersion
from shared.topics import valid_level

__all__ = ["MonitorWindow", "WindowLatency", "histogram_from_counts", "merge_histograms",
           "merge_windows", "window_latency"]

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
"""The percentiles a window reports, by name."""


def _name(value: str) -> str:
    if not valid_level(value):
        raise ValueError("a monitor name uses letters, digits, . _ : @ - (at most 128)")
    return value


MonitorName = Annotated[str, AfterValidator(_name)]


class WindowLatency(Strict):
    """Nearest-rank percentiles of a window's latencies (from its histogram, within 1 %)."""

    p50: NonNegative
    p90: NonNegative
    p99: NonNegative

    @model_validator(mode="after")
    def _ordered(self) -> WindowLatency:
        if not self.p50 <= self.p90 <= self.p99:
            raise ValueError(f"percentiles out of order: p50 {self.p50}, p90 {self.p90}, "
                             f"p99 {self.p99}")
        return self


class MonitorWindow(Strict):
    """One window of a monitored model: its queries, their latencies, and the board's state."""

    schema_version: WireVersion = 1
    window_id: uuid.UUID = Field(default_factory=uuid.uuid4,
                                 description="stored once; receipts name it among run_ids")
    device_id: Level
    fleet: Level
    name: MonitorName = Field(description="the monitor: a job's name or the application's")
    job_id: Level | None = Field(None, description="the monitoring job's id; null in-app")
    start: UtcTime
    end: UtcTime
    queries: Count = Field(description="queries completed in the window")
    samples: Count | None = Field(None, description="samples (queries x batch); null: = queries")
    latencies: LatencyHistogram | None = Field(
        None, description="every query's latency (log-hist-v2); null only when queries is 0")
    latency_ms: WindowLatency | None = None
    throughput_sps: NonNegative | None = Field(None, description="samples per second of window")
    power_w: NonNegative | None = Field(None, description="average power during the window")
    power_source: str | None = Field(None, max_length=64)
    power_estimated: bool | None = None
    temperature_c: Celsius | None = Field(None, description="highest reading in the window")
    throttled: bool | None = None
    dropped: Count = Field(0, description="latencies the monitor could not count (overflow)")
    replayed: bool = Field(False, description="true on a re-send from the spool")

    @model_validator(mode="after")
    def _consistent(self) -> MonitorWindow:
        if self.end < self.start:
            raise ValueError(f"end {self.end.isoformat()} is before start {self.start.isoformat()}")
        if self.latencies is None:
            if self.queries:
                raise ValueError(f"{self.queries} queries but no latencies histogram")
        elif self.latencies.count != self.queries:
            raise ValueError(f"the latencies histogram holds {self.latencies.count} queries, "
                             f"not queries ({self.queries})")
        if self.samples is not None and self.samples < self.queries:
            raise ValueError(f"samples ({self.samples}) is below queries ({self.queries})")
        return self

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def sample_count(self) -> int:
        return self.queries if self.samples is None else self.samples


def histogram_from_counts(counts: dict[int, int], rel_error: float = latency_codec.REL_ERROR
                          ) -> LatencyHistogram | None:
    """The histogram of ``{bucket index: queries}`` (``None`` when empty)."""
    occupied = sorted((b, c) for b, c in counts.items() if c)
    if not occupied:
        return None
    return LatencyHistogram(rel_error=rel_error, runs=latency_codec.to_runs(
        [b for b, _ in occupied], [c for _, c in occupied]))


def merge_histograms(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram | None:
    """Add histograms bucket by bucket (all must share one ``rel_error``)."""
    counts: dict[int, int] = {}
    rel_error: float | None = None
    for histogram in histograms:
        if rel_error is None:
            rel_error = histogram.rel_error
        elif not math.isclose(histogram.rel_error, rel_error):
            raise ValueError(f"cannot add histograms of rel_error {rel_error} and "
                             f"{histogram.rel_error}")
        for bucket, count in zip(*histogram.buckets(), strict=True):
            counts[bucket] = counts.get(bucket, 0) + count
    if rel_error is None:
        return None
    return histogram_from_counts(counts, rel_error)


def window_latency(histogram: LatencyHistogram | None) -> WindowLatency | None:
    """p50/p90/p99 in ms from a histogram (nearest rank, within its ``rel_error``)."""
    if histogram is None or histogram.count == 0:
        return None
    return WindowLatency(**{name: histogram.quantile_ms(q) for name, q in QUANTILES.items()})


def merge_windows(windows: Sequence[MonitorWindow]) -> MonitorWindow:
    """One window spanning ``windows`` (of one device and monitor), exactly as if it had been
    measured as one: histograms add; see the module docstring for the other figures."""
    if not windows:
        raise ValueError("no windows to merge")
    first = windows[0]
    for window in windows[1:]:
        if (window.device_id, window.fleet, window.name) != (first.device_id, first.fleet,
                                                            first.name):
            raise ValueError("windows of different devices or monitors do not merge: "
                             f"{first.device_id}/{first.name} and {window.device_id}/{window.name}")
    histogram = merge_histograms(w.latencies for w in windows if w.latencies is not None)
    duration_s = sum(w.duration_s for w in windows)
    samples = sum(w.sample_count for w in windows)
    powered = [w for w in windows if w.power_w is not None]
    powered_s = sum(w.duration_s for w in powered)
    power_w: float | None = None
    if powered:
        power_w = (sum(w.power_w * w.duration_s for w in powered if w.power_w is not None)
                   / powered_s if powered_s > 0
                   else sum(w.power_w for w in powered if w.power_w is not None) / len(powered))
    temps = [w.temperature_c for w in windows if w.temperature_c is not None]
    throttles = [w.throttled for w in windows if w.throttled is not None]
    sources = {w.power_source for w in powered if w.power_source}
    estimated = [w.power_estimated for w in powered if w.power_estimated is not None]
    job_ids = {w.job_id for w in windows}
    queries = sum(w.queries for w in windows)
    return MonitorWindow(
        window_id=first.window_id if len(windows) == 1 else uuid.uuid4(),
        device_id=first.device_id, fleet=first.fleet, name=first.name,
        job_id=first.job_id if len(job_ids) == 1 else None,
        start=min(w.start for w in windows), end=max(w.end for w in windows),
        queries=queries, samples=None if samples == queries else samples,
        latencies=histogram, latency_ms=window_latency(histogram),
        throughput_sps=samples / duration_s if duration_s > 0 else None,
        power_w=power_w,
        power_source=sources.pop() if len(sources) == 1 else ("mixed" if sources else None),
        power_estimated=any(estimated) if estimated else None,
        temperature_c=max(temps) if temps else None,
        throttled=any(throttles) if throttles else None,
        dropped=sum(w.dropped for w in windows),
    )

