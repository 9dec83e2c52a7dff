"""NVIDIA Jetson on-module power monitors, found the way the kernel lays them out.

Three layouts (see ``tests/power/fixtures/README.md`` for the source of each):

* JetPack >= 5, INA3221 under hwmon (kernel ``Documentation/hwmon/ina3221.rst``): devices under
  ``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*`` (also ``/sys/class/hwmon/*`` whose ``name`` is
  ``ina3221``); channel N has ``inN_label``, ``inN_input`` (bus voltage, mV) and ``currN_input``
  (mA), power is V x I. ``in7`` ("sum of shunt voltages") and rails labelled ``NC`` are skipped,
  as are channels with ``inN_enable`` = 0.
* JetPack <= 4, INA3221 under IIO: ``/sys/bus/i2c/drivers/ina3221x/*/iio:device*`` with
  ``rail_name_N`` and ``in_powerN_input`` (mW).
* Jetson Thor, INA238 under hwmon (kernel ``Documentation/hwmon/ina238.rst``): ``name`` is
  ``ina238`` and ``power1_input`` is in microwatts; the rail is named by the hwmon ``label`` file
  where the device tree gives one, else by the device (``ina238-<bus-addr>``).

The total is the module input rail, ``VIN``, ``POM_5V_IN`` or ``VDD_IN``, when one exists (scope
``module``); otherwise (AGX Orin has no VDD_IN) the sum of the rails (scope ``soc_rails``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent.errors import PowerSourceError
from agent.power.base import (
    FileReader,
    OnceLogger,
    PowerSource,
    Reading,
    RootSettings,
    SourceContext,
    read_float,
    read_str,
    stamp,
)
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

TOTAL_RAILS = ("VIN", "POM_5V_IN", "VDD_IN")
SKIP_LABELS = ("nc", "sum of shunt voltages")


@dataclass(frozen=True)
class Channel:
    """How to read one rail: ``milliwatts`` file, or ``volts_mv`` x ``amps_ma`` files."""

    rail: str
    power_file: Path | None = None
    power_scale_w: float = 1e-3
    voltage_mv: Path | None = None
    current_ma: Path | None = None


class JetsonSettings(RootSettings):
    """Jetson: the root /sys/bus/i2c and /sys/class/hwmon are read under."""


class JetsonSource(PowerSource):
    name = "jetson"
    Settings = JetsonSettings
    settings: JetsonSettings
    scope = PowerScope.MODULE
    kind = "gauge"
    max_hz = 100.0
    update_period_s = 0.0

    def __init__(
        self,
        settings: JetsonSettings | None = None,
        context: SourceContext | None = None,
        *,
        reader: FileReader | None = None,
    ) -> None:
        super().__init__(settings, context)
        self.reader = reader or FileReader()
        self._channels: list[Channel] = []
        self._once = OnceLogger(logger)

    # discovery -------------------------------------------------------------------------------

    def _hwmon_dirs(self, driver: str) -> list[Path]:
        found: dict[Path, Path] = {}
        for hw in sorted(self.settings.path(f"/sys/bus/i2c/drivers/{driver}").glob("*/hwmon/hwmon*")):
            found.setdefault(hw.resolve(), hw)
        for hw in sorted(self.settings.path("/sys/class/hwmon").glob("*")):
            if read_str(self.reader, hw / "name") == driver:
                found.setdefault(hw.resolve(), hw)
        return list(found.values())

    def _ina3221_hwmon(self) -> list[Channel]:
        channels = []
        for hw in self._hwmon_dirs("ina3221"):
            for n in (1, 2, 3):
                label = read_str(self.reader, hw / f"in{n}_label")
                if label is None or label.lower() in SKIP_LABELS:
                    continue
                if read_str(self.reader, hw / f"in{n}_enable") == "0":
                    continue
                if not (hw / f"curr{n}_input").exists():
                    continue
                channels.append(Channel(label, voltage_mv=hw / f"in{n}_input",
                                        current_ma=hw / f"curr{n}_input"))
            interval_ms = read_float(self.reader, hw / "update_interval")
            if interval_ms and interval_ms > 0:
                self.update_period_s = max(self.update_period_s, interval_ms / 1000.0)
        return channels

    def _ina3221_iio(self) -> list[Channel]:
        channels = []
        base = self.settings.path("/sys/bus/i2c/drivers/ina3221x")
        for dev in sorted(base.glob("*/iio:device*")):
            for name_file in sorted(dev.glob("rail_name_*")):
                n = name_file.name.rsplit("_", 1)[1]
                label = read_str(self.reader, name_file)
                if not label or label.lower() in SKIP_LABELS:
                    continue
                power = dev / f"in_power{n}_input"
                if power.exists():
                    channels.append(Channel(label, power_file=power, power_scale_w=1e-3))
        return channels

    def _ina238(self) -> list[Channel]:
        channels = []
        for hw in self._hwmon_dirs("ina238"):
            power = hw / "power1_input"
            if not power.exists():
                continue
            label = read_str(self.reader, hw / "label")
            if not label:
                # /sys/class/hwmon/hwmonN links to .../<bus>-<addr>/hwmon/hwmonN
                real = hw.resolve()
                in_device = real.parent.name == "hwmon" and real.parent.parent.name != "class"
                label = f"ina238-{real.parent.parent.name if in_device else hw.name}"
            channels.append(Channel(label, power_file=power, power_scale_w=1e-6))
        return channels

    def _discover(self) -> list[Channel]:
        channels = self._ina3221_hwmon() + self._ina3221_iio() + self._ina238()
        seen: set[str] = set()
        unique = []
        for ch in channels:  # two monitors may reuse a label: keep the first
            if ch.rail not in seen:
                seen.add(ch.rail)
                unique.append(ch)
        return unique

    # interface -------------------------------------------------------------------------------

    def probe(self) -> str | None:
        try:
            channels = self._discover()
            if not channels:
                return (
                    "no INA3221/INA238 power monitor under "
                    f"{self.settings.path('/sys/bus/i2c/drivers')} or "
                    f"{self.settings.path('/sys/class/hwmon')} (not a Jetson)"
                )
            if self._power(channels[0]) is None:
                return f"cannot read rail {channels[0].rail}"
        except PermissionError as err:
            return (
                f"permission denied reading {err.filename}: run as a user in the 'video' "
                "group or as root"
            )
        except Exception as err:
            return f"Jetson probe failed: {err}"
        return None

    def open(self) -> None:
        why = self.probe()
        if why is not None:
            raise PowerSourceError(f"jetson: {why}")
        self._channels = self._discover()
        rails = [ch.rail for ch in self._channels]
        total = next((r for r in TOTAL_RAILS if r in rails), None)
        if total is not None:
            self.counted_rails, self.scope = (total,), PowerScope.MODULE
        else:
            self.counted_rails, self.scope = tuple(rails), PowerScope.SOC_RAILS
        if self.update_period_s > 0:
            self.max_hz = min(self.max_hz, 1.0 / self.update_period_s)
        logger.info("jetson rails %s, total from %s", rails, list(self.counted_rails))

    def _power(self, ch: Channel) -> float | None:
        if ch.power_file is not None:
            value = read_float(self.reader, ch.power_file)
            return None if value is None else value * ch.power_scale_w
        assert ch.voltage_mv is not None and ch.current_ma is not None
        mv = read_float(self.reader, ch.voltage_mv)
        ma = read_float(self.reader, ch.current_ma)
        return None if mv is None or ma is None else mv * ma / 1e6

    def read(self) -> Reading | None:
        clock_ns = self.context.clock_ns
        before = clock_ns()
        power: dict[str, float] = {}
        for ch in self._channels:
            value = self._power(ch)
            if value is None:
                self._once.warning(f"read:{ch.rail}", "jetson: cannot read rail %s", ch.rail)
                return None
            power[ch.rail] = value
        return Reading(t_s=stamp(clock_ns, before), power_w=power)
