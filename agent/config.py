"""Agent settings: one flat pydantic-settings model for a benchmark run.

Precedence, highest first: command-line flags > environment (``EDGEMETER_<FIELD>``, e.g.
``EDGEMETER_THREADS=2``, ``EDGEMETER_PUBLISH=mqtt://broker:1883``) > a TOML file (``--config FILE``
or ``EDGEMETER_CONFIG``; keys are the field names, at the top level or under ``[bench]``) >
defaults. ``edgemeter config sample`` prints an annotated file that parses back.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
import sys
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agent.power.settings import PowerSettings, fold_power_flags, sample_power_tables
from shared.errors import ConfigError
from shared.schema import Role, Scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

logger = logging.getLogger(__name__)

Profile = Literal["quick", "standard", "mlperf"]
INPUT_SUFFIXES = (".npz",)
# EDGEMETER_* variables that are read elsewhere (the CLI, the deploy units, the tests), not fields
# (the daemon's own settings are added from its model; the collector reads EDGEMETER_COLLECTOR__*)
OTHER_ENV = frozenset({"CONFIG", "DB", "MQTT", "MODEL", "TEST_POSTGRES", "BENCH_POSTGRES",
                       "COLLECTOR", "COLLECTOR_CONFIG"})


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the ``[bench]`` table (or the top level) of the config file, if one is given."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.data: dict[str, Any] = {}
        if path is None:
            return
        try:
            doc = tomllib.loads(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
        table = doc.get("bench", doc)
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [bench] must be a table")
        if table is not doc and "power" in doc:  # [power] beside [bench]
            if "power" in table:
                raise ConfigError(f"config file {path}: give [power] or [bench.power], not both")
            table = {**table, "power": doc["power"]}
        self.data = fold_power_flags(table, sysfs_root=False)  # old flat keys still read

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        unknown = sorted(set(self.data) - set(self.settings_cls.model_fields))
        if unknown:
            raise ConfigError(
                f"config file: unknown setting(s) {', '.join(unknown)}; "
                "see `edgemeter config sample` for the valid names"
            )
        return dict(self.data)


class BenchSettings(BaseSettings):
    """Everything one ``edgemeter bench`` run needs besides the model path."""

    model_config = SettingsConfigDict(
        env_prefix="EDGEMETER_", env_nested_delimiter="__", extra="ignore"
    )
    config_file: ClassVar[Path | None] = None

    device_id: str = Field(default_factory=socket.gethostname, description="this device's id")
    fleet: str = Field("default", description="fleet (an MQTT topic level)")
    role: Role = Field(Role.EDGE, description="edge, datacenter or hpc (baselines)")
    hardware: str | None = Field(None, description="hardware catalogue key; default: detected")
    catalogue: Path | None = Field(None, description="extra catalogue TOML merged over the shipped")
    network: str | None = Field(None, description="network name; default: from the file name")
    backend: str = Field("auto", description="auto, onnxruntime or litert")
    providers: list[str] | None = Field(None, description="ONNX Runtime execution providers")
    delegate: str | None = Field(None, description="LiteRT delegate, e.g. edgetpu")
    threads: int | None = Field(None, ge=1, description="runtime threads; default: all cores")
    scenario: Scenario = Field(Scenario.SINGLE_STREAM, description="MLPerf-style scenario")
    profile: Profile = Field("standard", description="quick (~1 s), standard (~10 s), mlperf")
    batch: int = Field(1, ge=1, description="samples per inference call")
    streams: int = Field(1, ge=1, description="parallel sessions (offline, server)")
    samples_per_query: int = Field(8, ge=1, description="multi-stream samples per query")
    iterations: int | None = Field(None, ge=1, description="timed queries (overrides profile)")
    duration_s: float | None = Field(None, gt=0, description="timed seconds (overrides profile)")
    warmup: int | None = Field(None, ge=0, description="warm-up iterations; default: until stable")
    target_qps: float | None = Field(None, gt=0, description="server: Poisson arrival rate")
    latency_bound_ms: float | None = Field(None, gt=0, description="server: p99 bound")
    seed: int = Field(0, description="seed for inputs and arrivals")
    inputs: Path | None = Field(None, description=".npz file or image folder")
    input_range: tuple[float, float] = Field((0.0, 1.0), description="real range of float inputs")
    fidelity: int = Field(32, ge=0, description="fidelity inputs (0 = off)")
    full_fidelity: bool = Field(
        False, description="send every fidelity output value, unrounded (default: a digest)"
    )
    power: PowerSettings = Field(
        default_factory=PowerSettings,
        description="[power]: source, hz, idle_s, and one table per source (agent/power/README.md)",
    )
    sysfs_root: Path = Field(Path("/"), description="root for every sysfs/procfs reader")
    publish: str | None = Field(None, description="broker URL to publish the result to")
    spool: Path = Field(
        Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "edgemeter/spool.db",
        description="results wait here until the collector confirms it stored them",
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = cls.config_file or (
            Path(os.environ["EDGEMETER_CONFIG"]) if os.environ.get("EDGEMETER_CONFIG") else None
        )
        return (init_settings, env_settings, _TomlSource(settings_cls, path))


def load_settings(cli: dict[str, Any], config_file: Path | None = None) -> BenchSettings:
    """Settings from flags (``None`` = not given), environment, config file and defaults."""
    warn_unknown_env(frozenset(k for k in os.environ if k.startswith(ENV_PREFIX)))
    BenchSettings.config_file = config_file
    try:
        return BenchSettings(**fold_power_flags({k: v for k, v in cli.items() if v is not None}))
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a check across fields says which flags in its own words
            raise ConfigError(msg) from err
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {msg}") from err
    finally:
        BenchSettings.config_file = None


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
        if name == "power":
            continue  # a table of its own, after the plain keys
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
    return "\n".join(lines) + "\n"
