"""EnergyMonitor: samples one opened power source in the background and reports a window's energy.

Usage by the runner (which owns the clock)::

    with open_energy_monitor(settings, hardware=entry, cores_used=4) as monitor:
        monitor.measure_idle()          # before the run, same source
        monitor.begin()                 # right before the timed phase
        ...                             # timed loop: the sampler does the reading
        report = monitor.end(inferences)

:func:`open_energy_monitor` turns the run's ``power`` settings (:class:`PowerSettings`) into a
monitor: :class:`NullEnergyMonitor` for ``source = "none"`` (it measures nothing, so the runner
has no branches for it), else an :class:`EnergyMonitor` on the source :func:`open_source` picks.

Picking (:func:`open_source`): a name that is unusable raises
:class:`agent.errors.PowerSourceError`; ``auto`` tries :func:`agent.power.registry.auto_order`,
logs at INFO why each source was skipped and falls back to the labelled estimate; when even the
estimate cannot be made, the run has the null monitor and a warning says so.

Cost on the caller's thread: ``begin()`` takes a timestamp, plus one snapshot read for counter
sources that are cheap to read (RAPL: a few small sysfs files; the estimate: the process's CPU
time) so the window edges are exact. The first ``begin()`` (or ``measure_idle()``) also takes the
first reading and starts the sampler, before the timed phase. ``end()`` takes the closing
timestamp (or counter snapshot) first; for gauges it then, outside the timed phase, takes one more
reading so the right edge is bracketed. Sources' ``read()`` is therefore called from two threads
and must be thread-safe (all registered ones are).

Time is injected: ``clock_ns`` stamps the window edges (and, through the source's context, the
readings), ``sleep`` lets the idle baseline pass and ``ticker`` drives the sampler;
:class:`agent.power.clock.ManualClock` provides all three for tests.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from agent.errors import PowerSourceError
from agent.power import registry
from agent.power.base import PowerSource, SourceContext
from agent.power.clock import ClockNs, Sleep, Ticker
from agent.power.sampler import Sampler, WindowStats, finite, peak_window_s, summarize
from agent.power.settings import PowerSettings
from shared.catalogue import HardwareEntry, load_catalogue
from shared.errors import ConfigError
from shared.schema import EnergyReport, PowerTrace, RailEnergy

if TYPE_CHECKING:
    from agent.config import BenchSettings

logger = logging.getLogger(__name__)

MIN_COVERAGE = 0.9


class EnergyMonitor:
    """Samples an opened ``source`` and turns windows into :class:`EnergyReport` blocks."""

    def __init__(
        self,
        source: PowerSource,
        *,
        hz: float = 20.0,
        idle_s: float = 3.0,
        clock_ns: ClockNs | None = None,
        sleep: Sleep = time.sleep,
        ticker: Ticker | None = None,
    ) -> None:
        """``clock_ns`` defaults to the source's own clock (``source.context.clock_ns``)."""
        if not hz > 0:
            raise ConfigError(f"[power] hz must be positive, not {hz}")
        if idle_s < 0:
            raise ConfigError(f"[power] idle_s must be 0 or more, not {idle_s}")
        self.idle_s = idle_s
        self.idle_power_w: float | None = None
        self._source = source
        self._clock_ns = clock_ns or source.context.clock_ns
        self._sleep = sleep
        self._sampler = Sampler(source, hz, clock_ns=self._clock_ns, ticker=ticker)
        self._t0: float | None = None
        self._closed = False
        logger.info("power source %s (scope %s, %s) at %.1f Hz", source.name, source.scope.value,
                    source.kind, self._sampler.hz)

    @property
    def source_name(self) -> str:
        return self._source.name

    @property
    def source(self) -> PowerSource:
        return self._source

    @property
    def sampler(self) -> Sampler:
        return self._sampler

    # the window ------------------------------------------------------------------------------

    def _ensure_running(self) -> Sampler:
        if self._closed:
            raise RuntimeError("EnergyMonitor is closed")
        self._sampler.start()
        return self._sampler

    def _edge(self, sampler: Sampler) -> float:
        if self._source.edge_snapshot:
            reading = sampler.snapshot()
            if reading is not None:
                return reading.t_s
        return self._clock_ns() / 1e9

    def _close_edge(self, sampler: Sampler) -> None:
        """After the window closed: one more gauge reading so the right edge is bracketed."""
        if not self._source.edge_snapshot:
            sampler.snapshot()

    def _stats(self, sampler: Sampler, t0: float, t1: float) -> WindowStats:
        source = self._source
        return summarize(
            source.kind, sampler.around(t0, t1), t0, t1, source.counted_rails, source.wrap_j,
            sampler.hz, peak_window=peak_window_s(source.update_period_s),
        )

    def measure_idle(self) -> None:
        """Average power over ``idle_s`` seconds of doing nothing, with the same source."""
        if self.idle_s <= 0:
            return
        sampler = self._ensure_running()
        t0 = self._edge(sampler)
        self._sleep(self.idle_s)
        t1 = self._edge(sampler)
        self._close_edge(sampler)
        stats = self._stats(sampler, t0, t1)
        sampler.discard_before(t1)
        self.idle_power_w = finite(stats.avg_power_w)
        if stats.coverage is not None and stats.coverage < MIN_COVERAGE:
            logger.warning("idle baseline samples cover only %.0f%% of %g s: not used",
                           stats.coverage * 100, self.idle_s)
            self.idle_power_w = None
        if self.idle_power_w is None:
            logger.warning("no idle baseline from %s: dynamic energy is not reported",
                           self._source.name)

    def begin(self) -> None:
        """Open the window now (the sampler starts first if it is not running)."""
        sampler = self._ensure_running()
        self._t0 = self._edge(sampler)
        sampler.discard_before(self._t0)

    def end(self, inferences: int) -> EnergyReport | None:
        """Close the window now and compute the result block for ``inferences`` inferences."""
        if self._t0 is None:
            raise RuntimeError("EnergyMonitor.end() without begin()")
        sampler = self._sampler
        t1 = self._edge(sampler)
        t0, self._t0 = self._t0, None
        self._close_edge(sampler)
        return self._report(self._stats(sampler, t0, t1), inferences)

    def _report(self, stats: WindowStats, inferences: int) -> EnergyReport:
        source = self._source
        reasons: list[str] = []
        energy = finite(stats.energy_j)
        if energy is None:
            reasons.append(
                f"no usable {source.name} readings in the window "
                f"({self._sampler.errors} read errors; see the log)"
            )
        if source.update_period_s > 0 and stats.window_s < source.update_period_s:
            reasons.append(
                f"window {stats.window_s:.3f} s is shorter than the {source.name} update period "
                f"{source.update_period_s:g} s: run longer"
            )
        if stats.coverage is not None and stats.coverage < MIN_COVERAGE:
            reasons.append(
                f"power samples cover only {stats.coverage:.0%} of the window "
                f"(need {MIN_COVERAGE:.0%})"
            )
        if inferences <= 0:
            reasons.append("no inferences were counted in the window")
        per_inf = energy / inferences if energy is not None and inferences > 0 else None
        dynamic = None
        if per_inf is not None and energy is not None and self.idle_power_w is not None:
            dynamic = (energy - self.idle_power_w * stats.window_s) / inferences
        trace = None
        if stats.trace_t_s:
            trace = PowerTrace(t_s=stats.trace_t_s, power_w=stats.trace_power_w)
        peak_window_ms = None if stats.peak_window_s is None else stats.peak_window_s * 1e3
        if peak_window_ms is None and source.update_period_s > 0:
            peak_window_ms = source.update_period_s * 1e3  # a gauge's sample spans its period
        return EnergyReport(
            source=source.name,
            scope=source.scope,
            estimated=source.estimated,
            rails=[
                RailEnergy(name=name, avg_power_w=finite(avg), energy_j=finite(joules))
                for name, (avg, joules) in stats.rails.items()
            ],
            sample_hz=self._sampler.hz,
            samples=stats.samples,
            coverage=None if stats.coverage is None else round(stats.coverage, 4),
            window_s=stats.window_s,
            avg_power_w=finite(stats.avg_power_w),
            peak_power_w=finite(stats.peak_power_w),
            peak_window_ms=peak_window_ms,
            idle_power_w=self.idle_power_w,
            energy_j=energy,
            joules_per_inference=per_inf,
            dynamic_joules_per_inference=dynamic,
            inferences_per_joule=inferences / energy if energy and energy > 0 else None,
            trace=trace,
            notes=list(source.notes),
            valid=not reasons,
            reasons=reasons,
        )

    # lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the sampler and release the source. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._sampler.stop()
        try:
            self._source.close()
        except Exception as err:
            logger.debug("closing %s failed: %s", self._source.name, err)

    def __enter__(self) -> EnergyMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NullEnergyMonitor:
    """The monitor of a run without power sampling (``--power none``): it measures nothing.

    It has :class:`EnergyMonitor`'s methods, so the runner calls the same ones either way.
    """

    source_name = "none"

    def measure_idle(self) -> None:
        """Nothing to measure."""

    def begin(self) -> None:
        """Nothing to open."""

    def end(self, inferences: int) -> EnergyReport | None:
        """No energy block."""
        return None

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> NullEnergyMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(
    power: PowerSettings,
    context: SourceContext,
    *,
    overrides: Mapping[str, PowerSource] | None = None,
) -> PowerSource | None:
    """The opened source ``power.source`` names (``auto``: the first usable), or None for none.

    ``overrides`` replaces registry entries by ready-made sources (tests, fakes).
    """
    if power.source == "none":
        return None
    given = dict(overrides or {})

    def build(name: str) -> PowerSource:
        return given[name] if name in given else registry.create(name, power.table(name), context)

    if power.source == "auto":
        return _pick_auto(build)
    source = build(power.source)
    why = source.probe()
    if why is not None:
        raise PowerSourceError(f"--power {power.source}: {why}")
    source.open()
    return source


def _pick_auto(build: Callable[[str], PowerSource]) -> PowerSource | None:
    for name in registry.auto_order():
        try:
            source = build(name)
            why = source.probe()
            if why is None:
                source.open()
                return source
        except PowerSourceError as err:
            why = str(err)
        except Exception as err:
            why = f"{type(err).__name__}: {err}"
        logger.info("power source %s skipped: %s", name, why)
    logger.warning("no power source, not even the estimate: energy is not reported")
    return None


def open_energy_monitor(
    settings: BenchSettings,
    *,
    hardware: HardwareEntry | None,
    cores_used: int,
    clock_ns: ClockNs = time.monotonic_ns,
) -> EnergyMonitor | NullEnergyMonitor:
    """The monitor a run's settings ask for: the null monitor for ``power.source == "none"`` (or
    when ``auto`` finds nothing, not even the estimate), else an :class:`EnergyMonitor`."""
    power = settings.power
    if power.source in ("auto", "estimate") and hardware is None:
        hardware = load_catalogue(settings.catalogue).match(machine=platform.machine())
    context = SourceContext(hardware=hardware, cores_used=cores_used, clock_ns=clock_ns)
    source = open_source(power, context)
    if source is None:
        return NullEnergyMonitor()
    return EnergyMonitor(source, hz=power.hz, idle_s=power.idle_s, clock_ns=clock_ns)
