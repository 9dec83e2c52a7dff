"""The background sampler and the arithmetic of an energy window.

:class:`Sampler` has ``source.read()`` called ``hz`` times a second (capped at the source's
``max_hz``) by a :class:`agent.power.clock.Ticker` (by default one daemon thread) and keeps the
readings sorted by their stamp, taken from the injected clock. The timed loop never waits on it:
``begin()``/``end()`` of the monitor only take a timestamp (and, for cheap counter sources, one
snapshot read so the window edges are exact).

:func:`summarize` turns the readings around a window ``[t0, t1]`` into energy:

* counters: wrap-aware deltas (a drop means one wrap at ``wrap_j``; a drop with no known range is a
  reset and adds nothing), linearly interpolated at the window edges;
* gauges: trapezoid integration of the piecewise-linear power, exact at the window edges, with the
  nearest value held beyond the first or last sample;
* ``coverage``: the share of the window lying between consecutive samples that are no further
  apart than ``max_gap_s`` (counters keep counting through a gap, so for them only gaps long
  enough to hide a wrap count as holes);
* the total is the sum of the ``counted`` rails; other rails are reported, never added;
* the peak (``peak_power_w``, over ``peak_window_s``): for gauges the highest sample; for counters
  the highest average power over spans of at least ``peak_window_s`` (at least 100 ms, or the
  sensor's own update period when it is longer) between two readings, each span confirmed by the
  span that starts one reading later (the lower of the two counts). A counter that updates late
  reads low at one reading, which moves energy from the span before it into the span after it;
  the confirmation keeps that one late update from being taken for a peak. A run shorter than
  the peak window has no peak (``None``).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.power.base import Kind, OnceLogger, PowerSource, Reading
from agent.power.clock import ClockNs, ThreadTicker, Ticker

logger = logging.getLogger(__name__)

TRACE_POINTS = 200
COUNTER_MAX_GAP_S = 10.0
MIN_PEAK_WINDOW_S = 0.1


def peak_window_s(update_period_s: float) -> float:
    """The shortest span a peak is averaged over: 100 ms, or the sensor's update period."""
    return max(MIN_PEAK_WINDOW_S, update_period_s)


class Sampler:
    """Reads ``source`` at ``hz`` from a ticker (default: one background thread). Start once."""

    def __init__(
        self,
        source: PowerSource,
        hz: float,
        *,
        clock_ns: ClockNs = time.monotonic_ns,
        ticker: Ticker | None = None,
    ) -> None:
        if not hz > 0:
            raise ValueError("hz must be positive")
        self.source = source
        self.requested_hz = hz
        self.hz = min(hz, source.max_hz)
        self.errors = 0
        self.cpu_s = 0.0  # CPU time the sampler thread has used (time.thread_time)
        self._clock_ns = clock_ns
        self._ticker = ticker if ticker is not None else ThreadTicker(clock_ns)
        self._readings: list[Reading] = []
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._once = OnceLogger(logger)

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def start(self) -> None:
        """Take the first reading now, on the caller's thread, then start ticking."""
        if self._started:
            return
        self._started = True
        self._sample()
        self._ticker.start(1.0 / self.hz, self._tick)

    def stop(self) -> None:
        """Stop ticking (a thread notices within one sampling period)."""
        self._stopped = True
        if self._started:
            self._ticker.stop()

    def _tick(self) -> None:
        self._sample()
        self.cpu_s = time.thread_time()

    def _sample(self) -> Reading | None:
        try:
            reading = self.source.read()
        except Exception as err:
            self.errors += 1
            self._once.warning(type(err).__name__, "power source %s: read failed: %s",
                               self.source.name, err)
            return None
        if reading is not None:
            reading = _without_negative_power(reading)
            with self._lock:
                bisect.insort(self._readings, reading, key=lambda r: r.t_s)
        return reading

    def snapshot(self) -> Reading | None:
        """One reading on the caller's thread: exact counter edges, or a gauge sample just after
        a window closes so its right edge is bracketed."""
        return self._sample()

    def now_s(self) -> float:
        return self._clock_ns() / 1e9

    def around(self, t0: float, t1: float) -> list[Reading]:
        """Readings in ``[t0, t1]`` plus the last one before and the first one after."""
        with self._lock:
            times = [r.t_s for r in self._readings]
            lo = max(bisect.bisect_left(times, t0) - 1, 0)
            hi = min(bisect.bisect_right(times, t1) + 1, len(times))
            return self._readings[lo:hi]

    def discard_before(self, t: float) -> None:
        """Forget readings older than the last one before ``t`` (keeps memory flat)."""
        with self._lock:
            times = [r.t_s for r in self._readings]
            cut = max(bisect.bisect_left(times, t) - 1, 0)
            del self._readings[:cut]


@dataclass
class WindowStats:
    window_s: float
    samples: int
    coverage: float | None = None
    energy_j: float | None = None
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    peak_window_s: float | None = None
    rails: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    trace_t_s: list[float] = field(default_factory=list)
    trace_power_w: list[float] = field(default_factory=list)


class _Curve:
    """Cumulative energy E(t) of one rail from its samples (joules since the first sample)."""

    def __init__(self, kind: Kind, ts: list[float], values: list[float], wrap: float | None):
        self.kind = kind
        self.ts = ts
        self.power: list[float] = []
        cum = [0.0]
        if kind == "counter":
            for a, b in itertools.pairwise(values):
                delta = b - a
                if delta < 0:
                    delta = delta + wrap if wrap else 0.0
                cum.append(cum[-1] + delta)
        else:
            self.power = values
            for i in range(1, len(ts)):
                cum.append(cum[-1] + (values[i - 1] + values[i]) / 2.0 * (ts[i] - ts[i - 1]))
        self.cum = cum

    def _edge_power(self, first: bool) -> float:
        if self.kind == "gauge":
            return self.power[0] if first else self.power[-1]
        if len(self.ts) < 2:
            return 0.0
        i = 0 if first else len(self.ts) - 2
        dt = self.ts[i + 1] - self.ts[i]
        return (self.cum[i + 1] - self.cum[i]) / dt if dt > 0 else 0.0

    def at(self, t: float) -> float:
        ts = self.ts
        if t <= ts[0]:
            return self.cum[0] - self._edge_power(True) * (ts[0] - t)
        if t >= ts[-1]:
            return self.cum[-1] + self._edge_power(False) * (t - ts[-1])
        i = bisect.bisect_right(ts, t) - 1
        dt = ts[i + 1] - ts[i]
        x = t - ts[i]
        if dt <= 0:
            return self.cum[i]
        if self.kind == "counter":
            return self.cum[i] + (self.cum[i + 1] - self.cum[i]) * x / dt
        p0, p1 = self.power[i], self.power[i + 1]
        return self.cum[i] + p0 * x + (p1 - p0) * x * x / (2.0 * dt)


def coverage(ts: Sequence[float], t0: float, t1: float, max_gap_s: float) -> float:
    """Share of ``[t0, t1]`` between consecutive samples at most ``max_gap_s`` apart."""
    span = t1 - t0
    if span <= 0:
        return 1.0 if any(t0 - max_gap_s <= t <= t1 + max_gap_s for t in ts) else 0.0
    covered = 0.0
    for a, b in itertools.pairwise(ts):
        if b - a <= max_gap_s:
            covered += max(0.0, min(b, t1) - max(a, t0))
    return min(covered / span, 1.0)


def summarize(
    kind: Kind,
    readings: Sequence[Reading],
    t0: float,
    t1: float,
    counted: Sequence[str],
    wrap_j: dict[str, float] | None = None,
    hz: float = 20.0,
    max_gap_s: float | None = None,
    peak_window: float | None = None,
) -> WindowStats:
    """Energy, power, coverage and a trace of ``[t0, t1]`` from the readings around it."""
    window_s = max(t1 - t0, 0.0)
    inside = sum(1 for r in readings if t0 <= r.t_s <= t1)
    stats = WindowStats(window_s=window_s, samples=inside)
    if not readings:
        stats.coverage = 0.0
        return stats
    gap = max_gap_s if max_gap_s is not None else 3.0 / hz
    if kind == "counter":
        gap = max(gap, COUNTER_MAX_GAP_S)
    stats.coverage = coverage([r.t_s for r in readings], t0, t1, gap)

    curves: dict[str, _Curve] = {}
    names = list(dict.fromkeys(name for r in readings for name in r.values))
    for name in names:
        pts = [(r.t_s, r.values[name]) for r in readings if name in r.values]
        if kind == "counter" and len(pts) < 2:
            continue
        curves[name] = _Curve(kind, [p[0] for p in pts], [p[1] for p in pts],
                              (wrap_j or {}).get(name))
    for name, curve in curves.items():
        energy = curve.at(t1) - curve.at(t0)
        stats.rails[name] = (energy / window_s if window_s > 0 else None, energy)
    totals = [curves[name] for name in counted if name in curves]
    if not totals or len(totals) < len(counted):
        return stats

    def total_at(t: float) -> float:
        return sum(c.at(t) for c in totals)

    stats.energy_j = total_at(t1) - total_at(t0)
    if window_s > 0:
        stats.avg_power_w = stats.energy_j / window_s
    elif kind == "gauge":
        stats.avg_power_w = sum(_held_power(c, t0) for c in totals)
    if kind == "gauge":
        stats.peak_power_w = _gauge_peak(readings, totals, t0, t1)
    else:
        window = peak_window if peak_window is not None else MIN_PEAK_WINDOW_S
        stats.peak_power_w = _counter_peak(readings, total_at, t0, t1, window)
        stats.peak_window_s = window
    if window_s > 0:
        n = max(1, min(TRACE_POINTS, inside))
        edges = [t0 + window_s * i / n for i in range(n + 1)]
        energies = [total_at(e) for e in edges]
        for i in range(n):
            width = edges[i + 1] - edges[i]
            stats.trace_t_s.append(round((edges[i] + edges[i + 1]) / 2.0 - t0, 6))
            stats.trace_power_w.append(round((energies[i + 1] - energies[i]) / width, 6))
    return stats


def _gauge_peak(
    readings: Sequence[Reading], totals: list[_Curve], t0: float, t1: float
) -> float | None:
    """The highest total of the samples inside the window (the held value if there is none)."""
    inside = sorted({r.t_s for r in readings if t0 <= r.t_s <= t1})
    points = inside or [t0]
    return max(sum(_held_power(c, t) for c in totals) for t in points)


def _counter_peak(
    readings: Sequence[Reading], total_at: Callable[[float], float], t0: float, t1: float,
    window_s: float,
) -> float | None:
    """Highest power over spans of at least ``window_s`` between readings, each confirmed by the
    span starting one reading later; None when the window is shorter than ``window_s``."""
    ts = sorted({r.t_s for r in readings if t0 <= r.t_s <= t1} | {t0, t1})
    energy = [total_at(t) for t in ts]
    spans: list[float] = []
    j = 0
    for i, start in enumerate(ts):
        j = max(j, i + 1)
        while j < len(ts) and ts[j] - start < window_s * (1 - 1e-9):
            j += 1
        if j == len(ts):
            break
        spans.append((energy[j] - energy[i]) / (ts[j] - start))
    if not spans:
        return None
    if len(spans) == 1:
        return spans[0]
    return max(min(a, b) for a, b in itertools.pairwise(spans))


def _held_power(curve: _Curve, t: float) -> float:
    """Gauge power at ``t`` by linear interpolation, the nearest value beyond the ends."""
    ts, ps = curve.ts, curve.power
    if t <= ts[0]:
        return ps[0]
    if t >= ts[-1]:
        return ps[-1]
    i = bisect.bisect_right(ts, t) - 1
    dt = ts[i + 1] - ts[i]
    return ps[i] if dt <= 0 else ps[i] + (ps[i + 1] - ps[i]) * (t - ts[i]) / dt


def finite(value: float | None) -> float | None:
    """None for NaN or infinity: an unmeasurable figure is unmeasured, not a number."""
    return value if value is not None and math.isfinite(value) else None


def _without_negative_power(reading: Reading) -> Reading:
    """A gauge reads a few milliwatts below zero near idle (offset noise); power is never
    negative, so such values count as 0 W. Counters are left alone: their deltas are what count."""
    if reading.power_w is None or all(v >= 0 for v in reading.power_w.values()):
        return reading
    return Reading(t_s=reading.t_s, energy_j=reading.energy_j,
                   power_w={k: max(v, 0.0) for k, v in reading.power_w.items()})
