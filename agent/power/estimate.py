"""A labelled estimate for machines without a power sensor (VMs, unknown boards).

Power is modelled from the hardware catalogue entry (:class:`shared.catalogue.HardwareEntry`)::

    P(u) = idle_w + (tdp_w - idle_w) * (2u - u**1.4)

the utilisation curve fitted by Fan, Weber and Barroso, "Power provisioning for a warehouse-sized
computer" (ISCA 2007), which rises faster than linear at low load and meets TDP at u = 1.

Utilisation ``u`` comes from this **process's** CPU time (user + system, all threads), not the
whole system's: on a shared VM other tenants' load is not the benchmark's, and the backends run
inside this process. It is read with ``time.process_time()`` (``CLOCK_PROCESS_CPUTIME_ID``): the
same quantity as psutil's ``Process().cpu_times()`` user + system, but with nanosecond rather than
10 ms resolution and about 40x cheaper (psutil parses ``/proc/self/stat``), which keeps a 20 Hz
sampler well under 1 % of a core. The sampler thread's own CPU time (< 1 %) is included. ``u`` is
measured between consecutive readings, so the curve is applied at the sampling resolution and the
energy is accumulated as a counter (no integration error, exact window edges).

* entries with ``tdp_w``: ``u`` = CPU seconds / (wall seconds x logical cores of the machine);
* generic entries (``per_core_w`` only): TDP = ``per_core_w`` x cores used (``cores_used``, else
  every logical core) and ``u`` = CPU seconds / (wall seconds x cores used);
* a missing ``idle_w`` counts as 0 W (said once in the log).

The report always says ``estimated: true`` and scope ``estimate``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from agent.errors import PowerSourceError
from agent.power.base import OnceLogger, PowerSource, Reading, SourceConfig
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


class EstimateSource(PowerSource):
    name = "estimate"
    scope = PowerScope.ESTIMATE
    estimated = True
    kind = "counter"
    max_hz = 100.0
    update_period_s = 0.0
    edge_snapshot = True

    def __init__(
        self, config: SourceConfig, cpu_seconds: Callable[[], float] | None = None
    ) -> None:
        super().__init__(config)
        self.counted_rails = (RAIL,)
        self._cpu_seconds = cpu_seconds or process_cpu_s
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None
        self._energy_j = 0.0
        self.idle_w = 0.0
        self.tdp_w = 0.0
        self.cores = 1
        self._once = OnceLogger(logger)

    def _model(self) -> tuple[float, float, int]:
        """(idle_w, tdp_w, cores the utilisation is relative to); raises ValueError."""
        entry = self.config.hardware
        if entry is None:
            raise ValueError("no hardware catalogue entry to estimate from (pass --hardware KEY)")
        all_cores = os.cpu_count() or 1
        if entry.tdp_w is not None:
            idle, tdp, cores = entry.idle_w, entry.tdp_w, all_cores
        elif entry.per_core_w is not None:
            cores = self.config.cores_used or all_cores
            idle, tdp = entry.idle_w, entry.per_core_w * cores
        else:
            raise ValueError(f"catalogue entry {entry.key!r} has neither tdp_w nor per_core_w")
        if idle is None:
            self._once.warning("idle", "catalogue entry %r has no idle_w: the estimate counts "
                               "idle as 0 W", entry.key)
            idle = 0.0
        return float(idle), float(max(tdp, idle)), cores

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
            self.idle_w, self.tdp_w, self.cores = self._model()
        except ValueError as err:
            raise PowerSourceError(f"estimate: {err}") from err
        with self._lock:
            self._last = (time.monotonic(), self._cpu_seconds())
        logger.info("estimating power: idle %.1f W, TDP %.1f W over %d cores",
                    self.idle_w, self.tdp_w, self.cores)

    def power_w(self, u: float) -> float:
        return self.idle_w + (self.tdp_w - self.idle_w) * utilisation_curve(u)

    def read(self) -> Reading | None:
        with self._lock:
            cpu = self._cpu_seconds()
            now = time.monotonic()
            if self._last is not None:
                last_t, last_cpu = self._last
                dt = now - last_t
                if dt > 0:
                    self._energy_j += self.power_w((cpu - last_cpu) / (dt * self.cores)) * dt
            self._last = (now, cpu)
            return Reading(t_s=now, energy_j={RAIL: self._energy_j})
