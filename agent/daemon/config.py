"""The daemon's settings, ``edgemeter agent run --config agent.toml``, and how they load.

Loaded by :func:`load_agent_settings` with the project's one precedence (:mod:`shared.settings`):
environment (``EDGEMETER_DEVICE_ID``, ``EDGEMETER_MQTT__URL``, ``EDGEMETER_BENCH__THREADS``,
``__`` between nested names) > the TOML file > defaults (``agent run`` has no flags for them).

Secrets never need to be in the file: the broker password is ``[mqtt] password`` (best from
``EDGEMETER_MQTT__PASSWORD``), else ``[mqtt] password_file``, else systemd's
``LoadCredential=mqtt-password:...`` (``$CREDENTIALS_DIRECTORY/mqtt-password``; an empty one
means no password, for mutual TLS); the rule is :func:`shared.settings.resolve_secret`'s.

``[bench]`` holds the defaults every job runs with (power source and its table, idle time, the
backends' tables, ...): it is the agent's :class:`agent.config.BenchSettings`, so any key
``edgemeter bench`` takes in its own config file, checked when the daemon starts. A job's settings
override them, except identity (``device_id``, ``fleet``), which is always the daemon's
(:meth:`AgentSettings.job_base`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from agent.config import BenchSettings, fold_old_keys
from agent.monitor_job import MonitorTable
from shared.mqtt import BrokerUrl, parse_broker_url
from shared.settings import (
    LayeredSettings,
    SettingsTable,
    TlsSettings,
    credentials_dir,
    load_layered,
    resolve_secret,
)
from shared.topics import valid_level

#: systemd's StateDirectory= (already this service's own folder), else the XDG state folder
STATE_DIR = (Path(os.environ["STATE_DIRECTORY"].split(":")[0]) if os.environ.get("STATE_DIRECTORY")
             else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "edgemeter")


CREDENTIAL = "mqtt-password"
"""the broker password's systemd credential name (``LoadCredential=mqtt-password:FILE``)"""


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
        """The password from this table, its file, or systemd's credential (one rule:
        :func:`shared.settings.resolve_secret`)."""
        secret = resolve_secret(table="mqtt", key="password", value=self.password,
                                file=self.password_file, credential=CREDENTIAL,
                                folder=credentials_dir())
        return None if secret is None else secret.get_secret_value()


class SpoolSettings(SettingsTable):
    path: Path = Field(STATE_DIR / "spool.db", description="results waiting for their receipt")
    max_mb: float = Field(64.0, gt=0, description="past this, the oldest results are dropped")
    resend_after_s: float = Field(60.0, gt=0, description="re-send a result with no receipt by then")


class ModelsSettings(SettingsTable):
    url: str | None = Field(None, description="the collector's HTTP server, http://host:8080")
    cache_dir: Path = Field(STATE_DIR / "models", description="verified models, least used evicted")
    max_mb: float = Field(512.0, gt=0, description="size of the model cache")
    token_file: Path | None = Field(
        None, description="the collector's models token ([http] models_token_file there), "
        "needed when it is not on this machine")

    def token(self) -> str | None:
        """The models token from :attr:`token_file` (the one secret rule), or None without one."""
        secret = resolve_secret(table="models", key="token", value=None, file=self.token_file,
                                credential=None, folder=None)
        return None if secret is None else secret.get_secret_value()

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class AgentSettings(LayeredSettings):
    """Everything ``edgemeter agent run`` needs."""

    model_config = SettingsConfigDict(env_prefix="EDGEMETER_", env_nested_delimiter="__",
                                      extra="forbid")

    device_id: str = Field(default_factory=socket.gethostname, description="this device's id")
    fleet: str = Field("default", description="fleet (an MQTT topic level)")
    telemetry_s: float = Field(10.0, ge=1, le=3600, description="seconds between telemetry")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    spool: Annotated[SpoolSettings, NoDecode] = Field(default_factory=SpoolSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    bench: BenchSettings = Field(default_factory=BenchSettings,
                                 description="defaults for every job (power source, idle_s, ...)")
    sample_hint: ClassVar[str] = "see `edgemeter agent sample-config`"
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
    def toml_table(cls, doc: dict[str, Any], path: Path) -> dict[str, Any]:
        """The whole file, the flat keys of old in ``[bench]`` read into their tables."""
        bench = doc.get("bench")
        if isinstance(bench, dict):
            return {**doc, "bench": fold_old_keys(bench, sysfs_root=False)}
        return doc

    def job_base(self) -> BenchSettings:
        """The settings every job starts from: ``[bench]``, with this daemon's identity."""
        base = self.bench.model_copy(update={"device_id": self.device_id, "fleet": self.fleet})
        base.model_fields_set.update({"device_id", "fleet"})
        return base


def load_agent_settings(config_file: Path | None) -> AgentSettings:
    """Settings from the environment over ``config_file`` over defaults; one-line ConfigError.

    The broker password is resolved once here, so that a missing ``password_file`` stops the
    daemon at start.
    """
    settings = load_layered(AgentSettings, None, config_file, what="agent setting")
    settings.mqtt.resolved_password()
    return settings


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
# the collector's models token, when it is not on this machine ([http] models_token_file there)
# token_file = "/etc/edgemeter/credentials/models-token"

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
