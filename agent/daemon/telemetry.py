"""What the daemon says about the board every ``telemetry_s``: CPU, memory, heat, throttling, power.

Readings are cheap (psutil, a few sysfs files, ``vcgencmd get_throttled`` on a Raspberry Pi) and
each one that the board does not offer is ``null``, never ``0``. ``cpu_util_pct`` is the
average since the previous snapshot (psutil's non-blocking form), so the probe never sleeps.

Power comes from the same power source a job would use (the daemon's ``[bench]`` power settings,
``auto`` by default), sampled at 2 Hz at most between snapshots by :class:`TelemetryPower`: the
average watts since the previous telemetry, with the source's name and whether it is an estimate.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psutil

from agent.system import read_temperatures_c, read_throttle
from shared.errors import EdgemeterError
from shared.messages import Telemetry

if TYPE_CHECKING:
    from agent.config import BenchSettings

logger = logging.getLogger(__name__)

TELEMETRY_POWER_HZ = 2.0


class TelemetryPower:
    """Average power between two telemetry snapshots, from the daemon's power source."""

    def __init__(self, bench: BenchSettings | Mapping[str, Any]) -> None:
        from agent.config import BenchSettings
        from agent.power.monitor import NullEnergyMonitor, open_energy_monitor

        self.monitor: Any = NullEnergyMonitor()
        try:
            settings = bench if isinstance(bench, BenchSettings) \
                else BenchSettings.model_validate(dict(bench))
            power = settings.power.model_copy(
                update={"hz": min(settings.power.hz, TELEMETRY_POWER_HZ), "idle_s": 0.0})
            self.monitor = open_energy_monitor(settings.model_copy(update={"power": power}),
                                               hardware=None, cores_used=os.cpu_count() or 1)
            self.monitor.begin()
        except (EdgemeterError, ValueError) as err:  # ValueError: pydantic's ValidationError
            logger.warning("telemetry reports no power: %s", err)

    def read(self) -> tuple[float | None, str | None, bool | None]:
        """(average watts since the last read, source, estimated); Nones when unmeasured."""
        try:
            report = self.monitor.end(1)
            self.monitor.begin()
        except (EdgemeterError, RuntimeError) as err:
            logger.debug("telemetry power read failed: %s", err)
            return None, None, None
        if report is None or report.avg_power_w is None:
            return None, None, None
        return report.avg_power_w, report.source, report.estimated

    def close(self) -> None:
        self.monitor.close()


class TelemetryProbe:
    def __init__(self, clock_s: Callable[[], float] = time.monotonic,
                 power: TelemetryPower | None = None) -> None:
        self._clock_s = clock_s
        self._power = power
        self._started_s = clock_s()
        self._vcgencmd = shutil.which("vcgencmd")
        psutil.cpu_percent(interval=None)  # the first call only starts psutil's interval

    def snapshot(self, *, device_id: str, fleet: str, spool_depth: int, spool_dropped_total: int,
                 current_job: str | None, jobs_queued: int) -> Telemetry:
        memory = psutil.virtual_memory()
        throttled, reasons = read_throttle(self._vcgencmd)
        watts, source, estimated = self._power.read() if self._power else (None, None, None)
        return Telemetry(
            device_id=device_id, fleet=fleet,
            uptime_s=max(self._clock_s() - self._started_s, 0.0),
            cpu_util_pct=min(max(psutil.cpu_percent(interval=None), 0.0), 100.0),
            memory_used_bytes=int(memory.total - memory.available),
            memory_total_bytes=int(memory.total),
            temps_c=read_temperatures_c(), throttled=throttled, throttle_reasons=reasons,
            power_w=watts, power_source=source, power_estimated=estimated,
            spool_depth=spool_depth, spool_dropped_total=spool_dropped_total,
            current_job=current_job, jobs_queued=jobs_queued,
        )

