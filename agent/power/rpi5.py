"""Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``.

The command prints one line per ADC channel, currents as ``NAME_A current(N)=0.123A`` and voltages
as ``NAME_V volt(N)=0.880V`` (Raspberry Pi documentation, "vcgencmd"; an example in that format is
``tests/power/fixtures/rpi5/pmic_read_adc.txt``). A rail's power is V x I of the channels sharing
its name; ``EXT5V`` (the 5 V input) reports a voltage only and so is not a rail.

The PMIC sees the board's internal rails only, so the plain total (the sum of rails) has scope
``soc_rails``. A linear calibration ``(scale, offset)``, fitted by the user against a wall meter,
turns it into input power: ``input_w = scale * sum_w + offset``, reported as the rail
``input_calibrated`` with scope ``board``.

Every reading spawns ``vcgencmd``; the rate is capped at 5 Hz to keep that cheap.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess

from pydantic import Field, field_validator

from agent.errors import PowerSourceError
from agent.power.base import (
    CommandRunner,
    OnceLogger,
    PowerSource,
    Reading,
    SourceContext,
    SourceSettings,
    run_command,
    stamp,
)
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

COMMAND = ("vcgencmd", "pmic_read_adc")
CALIBRATED_RAIL = "input_calibrated"
_LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<unit>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-+0-9.eE]+)[AV]\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, float]:
    """Rail name -> watts (V x I) from the output of ``vcgencmd pmic_read_adc``."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        target = amps if match["unit"] == "A" else volts
        target[match["rail"]] = float(match["value"])
    return {rail: volts[rail] * amps[rail] for rail in amps if rail in volts}


class Rpi5Settings(SourceSettings):
    """Raspberry Pi 5 PMIC: an optional wall-meter calibration of the rail sum."""

    calibration: tuple[float, float] | None = Field(
        None, description="input W = scale x PMIC rail W + offset, as [scale, offset]"
    )

    @field_validator("calibration")
    @classmethod
    def _sane(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return value
        scale, offset = value
        if not (math.isfinite(scale) and math.isfinite(offset)):
            raise ValueError("scale and offset must be finite numbers")
        if scale <= 0:
            raise ValueError(f"scale must be positive, not {scale:g} (input W = scale x PMIC W + offset)")
        return value


class Rpi5Source(PowerSource):
    name = "rpi5"
    Settings = Rpi5Settings
    settings: Rpi5Settings
    scope = PowerScope.SOC_RAILS
    kind = "gauge"
    max_hz = 5.0
    update_period_s = 0.0

    def __init__(
        self,
        settings: Rpi5Settings | None = None,
        context: SourceContext | None = None,
        *,
        runner: CommandRunner = run_command,
    ) -> None:
        super().__init__(settings, context)
        self.runner = runner
        self._once = OnceLogger(logger)
        if self.settings.calibration is not None:
            self.scope = PowerScope.BOARD

    def _run(self) -> str:
        return self.runner(COMMAND)

    def probe(self) -> str | None:
        if self.runner is run_command and shutil.which(COMMAND[0]) is None:
            return "vcgencmd not found (Raspberry Pi OS package raspi-utils; Raspberry Pi 5 only)"
        try:
            rails = parse_pmic_read_adc(self._run())
        except (OSError, subprocess.SubprocessError) as err:
            return f"'{' '.join(COMMAND)}' failed: {err} (needs a Raspberry Pi 5 firmware)"
        except Exception as err:
            return f"rpi5 probe failed: {err}"
        if not rails:
            return f"'{' '.join(COMMAND)}' printed no rails (not a Raspberry Pi 5?)"
        return None

    def open(self) -> None:
        why = self.probe()
        if why is not None:
            raise PowerSourceError(f"rpi5: {why}")
        rails = tuple(parse_pmic_read_adc(self._run()))
        if self.settings.calibration is not None:
            self.counted_rails = (CALIBRATED_RAIL,)
        else:
            self.counted_rails = rails

    def read(self) -> Reading | None:
        clock_ns = self.context.clock_ns
        before = clock_ns()
        try:
            power = parse_pmic_read_adc(self._run())
        except (OSError, subprocess.SubprocessError) as err:
            self._once.warning("run", "rpi5: vcgencmd failed: %s", err)
            return None
        if not power:
            return None
        if self.settings.calibration is not None:
            scale, offset = self.settings.calibration
            power[CALIBRATED_RAIL] = scale * sum(power.values()) + offset
        return Reading(t_s=stamp(clock_ns, before), power_w=power)
