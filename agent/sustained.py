"""Sustained vs burst: run a model until its throughput and the board's temperature settle.

A short benchmark measures a cool board; a board that runs for minutes heats, throttles and slows
down. :func:`run_sustained` runs the model back to back (closed loop) and, every second, notes the
throughput of that second with the board's temperature and throttling (sampled in a background
thread, :class:`ThermalSampler`, never inside the timed loop). It stops when both have settled over
the last ``settle_s`` seconds (:func:`settled`: the two halves of that span differ by less than
``throughput_tolerance`` of the throughput and ``temperature_tolerance_c``), or at ``cap_s``, or
when cancelled, and reports (:class:`SustainedReport`):

* ``burst_sps``: throughput over the first ``burst_s`` seconds (10 s);
* ``sustained_sps``: throughput over the last ``settle_s`` seconds, and their ratio;
* ``time_to_first_throttle_s``: when the board first said it throttled (``null``: it never did,
  or it cannot say: ``throttle_known`` tells which);
* the thermal trace: one :class:`TraceSample` per second.

A board without temperature sensors says so (``sensors`` lists what was found; with none, only the
throughput has to settle). ``edgemeter sustained MODEL`` runs it from the command line; the
``sustained`` profile of ``bench`` (and of a job) runs it inside the runner's timed phase, where
:class:`SustainedTracker` is the stop rule's ``settled`` test: it derives the per-second trace from
the query start times and :class:`ThermalSampler`'s timestamped readings. Both paths build their
report with :func:`make_report`, so the arithmetic lives here once.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["SustainedReport", "SustainedSettings", "SustainedTracker", "ThermalReading",
           "ThermalSampler", "TraceSample", "make_report", "read_thermal", "run_sustained",
           "settled", "thin_trace", "trace_from_starts"]


@dataclass(frozen=True)
class SustainedSettings:
    burst_s: float = 10.0
    settle_s: float = 60.0
    cap_s: float = 900.0
    throughput_tolerance: float = 0.02
    """the two halves of the settle span may differ by this fraction of the throughput"""
    temperature_tolerance_c: float = 0.5
    sample_s: float = 1.0

    def __post_init__(self) -> None:
        if min(self.burst_s, self.settle_s, self.sample_s) <= 0:
            raise ValueError("burst_s, settle_s and sample_s must be above 0")
        if self.cap_s < self.burst_s + self.settle_s:
            raise ValueError(f"cap_s ({self.cap_s:g}) must leave room for burst_s and settle_s "
                             f"({self.burst_s + self.settle_s:g} s)")


@dataclass(frozen=True)
class ThermalReading:
    temperature_c: float | None
    """the hottest sensor; None without sensors"""
    throttled: bool | None
    """None when the board cannot say"""
    sensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceSample:
    t_s: float
    throughput_sps: float
    temperature_c: float | None
    throttled: bool | None


@dataclass
class SustainedReport:
    stopped: str
    """``settled``, ``cap`` or ``cancelled``"""
    duration_s: float
    samples_total: int
    burst_sps: float | None
    sustained_sps: float | None
    sustained_over_burst: float | None
    time_to_first_throttle_s: float | None
    throttle_known: bool
    sensors: list[str]
    start_temperature_c: float | None
    end_temperature_c: float | None
    trace: list[TraceSample] = field(default_factory=list)
    burst_s: float = 10.0
    """the span ``burst_sps`` covers (the settings' ``burst_s``, or less in a shorter run)"""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        def sps(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1f} samples/s"

        lines = [f"stopped: {self.stopped} after {self.duration_s:.0f} s",
                 f"burst (first seconds): {sps(self.burst_sps)}",
                 f"sustained (settled):   {sps(self.sustained_sps)}"
                 + (f" ({self.sustained_over_burst:.2f} of burst)"
                    if self.sustained_over_burst is not None else "")]
        if not self.throttle_known:
            lines.append("throttling: this board does not say (no throttle flag)")
        elif self.time_to_first_throttle_s is None:
            lines.append("throttling: none")
        else:
            lines.append(f"first throttled after {self.time_to_first_throttle_s:.0f} s")
        if not self.sensors:
            lines.append("temperature: no sensors on this board (only the throughput settled)")
        else:
            lines.append(f"temperature: {self.start_temperature_c} -> {self.end_temperature_c} C "
                         f"({', '.join(self.sensors)})")
        return "\n".join(lines)


def read_thermal() -> ThermalReading:
    """The hottest temperature sensor (psutil) and, on a Raspberry Pi, ``vcgencmd``'s throttle
    flag; Nones for what the board does not offer. Never raises."""
    from agent.system import read_temperatures_c, read_throttle

    temps = read_temperatures_c()
    throttled, _reasons = read_throttle(shutil.which("vcgencmd"))
    return ThermalReading(max(temps.values()) if temps else None, throttled, tuple(sorted(temps)))


class ThermalSampler:
    """Reads the board's state every ``period_s`` in a thread; :meth:`latest` is the newest.

    Each reading is kept with its time (``clock``, seconds): :meth:`history` is what
    :class:`SustainedTracker` pairs with the query start times. The thread owns the list; readers
    take a copy of its prefix (appends only)."""

    def __init__(self, read: Callable[[], ThermalReading] = read_thermal,
                 period_s: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self._read = read
        self.period_s = period_s
        self._clock = clock
        self._latest = read()
        self._history: list[tuple[float, ThermalReading]] = [(clock(), self._latest)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgemeter-thermal", daemon=True)

    def start(self) -> ThermalSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        """Take one reading now (the thread calls it; tests may too). Never raises."""
        with contextlib.suppress(Exception):
            reading = self._read()
            self._latest = reading
            self._history.append((self._clock(), reading))

    def latest(self) -> ThermalReading:
        return self._latest

    def history(self) -> list[tuple[float, ThermalReading]]:
        return self._history[:len(self._history)]

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2 * self.period_s + 1)


def _halves_close(values: Sequence[float], tolerance: float, *, relative: bool) -> bool:
    half = len(values) // 2
    first, second = values[:half], values[half:]
    if not first or not second:
        return False
    a, b = sum(first) / len(first), sum(second) / len(second)
    if relative:
        scale = sum(values) / len(values)
        return scale > 0 and abs(b - a) / scale <= tolerance
    return abs(b - a) <= tolerance


def settled(trace: Sequence[TraceSample], settings: SustainedSettings) -> bool:
    """Throughput, and temperature where measured, steady over the last ``settle_s`` (after the
    burst): the means of the two halves of that span agree within the tolerances."""
    if not trace or trace[-1].t_s < settings.burst_s + settings.settle_s:
        return False
    span = [s for s in trace if s.t_s > trace[-1].t_s - settings.settle_s]
    if not _halves_close([s.throughput_sps for s in span], settings.throughput_tolerance,
                         relative=True):
        return False
    temps = [s.temperature_c for s in span if s.temperature_c is not None]
    if len(temps) < len(span) // 2:  # no sensors (or too few readings): throughput alone
        return True
    return _halves_close(temps, settings.temperature_tolerance_c, relative=False)


def run_sustained(call: Callable[[], object], *, samples_per_call: int = 1,
                  settings: SustainedSettings | None = None, thermal: Any = None,
                  cancel: threading.Event | None = None,
                  clock: Callable[[], float] = time.perf_counter,
                  on_sample: Callable[[TraceSample], None] | None = None) -> SustainedReport:
    """Run ``call`` back to back until settled, ``cap_s`` or ``cancel`` (see the module).

    ``thermal`` has ``latest() -> ThermalReading`` (a started :class:`ThermalSampler` by default,
    closed at the end); ``on_sample`` sees each second's sample (progress)."""
    settings = settings or SustainedSettings()
    cancel = cancel or threading.Event()
    own_sampler = thermal is None
    sampler = ThermalSampler().start() if own_sampler else thermal
    trace: list[TraceSample] = []
    first = sampler.latest()
    throttle_known = first.throttled is not None
    started = clock()
    sample_start, sample_calls = started, 0
    burst_calls = 0
    total_calls = 0
    stopped = "cap"
    try:
        while True:
            call()
            now = clock()
            sample_calls += 1
            total_calls += 1
            if now - started <= settings.burst_s:
                burst_calls += 1
            if now - sample_start < settings.sample_s:
                continue
            reading = sampler.latest()
            throttle_known = throttle_known or reading.throttled is not None
            sample = TraceSample(round(now - started, 3),
                                 sample_calls * samples_per_call / (now - sample_start),
                                 reading.temperature_c, reading.throttled)
            trace.append(sample)
            if on_sample is not None:
                on_sample(sample)
            sample_start, sample_calls = now, 0
            if settled(trace, settings):
                stopped = "settled"
                break
            if now - started >= settings.cap_s:
                break
            if cancel.is_set():
                stopped = "cancelled"
                break
    finally:
        if own_sampler:
            sampler.close()
    duration_s = clock() - started
    burst_span = min(settings.burst_s, duration_s)
    burst = burst_calls * samples_per_call / burst_span if burst_span > 0 else None
    return make_report(trace, settings, stopped=stopped, duration_s=duration_s,
                       samples_total=total_calls * samples_per_call, burst_sps=burst,
                       first=first, throttle_known=throttle_known)


def make_report(trace: Sequence[TraceSample], settings: SustainedSettings, *, stopped: str,
                duration_s: float, samples_total: int, burst_sps: float | None,
                first: ThermalReading, throttle_known: bool | None = None) -> SustainedReport:
    """The report of a finished run: the sustained throughput is the mean over the last
    ``settle_s`` of the trace; the first throttle is the first sample that said so."""
    tail = [s for s in trace if s.t_s > trace[-1].t_s - settings.settle_s] if trace else []
    sustained = (sum(s.throughput_sps for s in tail) / len(tail)) if tail else None
    throttled_at = next((s.t_s for s in trace if s.throttled), None)
    temps = [s.temperature_c for s in trace if s.temperature_c is not None]
    if throttle_known is None:
        throttle_known = first.throttled is not None or any(
            s.throttled is not None for s in trace)
    sensors = sorted(set(first.sensors))
    return SustainedReport(
        stopped=stopped, duration_s=round(duration_s, 3), samples_total=samples_total,
        burst_sps=burst_sps, sustained_sps=sustained,
        sustained_over_burst=(sustained / burst_sps) if sustained is not None and burst_sps
        else None,
        time_to_first_throttle_s=throttled_at, throttle_known=throttle_known, sensors=sensors,
        start_temperature_c=first.temperature_c if first.temperature_c is not None
        else (temps[0] if temps else None),
        end_temperature_c=temps[-1] if temps else None, trace=list(trace),
        burst_s=min(settings.burst_s, duration_s))


def trace_from_starts(starts_ns: np.ndarray, samples_per_query: int,
                      readings: Sequence[tuple[float, ThermalReading]], *, sample_s: float = 1.0,
                      until_s: float | None = None) -> list[TraceSample]:
    """One sample per whole ``sample_s`` of a timed phase: the throughput of the queries that
    started in it, and the newest thermal reading taken by its end (``readings``' times are
    seconds from the phase start, in order). ``until_s`` (default: the last start) ends the last
    whole sample."""
    if len(starts_ns) == 0:
        return []
    end_s = float(starts_ns[-1]) / 1e9 if until_s is None else until_s
    whole = int(end_s // sample_s)
    if whole <= 0:
        return []
    counts = np.bincount((np.asarray(starts_ns) // int(sample_s * 1e9)).astype(np.int64),
                         minlength=whole)[:whole]
    return _trace_of_counts(counts, samples_per_query, readings, sample_s)


def _trace_of_counts(counts: np.ndarray, samples_per_query: int,
                     readings: Sequence[tuple[float, ThermalReading]],
                     sample_s: float) -> list[TraceSample]:
    times = [t for t, _ in readings]
    trace = []
    for k, count in enumerate(counts):
        t_s = (k + 1) * sample_s
        at = bisect_right(times, t_s) - 1
        reading = readings[max(at, 0)][1] if readings else ThermalReading(None, None)
        trace.append(TraceSample(round(t_s, 3), float(count) * samples_per_query / sample_s,
                                 reading.temperature_c, reading.throttled))
    return trace


def thin_trace(trace: Sequence[TraceSample], max_points: int = 300) -> list[TraceSample]:
    """At most ``max_points`` samples: runs of consecutive samples merged (mean throughput, the
    last temperature, throttled if any said so), so a 15-minute run stays a small message."""
    if len(trace) <= max_points:
        return list(trace)
    step = -(-len(trace) // max_points)
    out = []
    for i in range(0, len(trace), step):
        group = trace[i:i + step]
        flags = [s.throttled for s in group if s.throttled is not None]
        temps = [s.temperature_c for s in group if s.temperature_c is not None]
        out.append(TraceSample(group[-1].t_s,
                               sum(s.throughput_sps for s in group) / len(group),
                               temps[-1] if temps else None, any(flags) if flags else None))
    return out


class SustainedTracker:
    """The runner's side of the sustained profile: the timed phase's ``settled`` test.

    :meth:`start` (just before the timed phase) starts the thermal sampler and marks the phase
    start; the scenario calls :meth:`settled` with the start times so far about once a second
    once the minimum duration (``burst_s + settle_s``) has passed; :meth:`finish` (after it)
    stops the sampler and returns the report. One tracker serves one run (the runner's thread
    owns it; the sampler's thread only appends readings)."""

    def __init__(self, settings: SustainedSettings, *,
                 read: Callable[[], ThermalReading] = read_thermal,
                 clock: Callable[[], float] = time.perf_counter,
                 thermal: Any = None) -> None:
        """``thermal``: something with ``start()``, ``latest()``, ``history()`` and ``close()``
        on ``clock``'s time (tests: a simulated board); default a :class:`ThermalSampler` of
        ``read``."""
        self.settings = settings
        self._clock = clock
        self._thermal = thermal or ThermalSampler(read, settings.sample_s, clock)
        self._begin_s = 0.0
        self._first = ThermalReading(None, None)
        self.was_settled = False
        self._counts = np.zeros(0, dtype=np.int64)
        """queries started per sample so far, each start binned once (a check costs its new ones)"""
        self._binned = 0

    def start(self) -> None:
        self._thermal.start()
        self._first = self._thermal.latest()
        self._begin_s = self._clock()

    def readings(self) -> list[tuple[float, ThermalReading]]:
        return [(t - self._begin_s, r) for t, r in self._thermal.history()]

    def settled(self, starts_ns: np.ndarray) -> bool:
        sample_ns = int(self.settings.sample_s * 1e9)
        new = np.asarray(starts_ns[self._binned:]) // sample_ns
        self._binned = len(starts_ns)
        if len(new):
            size = max(len(self._counts), int(new[-1]) + 1)
            counts = np.zeros(size, dtype=np.int64)
            counts[:len(self._counts)] = self._counts
            counts += np.bincount(new.astype(np.int64), minlength=size)
            self._counts = counts
        whole = int((self._clock() - self._begin_s) // self.settings.sample_s)
        if whole > len(self._counts):  # seconds in which no query started
            self._counts = np.concatenate(
                [self._counts, np.zeros(whole - len(self._counts), dtype=np.int64)])
        trace = _trace_of_counts(self._counts[:whole], 1, self.readings(),
                                 self.settings.sample_s)
        self.was_settled = settled(trace, self.settings)
        return self.was_settled

    def close(self) -> None:
        """Stop the thermal sampling (again is harmless)."""
        self._thermal.close()

    def finish(self, starts_ns: np.ndarray, samples_per_query: int, wall_ns: int,
               samples_total: int) -> SustainedReport:
        self.close()
        duration_s = wall_ns / 1e9
        trace = trace_from_starts(starts_ns, samples_per_query, self.readings(),
                                  sample_s=self.settings.sample_s, until_s=duration_s)
        burst_span = min(self.settings.burst_s, duration_s)
        in_burst = int(np.count_nonzero(np.asarray(starts_ns) < int(burst_span * 1e9)))
        burst = in_burst * samples_per_query / burst_span if burst_span > 0 else None
        return make_report(trace, self.settings,
                           stopped="settled" if self.was_settled else "cap",
                           duration_s=duration_s, samples_total=samples_total,
                           burst_sps=burst, first=self._first)
