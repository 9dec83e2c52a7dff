"""Energy per inference from real power sensors, or a labelled estimate where there are none.

Public surface::

    open_energy_monitor(settings, hardware=, cores_used=)   the run's monitor, from its settings
    EnergyMonitor        samples one opened source in the background, measures an idle baseline
                         and reports one window as EnergyReport
    NullEnergyMonitor    the monitor of a run without power (measures nothing)
    PowerSettings        the [power] settings: source, hz, idle_s and one table per source
    available_sources()  registered source names
    probe_all(tables)    name -> None if usable, else why not
    ManualClock          time that moves only when told (tests, replays)
    PowerSource, Reading, SourceSettings, SourceContext, FileReader   the plugin contract

Sources (one module each, imported on first use by :mod:`agent.power.registry`): ``rapl``,
``jetson``, ``rpi5``, ``nvml``, ``tasmota``, ``shelly``, ``estimate``.
"""

from __future__ import annotations

from agent.power.base import FileReader, PowerSource, Reading, SourceContext, SourceSettings
from agent.power.clock import ManualClock
from agent.power.monitor import EnergyMonitor, NullEnergyMonitor, open_energy_monitor
from agent.power.registry import available_sources, probe_all
from agent.power.settings import PowerSettings

__all__ = [
    "EnergyMonitor",
    "FileReader",
    "ManualClock",
    "NullEnergyMonitor",
    "PowerSettings",
    "PowerSource",
    "Reading",
    "SourceContext",
    "SourceSettings",
    "available_sources",
    "open_energy_monitor",
    "probe_all",
]
