"""Energy per inference from real power sensors, or a labelled estimate where there are none.

Public surface::

    EnergyMonitor        picks a source (auto | none | NAME), samples it in a background thread,
                         measures an idle baseline and reports one window as EnergyReport
    available_sources()  registered source names
    probe_all(root)      name -> None if usable, else why not
    PowerSource, Reading, SourceConfig, FileReader   the plugin contract (agent.power.base)

Sources (one module each, imported on first use by :mod:`agent.power.registry`): ``rapl``,
``jetson``, ``rpi5``, ``nvml``, ``tasmota``, ``shelly``, ``estimate``.
"""

from __future__ import annotations

from agent.power.base import FileReader, PowerSource, Reading, SourceConfig
from agent.power.monitor import EnergyMonitor
from agent.power.registry import available_sources, probe_all

__all__ = [
    "EnergyMonitor",
    "FileReader",
    "PowerSource",
    "Reading",
    "SourceConfig",
    "available_sources",
    "probe_all",
]
