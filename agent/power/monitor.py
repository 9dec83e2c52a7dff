"""EnergyMonitor: picks a source, samples it in the background and reports one window's energy.

Usage by the runner (which owns the clock)::

    with EnergyMonitor("auto", hz=20, idle_s=3, hardware=entry) as monitor:
        monitor.measure_idle()          # before the run, same source
        monitor.begin()                 # right before the timed phase
        ...                             # timed loop: the sampler thread does the reading
        report = monitor.end(inferences)

Cost on the caller's thread: ``begin()`` takes a timestamp, plus one snapshot read for counter
sources that are cheap to read (RAPL: a few small sysfs files; the estimate: ``/proc/self/stat``)
so the window edges are exact. The first ``begin()`` (or ``measure_idle()``) also starts the
sampler thread and waits for its first reading, before the timed phase. ``end()`` takes the
closing timestamp (or counter snapshot) first; for gauges it then, outside the timed phase, takes
one more reading on the caller's thread so the right edge is bracketed. Sources' ``read()`` is
therefore called from two threads and must be thread-safe (all registered ones are).

Picking: ``none`` disables energy (``end()`` returns None); a name that is unusable raises
:class:`shared.errors.PowerSourceError`; ``auto`` tries :func:`agent.power.registry.auto_order`,
logs at INFO why each source was skipped and falls back to the labelled estimate.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from agent.errors import PowerSourceError
from agent.power import registry
from agent.power.base import PowerSource, SourceConfig
from agent.power.sampler import Sampler, WindowStats, finite, summarize
from shared.catalogue import HardwareEntry, load_catalogue
from shared.errors import ConfigError
from shared.schema import EnergyReport, PowerTrace, RailEnergy

if TYPE_CHECKING:
    from agent.config import BenchSettings

logger = logging.getLogger(__name__)

MIN_COVERAGE = 0.9
FIRST_SAMPLE_TIMEOUT_S = 2.0


class EnergyMonitor:
    def __init__(
        self,
        power: str = "auto",
        *,
        sysfs_root: Path = Path("/"),
        hz: float = 20.0,
        idle_s: float = 3.0,
        hardware: HardwareEntry | None = None,
        cores_used: int | None = None,
        mqtt_url: str | None = None,
        power_topic: str | None = None,
        rpi5_calibration: tuple[float, float] | None = None,
        sources: Mapping[str, PowerSource] | None = None,
    ) -> None:
        """``sources`` replaces registry entries by ready-made objects (tests, fakes)."""
        if not hz > 0:
            raise ConfigError(f"--power-hz must be positive, not {hz}")
        if idle_s < 0:
            raise ConfigError(f"--idle-s must be 0 or more, not {idle_s}")
        self.requested = power
        self.idle_s = idle_s
        self.idle_power_w: float | None = None
        self._source: PowerSource | None = None
        self._sampler: Sampler | None = None
        self._t0: float | None = None
        self._closed = False
        if power == "none":
            return
        if hardware is None and (power in ("auto", "estimate")):
            hardware = load_catalogue().match(machine=platform.machine())
        config = SourceConfig(
            sysfs_root=Path(sysfs_root), hardware=hardware, cores_used=cores_used,
            mqtt_url=mqtt_url, power_topic=power_topic, rpi5_calibration=rpi5_calibration,
        )
        overrides = dict(sources or {})

        def build(name: str) -> PowerSource:
            return overrides[name] if name in overrides else registry.create(name, config)

        if power == "auto":
            self._source = self._pick_auto(build)
        else:
            source = build(power)
            why = source.probe()
            if why is not None:
                raise PowerSourceError(f"--power {power}: {why}")
            source.open()
            self._source = source
        if self._source is not None:
            self._sampler = Sampler(self._source, hz)
            logger.info("power source %s (scope %s, %s) at %.1f Hz", self._source.name,
                        self._source.scope.value, self._source.kind, self._sampler.hz)

    @staticmethod
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

    @property
    def source_name(self) -> str | None:
        return None if self._source is None else self._source.name

    @property
    def source(self) -> PowerSource | None:
        return self._source

    @property
    def sampler(self) -> Sampler | None:
        return self._sampler

    # the window ------------------------------------------------------------------------------

    def _ensure_running(self) -> Sampler:
        assert self._sampler is not None
        if self._closed:
            raise RuntimeError("EnergyMonitor is closed")
        if not self._sampler.running:
            self._sampler.start()
            self._sampler.wait_for_sample(0.0, FIRST_SAMPLE_TIMEOUT_S)
        return self._sampler

    def _edge(self, sampler: Sampler) -> float:
        assert self._source is not None
        if self._source.edge_snapshot:
            reading = sampler.snapshot()
            if reading is not None:
                return reading.t_s
        return time.monotonic()

    def _close_edge(self, sampler: Sampler) -> None:
        """After the window closed: one more gauge reading so the right edge is bracketed."""
        if not (self._source is not None and self._source.edge_snapshot):
            sampler.snapshot()

    def _stats(self, sampler: Sampler, t0: float, t1: float) -> WindowStats:
        assert self._source is not None
        return summarize(
            self._source.kind, sampler.around(t0, t1), t0, t1, self._source.counted_rails,
            self._source.wrap_j, sampler.hz,
        )

    def measure_idle(self) -> None:
        """Average power over ``idle_s`` seconds of doing nothing, with the same source."""
        if self._source is None or self.idle_s <= 0:
            return
        sampler = self._ensure_running()
        t0 = self._edge(sampler)
        time.sleep(self.idle_s)
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
        if self._source is None:
            return
        sampler = self._ensure_running()
        self._t0 = self._edge(sampler)
        sampler.discard_before(self._t0)

    def end(self, inferences: int) -> EnergyReport | None:
        """Close the window now and compute the result block for ``inferences`` inferences."""
        if self._source is None or self._sampler is None:
            return None
        if self._t0 is None:
            raise RuntimeError("EnergyMonitor.end() without begin()")
        sampler = self._sampler
        t1 = self._edge(sampler)
        t0, self._t0 = self._t0, None
        self._close_edge(sampler)
        return self._report(self._stats(sampler, t0, t1), inferences)

    def _report(self, stats: WindowStats, inferences: int) -> EnergyReport:
        assert self._source is not None and self._sampler is not None
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
            idle_power_w=self.idle_power_w,
            energy_j=energy,
            joules_per_inference=per_inf,
            dynamic_joules_per_inference=dynamic,
            inferences_per_joule=inferences / energy if energy and energy > 0 else None,
            trace=trace,
            valid=not reasons,
            reasons=reasons,
        )

    # lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the sampler and release the source. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._sampler is not None:
            self._sampler.stop()
        if self._source is not None:
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


def open_energy_monitor(
    settings: BenchSettings, *, hardware: HardwareEntry | None, cores_used: int
) -> EnergyMonitor | NullEnergyMonitor:
    """The monitor a run's settings ask for: the null monitor for ``power == "none"``."""
    if settings.power == "none":
        return NullEnergyMonitor()
    return EnergyMonitor(
        settings.power,
        sysfs_root=settings.sysfs_root,
        hz=settings.power_hz,
        idle_s=settings.idle_s,
        hardware=hardware,
        cores_used=cores_used,
        mqtt_url=settings.power_mqtt,
        power_topic=settings.power_topic,
        rpi5_calibration=settings.rpi5_calibration,
    )
