"""A labelled estimate for machines without a power sensor (VMs, unknown boards).

Power is modelled from the hardware catalogue entry (:class:`shared.catalogue.HardwareEntry`)::

    P(u) = idle_w + (tdp_w - idle_w) * (2u - u**1.4)

the utilisation curve fitted by Fan, Weber and Barroso, "Power provisioning for a warehouse-sized
computer" (ISCA 2007), which rises faster than linear at low load and meets TDP at u = 1.

Utilisation ``u`` comes from this **process's** CPU time (user + system, all threads), not the
whole system's: on a shared VM other tenants' load is not the benchmark's, and the backends run
inside this process. It is read with ``time.process_time()`` (``CLOCK_PROCESS_CPUTIME_ID``): the
same quantity as psutil's ``Process().cpu_times()`` user + system, but with nanosecond rather than
10 ms resolution and far cheaper to read (psutil parses ``/proc/self/stat``), which keeps a 20 Hz
sampler cheap (``bench/sampler_overhead.py``). The sampler thread's own CPU time is included. ``u`` is
measured between consecutive readings, so the curve is applied at the sampling resolution and the
energy is accumulated as a counter (no integration error, exact window edges).

* entries with ``tdp_w`` (a whole machine): when the entry states its ``cores`` and this host has
  as many logical cores, or the entry states none, the entry describes this machine:
  ``u`` = CPU seconds / (wall seconds x logical cores of the machine);
* an entry whose ``cores`` differ from this host's (``--hardware xeon-8380-2s`` on a 2-core VM) does
  not describe this machine. With ``[power.estimate] fit = "scale"`` (the default) idle and TDP are
  scaled to the share of the entry's cores the benchmark uses (``cores_used / cores``) and ``u`` is
  relative to those cores; with ``fit = "refuse"`` the estimate refuses (``--power estimate`` fails
  with the reason, ``auto`` reports no energy). The energy block's ``notes`` say which was done;
* generic entries (``per_core_w`` only): TDP = ``per_core_w`` x cores used and ``u`` = CPU seconds /
  (wall seconds x cores used);
* cores used: ``[power.estimate] cores`` if set, else the run's (threads x streams), at most this
  host's logical cores;
* a missing ``idle_w`` counts as 0 W (said once in the log).

The report always says ``estimated: true`` and scope ``estimate``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from agent.errors import PowerSourceError
from agent.power.base import OnceLogger, PowerSource, Reading, SourceContext, SourceSettings
from shared.catalogue import HardwareEntry
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

RAIL = "cpu_estimate"
CURVE_EXPONENT = 1.4


def utilisation_curve(u: float) -> float:
    """Fraction of (TDP - idle) drawn at utilisation ``u`` in [0, 1] (Fan et al. 2007)."""
    u = min(max(u, 0.0), 1.0)
    return 2.0 * u - u**CURVE_EXPONENT


def process_cpu_s() -> float:
    """CPU seconds (user + system) used by every thread of this process."""
    return time.process_time()


class EstimateSettings(SourceSettings):
    """The labelled estimate: the cores it models and how a catalogue entry is fitted."""

    cores: int | None = Field(
        None, ge=1, description="cores the benchmark uses; default: the run's threads x streams"
    )
    fit: Literal["scale", "refuse"] = Field(
        "scale",
        description="an entry for another core count: scale it to the cores used, or refuse",
    )


@dataclass(frozen=True)
class PowerModel:
    """What the estimate uses: idle and TDP in watts, the cores ``u`` is relative to, and why."""

    idle_w: float
    tdp_w: float
    cores: int
    note: str


def power_model(
    entry: HardwareEntry | None, *, host_cores: int, cores_used: int | None,
    fit: Literal["scale", "refuse"] = "scale",
) -> PowerModel:
    """The estimate's model of ``entry`` on a host with ``host_cores`` logical cores.

    Raises ValueError with the reason when there is nothing to estimate from, or when ``entry``
    describes another core count and ``fit`` is ``"refuse"``.
    """
    if entry is None:
        raise ValueError("no hardware catalogue entry to estimate from (pass --hardware KEY)")
    used = min(cores_used or host_cores, host_cores)
    idle = entry.idle_w
    if entry.tdp_w is not None:
        if entry.cores is None or entry.cores == host_cores:
            tdp, cores = entry.tdp_w, host_cores
            stated = f"{entry.cores} cores" if entry.cores else "no core count"
            note = (f"estimate: catalogue entry {entry.key} ({stated}) taken as this whole "
                    f"{host_cores}-core machine")
        elif fit == "refuse":
            raise ValueError(
                f"catalogue entry {entry.key!r} describes {entry.cores} cores but this host has "
                f"{host_cores}: pass --hardware for this machine (e.g. generic-x86_64), or set "
                '[power.estimate] fit = "scale"'
            )
        else:
            share = used / entry.cores
            tdp, cores = entry.tdp_w * share, used
            idle = None if idle is None else idle * share
            note = (f"estimate: catalogue entry {entry.key} describes {entry.cores} cores, this "
                    f"host has {host_cores}: idle and TDP scaled to the {used} cores used "
                    f"({share:.4g} of {entry.tdp_w:g} W)")
    elif entry.per_core_w is not None:
        tdp, cores = entry.per_core_w * used, used
        note = f"estimate: {entry.per_core_w:g} W per core x {used} cores used ({entry.key})"
    else:
        raise ValueError(f"catalogue entry {entry.key!r} has neither tdp_w nor per_core_w")
    idle_w = 0.0 if idle is None else float(idle)
    return PowerModel(idle_w=idle_w, tdp_w=float(max(tdp, idle_w)), cores=cores, note=note)


class EstimateSource(PowerSource):
    name = "estimate"
    scope = PowerScope.ESTIMATE
    estimated = True
    kind = "counter"
    max_hz = 100.0
    update_period_s = 0.0
    edge_snapshot = True
    Settings = EstimateSettings
    settings: EstimateSettings

    def __init__(
        self,
        settings: EstimateSettings | None = None,
        context: SourceContext | None = None,
        *,
        cpu_seconds: Callable[[], float] | None = None,
        host_cores: int | None = None,
    ) -> None:
        """``cpu_seconds`` and ``host_cores`` replace the process's CPU time and
        ``os.cpu_count()`` (tests)."""
        super().__init__(settings, context)
        self.counted_rails = (RAIL,)
        self._cpu_seconds = cpu_seconds or process_cpu_s
        self._host_cores = host_cores or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._last: tuple[int, float] | None = None
        self._energy_j = 0.0
        self.idle_w = 0.0
        self.tdp_w = 0.0
        self.cores = 1
        self._once = OnceLogger(logger)

    def _model(self) -> PowerModel:
        """Raises ValueError with the reason the estimate cannot be made."""
        entry = self.context.hardware
        model = power_model(
            entry, host_cores=self._host_cores,
            cores_used=self.settings.cores or self.context.cores_used, fit=self.settings.fit,
        )
        if entry is not None and entry.idle_w is None:
            self._once.warning("idle", "catalogue entry %r has no idle_w: the estimate counts "
                               "idle as 0 W", entry.key)
        return model

    def probe(self) -> str | None:
        try:
            self._model()
        except ValueError as err:
            return str(err)
        except Exception as err:
            return f"estimate probe failed: {err}"
        return None

    def open(self) -> None:
        try:
            model = self._model()
        except ValueError as err:
            raise PowerSourceError(f"estimate: {err}") from err
        self.idle_w, self.tdp_w, self.cores = model.idle_w, model.tdp_w, model.cores
        self.notes = (model.note,)
        with self._lock:
            self._last = (self.context.clock_ns(), self._cpu_seconds())
        logger.info("estimating power: idle %.1f W, TDP %.1f W over %d cores (%s)",
                    self.idle_w, self.tdp_w, self.cores, model.note)

    def power_w(self, u: float) -> float:
        return self.idle_w + (self.tdp_w - self.idle_w) * utilisation_curve(u)

    def read(self) -> Reading | None:
        with self._lock:
            cpu = self._cpu_seconds()
            now_ns = self.context.clock_ns()
            if self._last is not None:
                last_ns, last_cpu = self._last
                dt = (now_ns - last_ns) / 1e9
                if dt > 0:
                    self._energy_j += self.power_w((cpu - last_cpu) / (dt * self.cores)) * dt
            self._last = (now_ns, cpu)
            return Reading(t_s=now_ns / 1e9, energy_j={RAIL: self._energy_j})
