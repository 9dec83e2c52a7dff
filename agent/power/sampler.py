"""The background sampler and the arithmetic of an energy window.

:class:`Sampler` runs one daemon thread that calls ``source.read()`` at ``hz`` (capped at the
source's ``max_hz``) and keeps the readings sorted by their ``time.monotonic()`` stamp. The timed
loop never waits on it: ``begin()``/``end()`` of the monitor only take a timestamp (and, for cheap
counter sources, one snapshot read so the window edges are exact).

:func:`summarize` turns the readings around a window ``[t0, t1]`` into energy:

* counters: wrap-aware deltas (a drop means one wrap at ``wrap_j``; a drop with no known range is a
  reset and adds nothing), linearly interpolated at the window edges;
* gauges: trapezoid integration of the piecewise-linear power, exact at the window edges, with the
  nearest value held beyond the first or last sample;
* ``coverage``: the share of the window lying between consecutive samples that are no further
  apart than ``max_gap_s`` (counters keep counting through a gap, so for them only gaps long
  enough to hide a wrap count as holes);
* the total is the sum of the ``counted`` rails; other rails are reported, never added.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.power.base import Kind, OnceLogger, PowerSource, Reading

logger = logging.getLogger(__name__)

TRACE_POINTS = 200
COUNTER_MAX_GAP_S = 10.0


class Sampler:
    """One background thread reading ``source`` at ``hz``. Start once, stop once."""

    def __init__(self, source: PowerSource, hz: float) -> None:
        if not hz > 0:
            raise ValueError("hz must be positive")
        self.source = source
        self.requested_hz = hz
        self.hz = min(hz, source.max_hz)
        self.errors = 0
        self.cpu_s = 0.0  # CPU time the sampler thread has used (time.thread_time)
        self._readings: list[Reading] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._once = OnceLogger(logger)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="edgemeter-power", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; it notices within one sampling period."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0 / self.hz + 1.0)

    def _run(self) -> None:
        # time.sleep rather than Event.wait: on a VM a timed Event.wait costs about twice the CPU
        # of a sleep per wake-up, and the wake-ups are most of the sampler's cost at 20 Hz
        period = 1.0 / self.hz
        next_t = time.monotonic()
        while not self._stop.is_set():
            self._sample()
            self.cpu_s = time.thread_time()
            next_t += period
            now = time.monotonic()
            if next_t < now:  # fell behind (a slow read): skip ticks rather than burst
                next_t = now + period
            time.sleep(next_t - now)

    def _sample(self) -> Reading | None:
        try:
            reading = self.source.read()
        except Exception as err:
            self.errors += 1
            self._once.warning(type(err).__name__, "power source %s: read failed: %s",
                               self.source.name, err)
            return None
        if reading is not None:
            with self._cond:
                bisect.insort(self._readings, reading, key=lambda r: r.t_s)
                self._cond.notify_all()
        return reading

    def snapshot(self) -> Reading | None:
        """One reading on the caller's thread: exact counter edges, or a gauge sample just after
        a window closes so its right edge is bracketed."""
        return self._sample()

    def wait_for_sample(self, after_t: float, timeout_s: float) -> bool:
        """Block until a reading stamped at or after ``after_t`` exists (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._readings or self._readings[-1].t_s < after_t:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return False
                self._cond.wait(left)
        return True

    def around(self, t0: float, t1: float) -> list[Reading]:
        """Readings in ``[t0, t1]`` plus the last one before and the first one after."""
        with self._cond:
            times = [r.t_s for r in self._readings]
            lo = max(bisect.bisect_left(times, t0) - 1, 0)
            hi = min(bisect.bisect_right(times, t1) + 1, len(times))
            return self._readings[lo:hi]

    def discard_before(self, t: float) -> None:
        """Forget readings older than the last one before ``t`` (keeps memory flat)."""
        with self._cond:
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
    # peak: over sample intervals at least half a sampling period long, so counter quantisation
    # on a short edge interval is not mistaken for a spike
    ts = sorted({r.t_s for r in readings})
    peaks: list[float] = []
    for a, b in itertools.pairwise(ts):
        if b < t0 or a > t1:
            continue
        if kind == "gauge":
            peaks.extend(sum(_held_power(c, t) for c in totals) for t in (a, b) if t0 <= t <= t1)
        elif b - a >= 0.5 / hz:
            peaks.append((total_at(b) - total_at(a)) / (b - a))
    stats.peak_power_w = max(peaks) if peaks else stats.avg_power_w
    if window_s > 0:
        n = max(1, min(TRACE_POINTS, inside))
        edges = [t0 + window_s * i / n for i in range(n + 1)]
        energies = [total_at(e) for e in edges]
        for i in range(n):
            width = edges[i + 1] - edges[i]
            stats.trace_t_s.append(round((edges[i] + edges[i + 1]) / 2.0 - t0, 6))
            stats.trace_power_w.append(round((energies[i + 1] - energies[i]) / width, 6))
    return stats


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
