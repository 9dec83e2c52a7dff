"""Intel/AMD RAPL through the Linux powercap framework (kernel ``Documentation/power/powercap``).

Every zone appears flat under ``/sys/class/powercap/intel-rapl:*`` with ``name`` (``package-0``,
``core``, ``uncore``, ``dram``, ``psys``), ``energy_uj`` (a counter in microjoules) and
``max_energy_range_uj`` (where the counter wraps back to 0).

Domains overlap: psys covers the platform around the package, a package covers its cores. They are
never added: the total is the sum of the ``package-N`` zones (one per socket); without packages it
is ``psys``, else ``core``. Packages win over psys because psys is only filled in on platforms
whose firmware reports platform power (many desktops leave it at 0, which would be a silent 0);
the other zones are reported as rails for information. The scope is ``cpu_package``.

Since CVE-2020-8694 (Platypus) ``energy_uj`` is readable by root only; a permission error says how
to grant read access.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.errors import PowerSourceError
from agent.power.base import (
    FileReader,
    PowerSource,
    Reading,
    RootSettings,
    SourceContext,
    read_str,
    stamp,
)
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

POWERCAP = "/sys/class/powercap"
PERMISSION_HINT = (
    "RAPL energy counters are root-only since CVE-2020-8694: grant read access with "
    "'sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj' (until reboot), or a udev rule "
    "ACTION==\"add\", SUBSYSTEM==\"powercap\", RUN+=\"/bin/chmod o+r /sys%p/energy_uj\", "
    "or run as root"
)


class RaplSettings(RootSettings):
    """RAPL: the root /sys/class/powercap is read under."""


class RaplSource(PowerSource):
    name = "rapl"
    Settings = RaplSettings
    settings: RaplSettings
    scope = PowerScope.CPU_PACKAGE
    kind = "counter"
    max_hz = 100.0
    update_period_s = 0.001  # the counters advance about every millisecond
    edge_snapshot = True

    def __init__(
        self,
        settings: RaplSettings | None = None,
        context: SourceContext | None = None,
        *,
        reader: FileReader | None = None,
    ) -> None:
        super().__init__(settings, context)
        self.reader = reader or FileReader()
        self._zones: dict[str, Path] = {}

    def _discover(self) -> tuple[dict[str, Path], tuple[str, ...], dict[str, float]]:
        """Zones by rail name, the counted rails and the wrap ranges. Raises PermissionError."""
        base = self.settings.path(POWERCAP)
        zones: dict[str, Path] = {}
        wrap: dict[str, float] = {}
        if not base.is_dir():
            return zones, (), wrap
        for zone in sorted(base.glob("intel-rapl:*")):
            label = read_str(self.reader, zone / "name")
            if label is None or read_str(self.reader, zone / "enabled") == "0":
                continue
            parts = zone.name.split(":")[1:]
            # sub-zones (intel-rapl:0:0) are named after their parent: package-0/core
            rail = label if len(parts) == 1 else f"{parent_name(self, base, parts[0])}/{label}"
            zones[rail] = zone / "energy_uj"
            max_uj = read_str(self.reader, zone / "max_energy_range_uj")
            if max_uj and max_uj.isdigit() and int(max_uj) > 0:
                wrap[rail] = int(max_uj) / 1e6
        packages = tuple(r for r in zones if r.startswith("package-") and "/" not in r)
        if packages:
            counted = packages
        elif "psys" in zones:
            counted = ("psys",)
        else:
            counted = tuple(r for r in zones if r.endswith("core"))
        return zones, counted, wrap

    def probe(self) -> str | None:
        try:
            zones, counted, _ = self._discover()
            if not zones:
                return (
                    f"no RAPL zones under {self.settings.path(POWERCAP)} (not an Intel/AMD CPU, "
                    "or the intel_rapl_common module is not loaded)"
                )
            if not counted:
                return "RAPL has neither package, psys nor core zones"
            for rail in counted:
                if read_str(self.reader, zones[rail]) is None:
                    return f"cannot read {zones[rail]}"
        except PermissionError as err:
            return f"permission denied reading {err.filename or 'energy_uj'}: {PERMISSION_HINT}"
        except Exception as err:
            return f"RAPL probe failed: {err}"
        return None

    def open(self) -> None:
        why = self.probe()
        if why is not None:
            raise PowerSourceError(f"rapl: {why}")
        self._zones, self.counted_rails, self.wrap_j = self._discover()

    def read(self) -> Reading | None:
        clock_ns = self.context.clock_ns
        before = clock_ns()
        energy: dict[str, float] = {}
        for rail, path in self._zones.items():
            text = read_str(self.reader, path)
            if text is None or not text.isdigit():
                return None
            energy[rail] = int(text) / 1e6
        return Reading(t_s=stamp(clock_ns, before), energy_j=energy)


def parent_name(source: RaplSource, base: Path, index: str) -> str:
    return read_str(source.reader, base / f"intel-rapl:{index}" / "name") or f"zone-{index}"
