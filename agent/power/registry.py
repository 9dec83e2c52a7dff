"""Power sources by name, imported on first use, and the order ``--power auto`` tries them in."""

from __future__ import annotations

import importlib
import logging
import platform
from pathlib import Path

from agent.errors import PowerSourceError
from agent.power.base import PowerSource, SourceConfig

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
    try:
        module, _, cls = SOURCES[name].partition(":")
    except KeyError as err:
        raise PowerSourceError(
            f"unknown power source {name!r}; use auto, none or one of: {', '.join(SOURCES)}"
        ) from err
    found: type[PowerSource] = getattr(importlib.import_module(module), cls)
    return found


def create(name: str, config: SourceConfig) -> PowerSource:
    return source_class(name)(config)


def auto_order(machine: str | None = None) -> list[str]:
    """The names ``auto`` tries on ``machine`` (default: this one), ending with the estimate."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine or "", machine)
    arch = arch or platform.machine()
    order = AUTO_ORDER.get(arch, ("rapl", "jetson", "rpi5", "nvml"))
    return [*order, FALLBACK]


def probe_all(sysfs_root: Path = Path("/")) -> dict[str, str | None]:
    """name -> None when usable here, else why not. Never raises."""
    from shared.catalogue import load_catalogue

    try:
        hardware = load_catalogue().match(machine=platform.machine())
    except Exception as err:
        logger.info("no catalogue entry for the estimate: %s", err)
        hardware = None
    config = SourceConfig(sysfs_root=sysfs_root, hardware=hardware)
    result: dict[str, str | None] = {}
    for name in SOURCES:
        try:
            result[name] = create(name, config).probe()
        except Exception as err:
            result[name] = f"cannot load: {err}"
    return result
