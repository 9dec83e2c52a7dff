"""The daemon's settings: ``edgemeter agent run --config agent.toml``.

Precedence: environment (``EDGEMETER_DEVICE_ID``, ``EDGEMETER_MQTT__URL``,
``EDGEMETER_MQTT__PASSWORD``, ``__`` between nested names) > the TOML file > defaults. Secrets
never need to be in the file: the broker password comes from ``EDGEMETER_MQTT__PASSWORD``, from
``[mqtt] password_file``, or from systemd's ``LoadCredential=mqtt-password:...`` (read from
``$CREDENTIALS_DIRECTORY/mqtt-password``), in that order after the file's own ``password``.

``[bench]`` holds the defaults every job runs with (power source and its table, idle time, ...):
any key ``edgemeter bench`` takes in its own config file. A job's settings override them, except
identity (``device_id``, ``fleet``), which is always the daemon's.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from agent.monitor_job import MonitorTable
from shared.errors import ConfigError
from shared.mqtt import BrokerUrl, parse_broker_url
from shared.settings import SettingsTable, TlsSettings
from shared.topics import valid_level

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: systemd's StateDirectory= (already this service's own folder), else the XDG state folder
STATE_DIR = (Path(os.environ["STATE_DIRECTORY"].split(":")[0]) if os.environ.get("STATE_DIRECTORY")
             else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "edgemeter")


class MqttSettings(SettingsTable):
    url: str = Field("mqtt://localhost:1883", description="broker: mqtt://host:port or mqtts://")
    urls: list[str] = Field(default_factory=list,
                            description="more brokers to fail over to, tried in order after url")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive; offline after 1.5x")
    username: str | None = Field(None, description="default: the device_id (the broker's ACL)")
    password: SecretStr | None = Field(None, description="prefer password_file or the environment")
    password_file: Path | None = Field(None, description="file holding the broker password")
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @field_validator("url", "urls")
    @classmethod
    def _parses(cls, value: Any) -> Any:
        for url in value if isinstance(value, list) else [value]:
            parse_broker_url(url)
        return value

    def broker_urls(self) -> list[BrokerUrl]:
        return [parse_broker_url(u) for u in [self.url, *self.urls]]

    def resolved_password(self) -> str | None:
        """The password from this table, its file, or systemd's credential directory."""
        if self.password is not None:
            return self.password.get_secret_value()
        candidates = [self.password_file] if self.password_file else []
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if creds:
            candidates.append(Path(creds) / "mqtt-password")
        for path in candidates:
            try:
                # an empty credential (mutual TLS, no password) means no password
                return path.read_text().strip() or None
            except OSError as err:
                if path == self.password_file:
                    raise ConfigError(f"cannot read [mqtt] password_file {path}: "
                                      f"{err.strerror or err}") from err
        return None


class SpoolSettings(SettingsTable):
    path: Path = Field(STATE_DIR / "spool.db", description="results waiting for their receipt")
    max_mb: float = Field(64.0, gt=0, description="past this, the oldest results are dropped")
    resend_after_s: float = Field(60.0, gt=0, description="re-send a result with no receipt by then")


class ModelsSettings(SettingsTable):
    url: str | None = Field(None, description="the collector's HTTP server, http://host:8080")
    cache_dir: Path = Field(STATE_DIR / "models", description="verified models, least used evicted")
    max_mb: float = Field(512.0, gt=0, description="size of the model cache")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class AgentSettings(BaseSettings):
    """Everything ``edgemeter agent run`` needs."""

    model_config = SettingsConfigDict(env_prefix="EDGEMETER_", env_nested_delimiter="__",
                                      extra="forbid")

    device_id: str = Field(default_factory=socket.gethostname, description="this device's id")
    fleet: str = Field("default", description="fleet (an MQTT topic level)")
    telemetry_s: float = Field(10.0, ge=1, le=3600, description="seconds between telemetry")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    spool: Annotated[SpoolSettings, NoDecode] = Field(default_factory=SpoolSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    bench: dict[str, Any] = Field(default_factory=dict,
                                  description="defaults for every job (power source, idle_s, ...)")
    monitor: list[MonitorTable] = Field(
        default_factory=list, description="[[monitor]] tables: monitoring jobs started with the "
        "daemon (agent.monitor_job)")

    @field_validator("spool", mode="before")
    @classmethod
    def _spool_path_alone(cls, value: Any) -> Any:
        """``EDGEMETER_SPOOL=/path/spool.db`` (what ``bench --publish`` reads) names the path."""
        return {"path": value} if isinstance(value, (str, Path)) else value

    @field_validator("device_id", "fleet")
    @classmethod
    def _level(cls, value: str) -> str:
        if not valid_level(value):
            raise ValueError("must be usable as one MQTT topic level (letters, digits, . _ : @ -)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the file's contents arrive as init values (below); the environment wins over them
        return (env_settings, init_settings)


def load_agent_settings(config_file: Path | None) -> AgentSettings:
    """Settings from the environment over ``config_file`` over defaults; one-line ConfigError."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except OSError as err:
            raise ConfigError(f"cannot read the config file {config_file}: "
                              f"{err.strerror or err}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {config_file} is not valid TOML: {err}") from err
    try:
        return AgentSettings(**data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown setting; see `edgemeter agent sample-config`"
        raise ConfigError(f"invalid agent setting {where}: {msg}") from err


SAMPLE = '''\
# edgemeter agent daemon: `edgemeter agent run --config agent.toml`.
# Environment variables override this file: EDGEMETER_DEVICE_ID, EDGEMETER_MQTT__URL, ...
# Secrets: keep them out of this file (EDGEMETER_MQTT__PASSWORD, password_file, or systemd's
# LoadCredential=mqtt-password:FILE).

# this device's id: one MQTT topic level, and its broker username by default
device_id = "pi-kitchen-01"
# fleet: one MQTT topic level that groups devices
fleet = "default"
# seconds between telemetry messages (CPU, memory, temperatures, power, spool depth, job)
telemetry_s = 10

[mqtt]
# broker URL: mqtt://host:1883, or mqtts://host:8883 for TLS
url = "mqtt://localhost:1883"
# more brokers to fail over to, in order
urls = []
# keepalive in seconds: the broker declares the device offline after 1.5x this
keepalive_s = 30
# username = "pi-kitchen-01"
# password_file = "/etc/edgemeter/mqtt-password"

[mqtt.tls]
# ca_file = "/etc/edgemeter/ca.crt"
# cert_file = "/etc/edgemeter/device.crt"
# key_file = "/etc/edgemeter/device.key"

[spool]
# results wait here until the collector confirms it stored them
path = "{spool}"
# past this size the oldest results are dropped (and counted in telemetry)
max_mb = 64
# a result with no receipt after this many seconds is sent again
resend_after_s = 60

[models]
# the collector's HTTP server, where jobs' models are fetched by sha256
# url = "http://collector-host:8080"
cache_dir = "{models}"
max_mb = 512

[bench]
# defaults for every job: any key `edgemeter bench` takes in its config file
# power = "auto"
# idle_s = 3.0

# A monitoring job that runs while the daemon does: the model at rate_qps, one window every
# window_s seconds, shown on the collector under name (default: the model file's stem).
# [[monitor]]
# model = "/opt/models/vww_96_int8.tflite"
# rate_qps = 5
# window_s = 10
# name = "vww-canary"
'''


def sample_config() -> str:
    return SAMPLE.format(spool=STATE_DIR / "spool.db", models=STATE_DIR / "models")
