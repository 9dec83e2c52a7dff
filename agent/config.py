"""The agent's settings for one benchmark run: ``BenchSettings``, and how it is loaded.

:class:`BenchSettings` is :class:`shared.run_settings.RunSettings` (the knobs anyone may set, a
remote job included) extended with what only this device knows: its identity, files and folders,
where results go, the power sources' and the backends' own tables. The flags of ``bench`` and
``sweep`` are generated from it (:mod:`agent.commands.bench_args`), and the daemon's ``[bench]``
table is this model too.

Load it with :func:`load_settings`. Precedence, highest first (:mod:`shared.settings`):
command-line flags > environment (``EDGEMETER_<FIELD>``, ``__`` between nested names, e.g.
``EDGEMETER_THREADS=2``, ``EDGEMETER_POWER__SOURCE=rapl``,
``EDGEMETER_BACKENDS__LITERT__DELEGATE=edgetpu``) > a TOML file (``--config FILE`` or
``EDGEMETER_CONFIG``; keys are the field names, at the top level or under ``[bench]``) > defaults.
``edgemeter config sample`` prints an annotated file that parses back.

Older flat keys still read: ``providers`` and ``delegate`` go to their backend's table,
``power = "rapl"``, ``idle_s``, ``power_hz`` and the wall-plug shortcuts to ``[power]``
(:func:`agent.power.settings.fold_power_flags`).
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from agent.backends.base import BACKENDS, BackendTables, backend_class, fold_backend_keys
from agent.power.settings import PowerSettings, fold_power_flags, sample_power_tables
from shared.errors import ConfigError
from shared.run_settings import Flag, Profile, RunSettings
from shared.schema import Scenario
from shared.settings import LayeredSettings, as_plain, load_layered

logger = logging.getLogger(__name__)

__all__ = ["BenchSettings", "Profile", "fold_old_keys", "load_settings", "sample_config",
           "warn_unknown_env"]

INPUT_SUFFIXES = (".npz",)
# EDGEMETER_* variables that are read elsewhere (the CLI, the deploy units, the tests), not fields
# (the daemon's own settings are added from its model; the collector reads EDGEMETER_COLLECTOR__*)
OTHER_ENV = frozenset({"CONFIG", "DB", "MQTT", "MODEL", "TEST_POSTGRES", "BENCH_POSTGRES",
                       "COLLECTOR", "COLLECTOR_CONFIG"})


def _default_spool() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state"
    return Path(state) / "edgemeter/spool.db"


def fold_old_keys(data: dict[str, Any], *, sysfs_root: bool) -> dict[str, Any]:
    return fold_backend_keys(fold_power_flags(data, sysfs_root=sysfs_root))


class BenchSettings(RunSettings):
    """Everything one ``edgemeter bench`` run needs besides the model path.

    A plain model: validating it (a job's settings in the daemon, the child's JSON) reads nothing
    else; :func:`load_settings` adds the flags, the environment and the config file.
    """

    device_id: Annotated[str, Flag("identity")] = Field(
        default_factory=socket.gethostname, description="this device's id (default: the hostname)")
    fleet: Annotated[str, Flag("identity")] = Field(
        "default", description="fleet (an MQTT topic level)")
    hardware: Annotated[str | None, Flag("identity")] = Field(
        None, description="hardware catalogue key (default: detected)")
    catalogue: Annotated[Path | None, Flag("identity")] = Field(
        None, description="extra catalogue TOML merged over the shipped one")
    network: Annotated[str | None, Flag("identity")] = Field(
        None, description="network name for cross-format matching (default: from the file name)")
    inputs: Annotated[Path | None, Flag("runtime")] = Field(
        None, description=".npz of inputs or a folder of images")
    input_range: Annotated[tuple[float, float], Flag("runtime", metavar="LO,HI")] = Field(
        (0.0, 1.0), description="real range of float inputs, LO,HI")
    full_fidelity: Annotated[bool, Flag("timing")] = Field(
        False, description="send every fidelity output value, unrounded (default: a digest: "
        "values of small outputs, top-5 and a sketch of large ones, sha256 of all)")
    power: PowerSettings = Field(  # the job's table, extended with one table per source
        default_factory=PowerSettings,
        description="[power]: source, hz, idle_s, and one table per source (agent/power/README.md)",
    )
    backends: BackendTables = Field(
        default_factory=BackendTables,
        description="[backends]: one table per inference backend (providers, delegate)")
    sysfs_root: Annotated[Path, Flag("power")] = Field(
        Path("/"), description="filesystem root for sysfs/procfs readers, power sources' too")
    publish: Annotated[str | None, Flag("output", metavar="URL")] = Field(
        None, description="publish the result to this broker, mqtt://host:port, at QoS 1")
    spool: Annotated[Path, Flag("output", metavar="PATH")] = Field(
        default_factory=_default_spool,
        description="results wait here until the collector confirms it stored them (default: "
        "$XDG_STATE_HOME/edgemeter/spool.db, or ~/.local/state/edgemeter/spool.db)")

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        """The flat keys of old (``providers``, ``delegate``, ``power_topic``, ...)."""
        if isinstance(data, dict):
            return fold_old_keys(data, sysfs_root=False)
        return data

    @field_validator("inputs")
    @classmethod
    def _inputs_exist(cls, value: Path | None) -> Path | None:
        if value is None or value.is_dir():
            return value
        if not value.exists():
            raise ValueError(f"{value}: no such file or folder")
        if value.suffix.lower() not in INPUT_SUFFIXES:
            raise ValueError(
                f"{value}: unsupported file type {value.suffix or '(none)'}; "
                "give an .npz file or a folder of images"
            )
        return value

    @model_validator(mode="after")
    def _scenario_needs(self) -> BenchSettings:
        if self.scenario == Scenario.SERVER and self.target_qps is None:
            raise ValueError("the server scenario needs --target-qps (queries per second)")
        if self.scenario == Scenario.MULTI_STREAM and self.batch > 1:
            raise ValueError(
                "multi-stream builds each query from --samples-per-query; leave --batch at 1"
            )
        return self

    def backend_settings(self, name: str) -> Any:
        """Backend ``name``'s own settings (its table, else its defaults)."""
        return self.backends.table(name)


class BenchLoader(BenchSettings, LayeredSettings):
    """:class:`BenchSettings` read from flags, ``EDGEMETER_*`` and the config file."""

    model_config = SettingsConfigDict(env_prefix="EDGEMETER_", env_nested_delimiter="__")
    config_env: ClassVar[str | None] = "EDGEMETER_CONFIG"

    @classmethod
    def toml_table(cls, doc: dict[str, Any], path: Path) -> dict[str, Any]:
        """``[bench]`` (with a ``[power]`` beside it), or the top level of the file."""
        table = doc.get("bench", doc)
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [bench] must be a table")
        if table is not doc and "power" in doc:  # [power] beside [bench]
            if "power" in table:
                raise ConfigError(f"config file {path}: give [power] or [bench.power], not both")
            table = {**table, "power": doc["power"]}
        return fold_old_keys(table, sysfs_root=False)


def load_settings(cli: dict[str, Any], config_file: Path | None = None) -> BenchSettings:
    """Settings from flags (``None`` = not given), environment, config file and defaults."""
    warn_unknown_env(frozenset(k for k in os.environ if k.startswith(ENV_PREFIX)))
    given = {k: v for k, v in cli.items() if v is not None}
    loaded = load_layered(BenchLoader, fold_old_keys(given, sysfs_root=True), config_file)
    return as_plain(loaded, BenchSettings)


def backend_settings_models() -> dict[str, Any]:
    """Each registered backend's own settings model, by backend name."""
    return {name: backend_class(name).Settings for name in BACKENDS}


ENV_PREFIX = "EDGEMETER_"


@cache
def warn_unknown_env(names: frozenset[str]) -> None:
    """Warn (once per set of names) about ``EDGEMETER_*`` variables that are no setting.

    pydantic-settings ignores them silently, so ``EDGEMETER_THREDS=2`` would otherwise do nothing.
    """
    from agent.daemon.config import AgentSettings

    fields = [f.upper() for f in (*BenchSettings.model_fields, *AgentSettings.model_fields)]
    for name in sorted(names):
        key = name.removeprefix(ENV_PREFIX).split("__")[0]  # EDGEMETER_POWER__SOURCE: power
        if key in fields or key in OTHER_ENV:
            continue
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        logger.warning("environment variable %s is not an edgemeter setting and is ignored%s",
                       name, hint)


def sample_config() -> str:
    """An annotated TOML config with every field at its default, commented out where unset."""
    lines = [
        "# edgemeter agent configuration. Precedence: flags > EDGEMETER_* env > this file > defaults.",
        "[bench]",
    ]
    for name, field in BenchSettings.model_fields.items():
        if name in ("power", "backends"):
            continue  # tables of their own, after the plain keys
        lines.append(f"# {field.description}")
        default = field.get_default(call_default_factory=True)
        if default is None:
            lines.append(f"# {name} = ...")
            continue
        if hasattr(default, "value"):
            default = default.value
        if isinstance(default, Path):
            default = str(default)
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, str):
            rendered = '"' + default.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(default, bool):
            rendered = str(default).lower()
        else:
            rendered = repr(default)
        lines.append(f"{name} = {rendered}")
    lines.extend(sample_power_tables("bench.power"))
    for backend, model in backend_settings_models().items():
        summary = (model.__doc__ or backend).strip().splitlines()[0]
        lines += ["", f"# {summary}", f"# [bench.backends.{backend}]"]
        for key, field in model.model_fields.items():
            lines.append(f"# {key} = ...    # {field.description}")
    return "\n".join(lines) + "\n"
