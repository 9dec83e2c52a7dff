"""What the daemon says about the board every ``telemetry_s``: CPU, memory, heat, throttling.

Readings are cheap (psutil, a few sysfs files, ``vcgencmd get_throttled`` on a Raspberry Pi) and
each one that the board does not offer is ``null``, never ``0``. ``cpu_util_pct`` is the
average since the previous snapshot (psutil's non-blocking form), so the probe never sleeps.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable

import psutil

from agent.system import decode_throttled, run_command
from shared.messages import Telemetry


class TelemetryProbe:
    def __init__(self, clock_s: Callable[[], float] = time.monotonic) -> None:
        self._clock_s = clock_s
        self._started_s = clock_s()
        self._vcgencmd = shutil.which("vcgencmd")
        psutil.cpu_percent(interval=None)  # the first call only starts psutil's interval

    def snapshot(self, *, device_id: str, fleet: str, spool_depth: int, spool_dropped_total: int,
                 current_job: str | None, jobs_queued: int) -> Telemetry:
        memory = psutil.virtual_memory()
        throttled: bool | None = None
        reasons: list[str] = []
        if self._vcgencmd:
            output = run_command([self._vcgencmd, "get_throttled"])
            if output:
                throttled, reasons = decode_throttled(output)
        return Telemetry(
            device_id=device_id, fleet=fleet,
            uptime_s=max(self._clock_s() - self._started_s, 0.0),
            cpu_util_pct=min(max(psutil.cpu_percent(interval=None), 0.0), 100.0),
            memory_used_bytes=int(memory.total - memory.available),
            memory_total_bytes=int(memory.total),
            temps_c=_temperatures(), throttled=throttled, throttle_reasons=reasons,
            spool_depth=spool_depth, spool_dropped_total=spool_dropped_total,
            current_job=current_job, jobs_queued=jobs_queued,
        )


def _temperatures() -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(AttributeError, OSError):
        for chip, entries in psutil.sensors_temperatures().items():
            for i, entry in enumerate(entries):
                if entry.current is not None and -60 < entry.current < 200:
                    out[f"{chip}.{entry.label or i}"] = float(entry.current)
    return out
