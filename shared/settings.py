"""The one way edgemeter reads its settings: the agent's, the daemon's and the collector's.

Each side declares a pydantic-settings model on :class:`LayeredSettings` and loads it with
:func:`load_layered`. Every value comes from the first of these that gives it:

1. command-line flags (given to :func:`load_layered` as a nested mapping; ``None`` = not given);
2. the environment: the model's prefix and its field names, ``__`` between nested names
   (``EDGEMETER_THREADS=2``, ``EDGEMETER_MQTT__URL=...``,
   ``EDGEMETER_COLLECTOR__DB__URL=...``); a nested name no table has is ignored;
3. the TOML config file (``--config FILE``, or the model's ``config_env`` variable), read by
   pydantic-settings' own :class:`~pydantic_settings.TomlConfigSettingsSource`; a key the model
   does not know stops the program with one line naming it and the closest real one;
4. the model's defaults.

Secrets follow one rule too (:func:`resolve_secret`): a password or token is taken from the
first of its value (by the precedence above), its ``*_file`` (the file's content without the
trailing newline), and the systemd credential ``$CREDENTIALS_DIRECTORY/NAME``
(``LoadCredential=NAME:...``). Giving both the value and the ``*_file`` is an error; an empty or
unreadable ``*_file`` is an error; an empty systemd credential means no secret (a broker that
takes mutual TLS needs no password).

Use::

    class MySettings(LayeredSettings):
        model_config = SettingsConfigDict(env_prefix="EDGEMETER_", env_nested_delimiter="__")
        config_env: ClassVar[str | None] = "EDGEMETER_CONFIG"
        threads: int = 1

    settings = load_layered(MySettings, {"threads": args.threads}, args.config)

The tables both sides' files have alike (a table that refuses unknown keys, the broker's TLS
files) are defined here as well.
"""

from __future__ import annotations

import contextvars
import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsError,
    TomlConfigSettingsSource,
)

from shared.errors import ConfigError
from shared.mqtt import TlsFiles

__all__ = ["CREDENTIALS_ENV", "LayeredSettings", "SettingsTable", "TlsSettings", "all_keys", "as_plain",
           "closest_key", "load_layered", "plugin_table", "resolve_secret", "unknown_keys"]

logger = logging.getLogger(__name__)

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
"""Where systemd puts the files of ``LoadCredential=``."""

S = TypeVar("S", bound="LayeredSettings")


class SettingsTable(BaseModel):
    """A ``[table]`` of a config file: an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TlsSettings(SettingsTable):
    """``[mqtt.tls]``: the broker's CA, and this client's own pair for mutual TLS (PEM files)."""

    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's (PEM)")
    cert_file: Path | None = Field(None, description="this client's certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="this client's private key (mutual TLS)")

    def files(self) -> TlsFiles:
        return TlsFiles(ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file)


# -- key names -----------------------------------------------------------------------------------


def _table_model(field_annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``Table`` or ``Table | None``), if it holds one."""
    candidates = getattr(field_annotation, "__args__", None) or (field_annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def unknown_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names in ``data`` that ``model`` (and its nested tables) does not have.

    A table that takes extra keys (``extra="allow"``, such as ``[power]``'s per-source tables)
    checks its own keys when it is validated.
    """
    if model.model_config.get("extra") == "allow":
        return []
    unknown = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(prefix + key)
            continue
        sub = _table_model(field.annotation)
        if isinstance(value, Mapping) and sub is not None:
            unknown += unknown_keys(value, sub, f"{prefix}{key}.")
    return unknown


def all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted setting name of ``model``."""
    keys = []
    for name, field in model.model_fields.items():
        sub = _table_model(field.annotation)
        if sub is not None:
            keys += all_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def closest_key(name: str, model: type[BaseModel]) -> str | None:
    """The dotted setting name closest to ``name`` (a typo's likely intent), if any is close."""
    match = difflib.get_close_matches(name, all_keys(model), n=1)
    return match[0] if match else None


def _drop(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    data.pop(last, None)


# -- sources -------------------------------------------------------------------------------------

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "edgemeter_config_file", default=None)


class KnownEnvSource(EnvSettingsSource):
    """The environment source, minus nested keys no table has (a typo is warned about, once,
    by the side that owns the prefix)."""

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        """JSON for a table or list; other text is handed to the model as it is, whose own
        validators read it (``EDGEMETER_POWER=rapl`` names the source)."""
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for dotted in unknown_keys(data, self.settings_cls):
            if "." in dotted:
                _drop(data, dotted)
        return data


class TomlFileSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source for one file, with one-line errors: a file that cannot be
    read, is not TOML, or has a key the model does not know is a :class:`ConfigError`.

    The model's :meth:`LayeredSettings.toml_table` picks the part of the file it reads.
    """

    def __init__(self, settings_cls: type[LayeredSettings], path: Path | None) -> None:
        self.path = path
        self.layered = settings_cls
        if path is not None and not Path(path).expanduser().is_file():
            reason = "is a folder" if Path(path).is_dir() else "no such file"
            raise ConfigError(f"cannot read config file {path}: {reason}")
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            doc = super()._read_file(file_path)
        except OSError as err:
            raise ConfigError(f"cannot read config file {self.path}: {err.strerror or err}") from err
        except ValueError as err:  # tomllib.TOMLDecodeError, UnicodeDecodeError
            raise ConfigError(f"config file {self.path} is not valid TOML: {err}") from err
        table = self.layered.toml_table(doc, Path(file_path))
        unknown = unknown_keys(table, self.layered)
        if unknown:
            first = unknown[0]
            close = closest_key(first, self.layered)
            hint = f" (did you mean {close}?)" if close else ""
            more = f", and {', '.join(unknown[1:])}" if len(unknown) > 1 else ""
            raise ConfigError(f"config file {self.path}: unknown setting {first}{hint}{more}; "
                              f"{self.layered.sample_hint}")
        return table


class LayeredSettings(BaseSettings):
    """Base of every edgemeter settings model: flags > environment > TOML file > defaults."""

    config_env: ClassVar[str | None] = None
    """the environment variable that names the config file when ``--config`` is not given"""
    sample_hint: ClassVar[str] = "see `edgemeter config sample` for the valid names"
    """what an unknown-key error tells the user to read"""

    @classmethod
    def toml_table(cls, doc: dict[str, Any], path: Path) -> dict[str, Any]:
        """The part of the config file this model reads (default: all of it)."""
        return doc

    @classmethod
    def config_path(cls) -> Path | None:
        """The config file: the one :func:`load_layered` was given, else ``config_env``'s."""
        path = _config_file.get()
        if path is None and cls.config_env and os.environ.get(cls.config_env):
            path = Path(os.environ[cls.config_env])
        return path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert issubclass(settings_cls, LayeredSettings)
        return (init_settings, KnownEnvSource(settings_cls),
                TomlFileSource(settings_cls, settings_cls.config_path()))


def prune_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the ``None`` values (flags not given), nested mappings included."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            value = prune_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def validation_message(err: ValidationError, what: str = "setting") -> str:
    """One line for the first error: ``invalid setting mqtt.url: ...``, or a check's own words."""
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    where = ".".join(str(p) for p in first["loc"])
    if not where:  # a check across fields says which settings in its own words
        return msg
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    return f"invalid {what} {where}: {msg}"


def load_layered(model: type[S], cli: Mapping[str, Any] | None = None,
                 config_file: Path | None = None, *, what: str = "setting") -> S:
    """``model`` from flags (nested, ``None`` = not given), environment, file and defaults.

    Raises :class:`ConfigError` with one line (``what`` names the settings in it).
    """
    token = _config_file.set(config_file)
    try:
        return model(**prune_none(cli or {}))
    except ValidationError as err:
        raise ConfigError(validation_message(err, what)) from err
    except SettingsError as err:  # an environment variable pydantic-settings cannot parse
        raise ConfigError(f"invalid {what}: {err}") from err
    finally:
        _config_file.reset(token)


M = TypeVar("M", bound=BaseModel)


def as_plain(loaded: BaseModel, model: type[M]) -> M:
    """``loaded`` (a :class:`LayeredSettings` twin of ``model``) as a plain ``model``, with the
    same values and the same fields marked as given, not validated again.

    A model that is also validated from data (a nested table, a job's JSON) must not be a
    ``BaseSettings`` (pydantic-settings would read the environment and the file every time it is
    validated), so such a model gets a loader twin: ``class Loader(Model, LayeredSettings)``.
    """
    values = {name: getattr(loaded, name) for name in model.model_fields}
    return model.model_construct(_fields_set=set(loaded.model_fields_set), **values)


# -- secrets -------------------------------------------------------------------------------------


def _read_secret(path: Path, what: str) -> SecretStr:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from err
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{what} {path} is empty")
    return SecretStr(secret)


def credentials_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """systemd's credentials folder, when the service has one."""
    value = (os.environ if environ is None else environ).get(CREDENTIALS_ENV)
    return Path(value) if value else None


def plugin_table(cls: type[M], raw: Any, where: str) -> M:
    """A plugin's own settings table (a backend's, a power source's) from a mapping, validated;
    a one-line :class:`ConfigError` naming ``where`` (``[backends.litert]``) and the key."""
    if isinstance(raw, cls):
        return raw
    try:
        return cls.model_validate(dict(raw))
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or where
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = f"unknown key (known: {', '.join(cls.model_fields) or 'none'})"
        raise ConfigError(f"{where} {key}: {msg}") from err


def resolve_secret(
    *,
    table: str,
    key: str,
    value: SecretStr | None,
    file: Path | None,
    credential: str | None,
    folder: Path | None,
    elsewhere: bool = False,
) -> SecretStr | None:
    """A secret from its value, its ``*_file`` or the systemd credential (module docstring).

    ``table``/``key`` name it in errors (``[mqtt] password``); ``credential`` is its systemd
    credential's name, looked up in ``folder``. ``elsewhere`` says the secret is already given in
    another place the caller reads (a password inside a URL): then no credential is read.
    """
    if value is not None and file is not None:
        raise ConfigError(f"[{table}] has both {key} and {key}_file (from flags, environment or "
                          f"config file): keep one")
    if value is not None:
        if not value.get_secret_value():
            raise ConfigError(f"[{table}] {key} is empty (from a flag, the environment or the config "
                              f"file): set a non-empty one or remove it")
        return value
    if file is not None:
        return _read_secret(file, f"[{table}] {key}_file")
    if elsewhere or folder is None or credential is None:
        return None
    path = folder / credential
    if not path.is_file():
        return None
    try:
        text = path.read_text().rstrip("\r\n")
    except OSError as err:
        raise ConfigError(f"cannot read the systemd credential {path}: "
                          f"{err.strerror or err}") from err
    logger.debug("[%s] %s from the systemd credential %s", table, key, path.name)
    return SecretStr(text) if text else None  # empty: no secret (mutual TLS, say)
