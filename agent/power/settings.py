"""The ``power`` settings of a run: which source, how fast, the idle baseline, per-source tables.

In the agent's config file (top level or under ``[bench]``)::

    [power]
    source = "auto"          # auto, none or a source name
    hz = 20.0                # sampling rate (capped at the source's own maximum)
    idle_s = 3.0             # idle baseline before the run (0 = none)

    [power.tasmota]          # one table per source, validated by that source's own Settings model
    broker = "mqtt://plugs.local:1883"
    topic = "bench-plug"

Environment: ``EDGEMETER_POWER__SOURCE=rapl``, ``EDGEMETER_POWER__TASMOTA__TOPIC=plug``. A table
for an unknown source, or an unknown or invalid key in a table, fails when the settings load, with
one line naming the table and the key.

The older flat flags stay as shortcuts and are folded into these tables in one place,
:func:`fold_power_flags`: ``--power`` -> ``source``, ``--power-hz`` -> ``hz``, ``--idle-s`` ->
``idle_s``, ``--power-topic`` / ``--power-mqtt`` -> ``topic`` / ``broker`` of the wall plugs,
``--rpi5-calibration`` -> ``[power.rpi5] calibration``, ``--sysfs-root`` -> ``root`` of the
sysfs-reading sources (rapl, jetson) as well as the run's own ``sysfs_root``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, field_validator, model_validator

from agent.power import registry
from agent.power.base import SourceSettings
from shared.errors import ConfigError
from shared.run_settings import RunPower
from shared.settings import plugin_table

__all__ = ["FLAG_SHORTCUTS", "PowerSettings", "fold_power_flags", "sample_power_tables"]

#: a flat flag (a BenchSettings key of old) -> the (table, key) places it fills in
FLAG_SHORTCUTS: dict[str, tuple[tuple[str | None, str], ...]] = {
    "power": ((None, "source"),),
    "power_hz": ((None, "hz"),),
    "idle_s": ((None, "idle_s"),),
    "power_topic": (("tasmota", "topic"), ("shelly", "topic")),
    "power_mqtt": (("tasmota", "broker"), ("shelly", "broker")),
    "rpi5_calibration": (("rpi5", "calibration"),),
    "sysfs_root": (("rapl", "root"), ("jetson", "root")),
}
#: flat keys that are also fields of their own (kept where they are, and copied)
KEPT = frozenset({"sysfs_root"})


class PowerSettings(RunPower):
    """``[power]``: the source, the rate and the idle baseline (declared by
    :class:`shared.run_settings.RunPower`, which a job may set), and one table per source."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    @field_validator("source")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in registry.CHOICES:
            registry.source_class(value)  # ConfigError naming the choices
        return value

    @model_validator(mode="after")
    def _tables(self) -> PowerSettings:
        extra = self.__pydantic_extra__ or {}
        for name, raw in list(extra.items()):
            extra[name] = _validate_table(name, raw)
        return self

    def table(self, name: str) -> SourceSettings:
        """Source ``name``'s settings: its table when the config has one, else its defaults."""
        found = (self.__pydantic_extra__ or {}).get(name)
        if isinstance(found, SourceSettings):
            return found
        return registry.source_class(name).Settings()

    @property
    def tables(self) -> dict[str, SourceSettings]:
        """The per-source tables the config gave."""
        return dict(self.__pydantic_extra__ or {})


def _validate_table(name: str, raw: Any) -> SourceSettings:
    sources = ", ".join(registry.SOURCES)
    if not isinstance(raw, Mapping | SourceSettings):
        raise ConfigError(
            f"[power] {name}: unknown key; [power] takes source, hz, idle_s and one table per "
            f"source ({sources})"
        )
    if name not in registry.SOURCES:
        raise ConfigError(f"[power.{name}]: no power source {name!r}; tables are named after a "
                          f"source: {sources}")
    cls = registry.source_class(name).Settings
    if isinstance(raw, SourceSettings) and not isinstance(raw, cls):
        raw = raw.model_dump()
    return plugin_table(cls, raw, f"[power.{name}]")


def fold_power_flags(flat: Mapping[str, Any], *, sysfs_root: bool = True) -> dict[str, Any]:
    """``flat`` with the old flat power keys moved into a nested ``power`` mapping.

    ``None`` values (a flag not given) are skipped; a ``power`` value that is already a mapping is
    merged with the flags, the flags winning. ``sysfs_root=False`` leaves the sources' roots alone
    (a config file's ``sysfs_root`` key is the run's own; its sources have their ``root`` keys).
    """
    out = {k: v for k, v in flat.items() if k not in FLAG_SHORTCUTS or k in KEPT}
    power: dict[str, Any] = {}
    given = flat.get("power")
    if isinstance(given, Mapping):
        power = {k: dict(v) if isinstance(v, Mapping) else v for k, v in given.items()}
    elif isinstance(given, PowerSettings):
        power = given.model_dump()
    for key, places in FLAG_SHORTCUTS.items():
        value = flat.get(key)
        if value is None or isinstance(value, Mapping | PowerSettings):
            continue
        if key == "sysfs_root" and not sysfs_root:
            continue
        for table, field in places:
            if table is None:
                power[field] = value
            else:
                power.setdefault(table, {})[field] = value
    if power:
        out["power"] = power
    return out


def _toml(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def sample_power_tables(prefix: str = "power") -> list[str]:
    """Annotated TOML lines of ``[prefix]`` at its defaults, then every source's table commented
    out (each with its keys at their defaults), for ``edgemeter config sample``."""
    lines = ["", f"[{prefix}]"]
    for name, field in PowerSettings.model_fields.items():
        lines += [f"# {field.description}", f"{name} = {_toml(field.get_default())}"]
    for source in registry.SOURCES:
        cls = registry.source_class(source).Settings
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else source
        lines += ["", f"# {summary}", f"# [{prefix}.{source}]"]
        for key, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            rendered = "..." if default is None else _toml(default)
            lines.append(f"# {key} = {rendered}    # {field.description}")
    return lines
