"""Collector settings: one pydantic-settings model for ``edgemeter collector serve``.

Loaded by :func:`load_settings` the way every edgemeter side loads its settings
(:mod:`shared.settings`). Precedence, highest first: command-line flags > environment > a TOML
file > defaults.

* File: ``--config FILE`` or ``EDGEMETER_COLLECTOR_CONFIG``; tables ``[mqtt]`` (with
  ``[mqtt.tls]``), ``[db]``, ``[http]`` and ``[ingest]``. A key this model does not know stops the
  collector at start with a one-line error naming it. ``edgemeter collector sample-config`` prints
  an annotated file with every key, which parses back.
* Environment: ``EDGEMETER_COLLECTOR__<TABLE>__<KEY>``, ``__`` between nested names, e.g.
  ``EDGEMETER_COLLECTOR__MQTT__URL``, ``EDGEMETER_COLLECTOR__DB__PASSWORD``,
  ``EDGEMETER_COLLECTOR__MQTT__TLS__CA_FILE``. A variable with that prefix that names no setting
  (a typo) is ignored, with one warning per variable per process, naming the closest real one.
* Flags: those of ``collector serve`` (``--mqtt``, ``--db``, ``--group``, ...), given to
  :func:`load_settings` as a nested dict (``{"mqtt": {"url": ...}}``); ``None`` means not given.

Secrets (the broker password, the database password, the HTTP token) never need to be on the
command line. Each follows the project's one rule (:func:`shared.settings.resolve_secret`), taken
from the first of:

1. ``password`` (``token``) from a flag, the environment or the file, by the precedence above;
2. ``password_file`` (``token_file``): the file's content, without its trailing newline;
3. a password inside the URL (``mqtt://user:pass@host``), kept working for compatibility;
4. systemd credentials: ``$CREDENTIALS_DIRECTORY/mqtt-password``, ``db-password`` and
   ``http-token`` (``LoadCredential=``), used only when ``CREDENTIALS_DIRECTORY`` is set and no
   source above gave one; an empty credential means none.

Giving both ``password`` and ``password_file`` is an error (which one was meant cannot be
guessed). A database password is put into the database URL for the store; SQLite has none, so a
database password next to a ``sqlite://`` URL is ignored with a warning. Secrets are
:class:`~pydantic.SecretStr`, so printing the settings never shows them, and every URL the
collector prints goes through :func:`shared.redact.redact_url`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from collector.monitoring_settings import AlertSettings, HistoryRetention
from shared.errors import ConfigError
from shared.mqtt import parse_broker_url
from shared.redact import redact_url
from shared.settings import (
    CREDENTIALS_ENV,
    LayeredSettings,
    SettingsTable,
    TlsSettings,
    closest_key,
    load_layered,
    resolve_secret,
)

__all__ = [
    "CONFIG_ENV",
    "CREDENTIAL_NAMES",
    "ENV_PREFIX",
    "CollectorSettings",
    "DbSettings",
    "HttpSettings",
    "IngestSettings",
    "MqttSettings",
    "TlsSettings",
    "load_settings",
    "sample_config",
]

logger = logging.getLogger(__name__)

ENV_PREFIX = "EDGEMETER_COLLECTOR__"
CONFIG_ENV = "EDGEMETER_COLLECTOR_CONFIG"
CREDENTIAL_NAMES = {"mqtt": "mqtt-password", "db": "db-password", "http": "http-token"}
"""systemd credential file names (``LoadCredential=NAME:...``) per table."""
MODELS_CREDENTIAL = "models-token"
"""systemd credential of ``[http] models_token``."""


class MqttSettings(SettingsTable):
    url: str = Field("mqtt://localhost:1883", description="broker: mqtt://host:port or mqtts://")
    username: str | None = Field(None, description="broker user name (overrides the URL's)")
    password: SecretStr | None = Field(None, description="prefer password_file or the environment")
    password_file: Path | None = Field(None, description="file holding the broker password")
    client_id: str | None = Field(
        None, description="stable and unique per collector; default: edgemeter-collector-HOSTNAME"
    )
    group: str | None = Field(
        None, description="MQTT v5 shared subscription group: collectors in one group split the stream"
    )
    fleet: str = Field("+", description="collect one fleet only; + is every fleet")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    session_expiry_s: int = Field(
        86_400, ge=0, description="how long the broker keeps results for a stopped collector"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="wait this long for CONNACK and SUBACK")
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_broker_url(value)  # a ConfigError with a redacted URL
        return value


class DbSettings(SettingsTable):
    url: str | None = Field(
        None, description="sqlite:////ABS/PATH.db or postgresql://user@host/db (required)",
        json_schema_extra={"example": "sqlite:////var/lib/edgemeter/results.db"},
    )
    password: SecretStr | None = Field(None, description="prefer password_file or the environment")
    password_file: Path | None = Field(None, description="file holding the database password")

    def connect_url(self) -> str:
        """The URL the store opens: :attr:`url` with :attr:`password` put in (URL-quoted)."""
        if self.url is None:
            raise ConfigError(
                "no results database: give --db URL, EDGEMETER_COLLECTOR__DB__URL or [db] url"
            )
        if self.password is None or _is_sqlite(self.url):
            return self.url
        return _with_password(self.url, self.password.get_secret_value())


class HttpSettings(SettingsTable):
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT the HTTP server listens on")
    token: SecretStr | None = Field(None, description="bearer token; prefer token_file")
    token_file: Path | None = Field(None, description="file holding the bearer token")
    models_token: SecretStr | None = Field(
        None, description="what agents send to fetch models off loopback ([models] token_file "
        "on the boards); prefer models_token_file")
    models_token_file: Path | None = Field(None, description="file holding the models token")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="names clients may reach this server by (Host header), "
        "besides the listen address, localhost and 127.0.0.1; others get 400",
        json_schema_extra={"example": ["collector.lab.example"]})
    max_event_readers: int = Field(64, ge=1, le=100_000,
                                   description="open /api/events streams at most; 503 beyond")
    max_downloads: int = Field(8, ge=1, le=10_000,
                               description="model downloads at once at most; 503 beyond")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value


class IngestSettings(SettingsTable):
    batch_size: int = Field(200, ge=1, le=10_000, description="results written in one transaction, at most")
    receive_maximum: int = Field(
        1000, ge=1, le=65_535,
        description="messages the broker may send unacknowledged (MQTT v5 Receive Maximum): "
        "bounds the collector's memory",
    )
    retry_interval_s: float = Field(1.0, gt=0, description="first retry after a store failure")
    retry_max_interval_s: float = Field(
        60.0, gt=0, description="retries back off (doubling) up to this interval, for ever"
    )
    stats_interval_s: float = Field(60.0, gt=0, description="print the counters this often")
    metrics_max_devices: int = Field(
        10_000, ge=1, description="devices (per fleet) whose figures /metrics keeps, at most: "
        "bounds what boards inventing ids or fleets can add")
    gc_threshold: int = Field(
        10_000, ge=0,
        description="the collector process's first garbage-collection threshold (Python's default "
        "700): parsing a message makes many short-lived objects, and collecting after every 700 "
        "cost about a quarter of the ingest rate (bench/ingest.py); 0 leaves Python's settings",
    )


class CollectorSettings(LayeredSettings):
    """Everything ``edgemeter collector serve`` needs; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid")
    config_env: ClassVar[str | None] = CONFIG_ENV
    sample_hint: ClassVar[str] = "`edgemeter collector sample-config` lists every setting"

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    db: DbSettings = Field(default_factory=DbSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    history: HistoryRetention = Field(default_factory=HistoryRetention)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def toml_table(cls, doc: dict[str, Any], path: Path) -> dict[str, Any]:
        """The whole file, which holds tables only."""
        for table, value in doc.items():
            if table in cls.model_fields and not isinstance(value, dict):
                raise ConfigError(f"config file {path}: {table} must be a table, [{table}]")
        return doc


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """``EDGEMETER_COLLECTOR__*`` variables in ``environ`` that name no setting."""
    unknown = []
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        model: type[BaseModel] | None = CollectorSettings
        for part in parts:
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                unknown.append(name)
                break
            sub = field.annotation
            model = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
    return sorted(unknown)


@functools.cache
def _warn_once(name: str) -> None:
    close = closest_key(name[len(ENV_PREFIX):].lower().replace("__", "."), CollectorSettings)
    hint = f" (did you mean {ENV_PREFIX}{close.upper().replace('.', '__')}?)" if close else ""
    logger.warning("ignoring %s: no such collector setting%s", name, hint)


def _warn_unknown_env(environ: Mapping[str, str]) -> None:
    """One warning per misspelt variable for the life of the process, however often we load."""
    for name in unknown_env_vars(environ):
        _warn_once(name)


# -- secrets -------------------------------------------------------------------------------------


def _is_sqlite(url: str) -> bool:
    return urlsplit(url).scheme.split("+")[0] == "sqlite"


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    if not parts.username:
        raise ConfigError(
            f"a database password needs a user name in the database URL {redact_url(url)}: "
            "use postgresql://USER@HOST/DB"
        )
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _url_has_password(url: str | None) -> bool:
    return bool(url) and redact_url(url) != url


def resolve_secrets(settings: CollectorSettings, credentials_dir: Path | None) -> CollectorSettings:
    """``settings`` with each password and token taken from its source (module docstring)."""
    mqtt, db, http = settings.mqtt, settings.db, settings.http
    mqtt_pw = resolve_secret(table="mqtt", key="password", value=mqtt.password,
                             file=mqtt.password_file, credential=CREDENTIAL_NAMES["mqtt"],
                             folder=credentials_dir, elsewhere=_url_has_password(mqtt.url))
    db_pw = resolve_secret(table="db", key="password", value=db.password, file=db.password_file,
                           credential=CREDENTIAL_NAMES["db"], folder=credentials_dir,
                           elsewhere=_url_has_password(db.url))
    token = resolve_secret(table="http", key="token", value=http.token, file=http.token_file,
                           credential=CREDENTIAL_NAMES["http"], folder=credentials_dir)
    models_token = resolve_secret(table="http", key="models_token", value=http.models_token,
                                  file=http.models_token_file, credential=MODELS_CREDENTIAL,
                                  folder=credentials_dir)
    if db_pw is not None and db.url is not None and _is_sqlite(db.url):
        if db.password is not None or db.password_file is not None:
            logger.warning("ignoring the database password: SQLite (%s) has none", db.url)
        db_pw = None
    return settings.model_copy(update={
        "mqtt": mqtt.model_copy(update={"password": mqtt_pw}),
        "db": db.model_copy(update={"password": db_pw}),
        "http": http.model_copy(update={"token": token, "models_token": models_token}),
    })


# -- loading -------------------------------------------------------------------------------------


def load_settings(
    cli: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    credentials_dir: Path | None = None,
) -> CollectorSettings:
    """Settings from flags (nested dict, ``None`` = not given), environment, file and defaults,
    with secrets resolved.

    ``environ`` is only read for the typo warnings and ``$CREDENTIALS_DIRECTORY`` (default:
    :data:`os.environ`); pydantic-settings reads the process environment itself.
    ``credentials_dir`` overrides ``$CREDENTIALS_DIRECTORY``.
    """
    env = os.environ if environ is None else environ
    _warn_unknown_env(env)
    if credentials_dir is None and env.get(CREDENTIALS_ENV):
        credentials_dir = Path(env[CREDENTIALS_ENV])
    settings = load_layered(CollectorSettings, cli, config_file)
    return resolve_secrets(settings, credentials_dir)


# -- sample --------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list) and not value:  # e.g. [alerts] rules: [[alerts.rules]] tables
        return "[]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sample_table(model: type[BaseModel], name: str, lines: list[str]) -> None:
    lines += ["", f"[{name}]"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for key, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            nested.append((f"{name}.{key}", sub))
            continue
        lines.append(f"# {field.description}")
        default = field.get_default(call_default_factory=True)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if default is None or default == []:
            example = extra.get("example")
            lines.append(f"# {key} = {_toml_value(example) if example else '...'}")
        else:
            lines.append(f"{key} = {_toml_value(default)}")
    for sub_name, sub_model in nested:
        _sample_table(sub_model, sub_name, lines)


def sample_config() -> str:
    """An annotated TOML file with every setting: defaults set, the rest commented out."""
    lines = [
        "# edgemeter collector configuration: edgemeter collector serve --config FILE",
        "# Precedence: flags > EDGEMETER_COLLECTOR__TABLE__KEY environment > this file > defaults.",
        "# Secrets: prefer *_file, the environment or systemd credentials (mqtt-password,",
        "# db-password, http-token in $CREDENTIALS_DIRECTORY) to writing them here.",
    ]
    for name, field in CollectorSettings.model_fields.items():
        sub = field.annotation
        assert isinstance(sub, type) and issubclass(sub, BaseModel)
        _sample_table(sub, name, lines)
    return "\n".join(lines) + "\n"
