"""Power sources by name, imported on first use, and the order ``--power auto`` tries them in."""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from typing import Any

from agent.power.base import PowerSource, SourceContext, SourceSettings
from shared.plugins import load_plugin

logger = logging.getLogger(__name__)

#: name -> "module:Class"; importing a module only happens when its source is asked for
SOURCES: dict[str, str] = {
    "rapl": "agent.power.rapl:RaplSource",
    "jetson": "agent.power.jetson:JetsonSource",
    "rpi5": "agent.power.rpi5:Rpi5Source",
    "nvml": "agent.power.nvml:NvmlSource",
    "tasmota": "agent.power.tasmota:TasmotaSource",
    "shelly": "agent.power.shelly:ShellySource",
    "estimate": "agent.power.estimate:EstimateSource",
}

#: the words ``--power`` takes besides a source name
CHOICES = ("auto", "none")

#: what ``auto`` probes per ``platform.machine()``, before falling back to the estimate. Wall
#: plugs are never probed: they need a broker and a topic, so they are named explicitly.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "x86_64": ("rapl", "nvml"),
    "aarch64": ("jetson", "rpi5", "nvml"),
}
FALLBACK = "estimate"


def available_sources() -> list[str]:
    """Every registered source name."""
    return list(SOURCES)


def source_class(name: str) -> type[PowerSource]:
    """The class registered as ``name``; ConfigError naming the valid choices if there is none."""
    found: type[PowerSource] = load_plugin(SOURCES, name, kind="power source", also=CHOICES)
    return found


def create(
    name: str,
    table: SourceSettings | Mapping[str, Any] | None = None,
    context: SourceContext | None = None,
) -> PowerSource:
    """Source ``name`` built from its settings table (default: its defaults)."""
    return source_class(name).from_table(table, context)


def auto_order(machine: str | None = None) -> list[str]:
    """The names ``auto`` tries on ``machine`` (default: this one), ending with the estimate."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine or "", machine)
    arch = arch or platform.machine()
    order = AUTO_ORDER.get(arch, ("rapl", "jetson", "rpi5", "nvml"))
    return [*order, FALLBACK]


def probe_all(
    tables: Mapping[str, SourceSettings | Mapping[str, Any]] | None = None,
    context: SourceContext | None = None,
) -> dict[str, str | None]:
    """name -> None when usable here, else why not. Never raises.

    ``tables`` holds sources' settings by name (the others use their defaults); without a
    ``context`` the estimate models this machine's catalogue entry.
    """
    if context is None:
        from shared.catalogue import load_catalogue

        try:
            hardware = load_catalogue().match(machine=platform.machine())
        except Exception as err:
            logger.info("no catalogue entry for the estimate: %s", err)
            hardware = None
        context = SourceContext(hardware=hardware)
    result: dict[str, str | None] = {}
    for name in SOURCES:
        try:
            result[name] = create(name, (tables or {}).get(name), context).probe()
        except Exception as err:
            result[name] = f"cannot load: {err}"
    return result
