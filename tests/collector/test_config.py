"""Collector settings: precedence, file and environment checks, the sample config, secrets."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from collector import commands
from collector.config import (
    CollectorSettings,
    DbSettings,
    load_settings,
    sample_config,
    unknown_env_vars,
)
from shared.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("EDGEMETER_COLLECTOR") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_file_beat_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "c.toml", '[mqtt]\nurl = "mqtt://file:1"\ngroup = "file-group"\n'
                   'fleet = "file-fleet"\n[ingest]\nbatch_size = 3\n')
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__URL", "mqtt://env:2")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__GROUP", "env-group")
    settings = load_settings({"mqtt": {"url": "mqtt://flag:3", "group": None, "fleet": None}},
                             config)
    assert settings.mqtt.url == "mqtt://flag:3"  # flag over env and file
    assert settings.mqtt.group == "env-group"  # env over file; a flag of None is not given
    assert settings.mqtt.fleet == "file-fleet"  # file over default
    assert settings.ingest.batch_size == 3
    assert settings.ingest.receive_maximum == 1000  # default
    assert settings.mqtt.keepalive_s == 30


def test_the_config_file_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "c.toml", '[db]\nurl = "sqlite:////var/lib/x.db"\n')
    monkeypatch.setenv("EDGEMETER_COLLECTOR_CONFIG", str(config))
    assert load_settings().db.url == "sqlite:////var/lib/x.db"


def test_nested_environment_variables_reach_every_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__TLS__CA_FILE", "/etc/ca.pem")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__HTTP__LISTEN", "0.0.0.0:9000")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__INGEST__RETRY_INTERVAL_S", "2.5")
    settings = load_settings()
    assert settings.mqtt.tls.ca_file == Path("/etc/ca.pem")
    assert settings.http.listen == "0.0.0.0:9000"
    assert settings.ingest.retry_interval_s == 2.5


@pytest.mark.parametrize(("text", "named"), [
    ('[mqtt]\nurll = "mqtt://x"\n', "unknown setting mqtt.urll (did you mean mqtt.url?)"),
    ('[mqtt.tls]\nca = "/x"\n', "unknown setting mqtt.tls.ca"),
    ('[database]\nurl = "sqlite:///x.db"\n', "unknown setting database"),
    ('batch_size = 3\n', "unknown setting batch_size"),
])
def test_an_unknown_key_in_the_file_fails_at_start_naming_it(
    tmp_path: Path, text: str, named: str
) -> None:
    config = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings({}, config)
    message = str(info.value)
    assert named in message and str(config) in message and "\n" not in message


def test_bad_values_and_bad_files_are_one_line_config_errors(tmp_path: Path) -> None:
    for text, fragment in (
        ('[mqtt]\nkeepalive_s = "often"\n', "invalid setting mqtt.keepalive_s"),
        ('[http]\nlisten = "8080"\n', "invalid setting http.listen"),
        ("[mqtt\n", "not valid TOML"),
        ('mqtt = "mqtt://x"\n', "mqtt must be a table"),
    ):
        config = write(tmp_path / "c.toml", text)
        with pytest.raises(ConfigError, match=fragment) as info:
            load_settings({}, config)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, tmp_path / "missing.toml")


def test_a_bad_broker_url_is_reported_without_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"mqtt": {"url": "mqtt://collector:hunter2@broker:notaport"}})
    assert "hunter2" not in str(info.value) and "collector:***@broker" in str(info.value)


def test_a_misspelt_environment_variable_is_warned_about_once_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__KEEPALIVE", "10")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__INGESTT__BATCH_SIZE", "10")
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        first = load_settings()
        load_settings()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert any("EDGEMETER_COLLECTOR__MQTT__KEEPALIVE" in w
               and "did you mean EDGEMETER_COLLECTOR__MQTT__KEEPALIVE_S" in w for w in warnings)
    assert any("EDGEMETER_COLLECTOR__INGESTT__BATCH_SIZE" in w for w in warnings)
    assert first.mqtt.keepalive_s == 30 and first.ingest.batch_size == 200


def test_only_misspelt_variables_count_as_unknown() -> None:
    environ = {
        "EDGEMETER_COLLECTOR__MQTT__URL": "x", "edgemeter_collector__db__password": "x",
        "EDGEMETER_COLLECTOR__MQTT__TLS__KEY_FILE": "x", "EDGEMETER_COLLECTOR_CONFIG": "x",
        "EDGEMETER_THREADS": "2", "EDGEMETER_COLLECTOR__MQTT__TLS__KEY": "x",
        "EDGEMETER_COLLECTOR__MQTT__URL__X": "x",
    }
    assert unknown_env_vars(environ) == ["EDGEMETER_COLLECTOR__MQTT__TLS__KEY",
                                         "EDGEMETER_COLLECTOR__MQTT__URL__X"]


def test_the_sample_config_parses_back_to_the_defaults(tmp_path: Path) -> None:
    text = sample_config()
    doc = tomllib.loads(text)
    assert set(doc) == {"mqtt", "db", "http", "ingest", "history", "alerts"} and "tls" in doc["mqtt"]

    def every_key(model: type[BaseModel]) -> list[str]:
        keys = []
        for key, field in model.model_fields.items():
            sub = field.annotation
            is_table = isinstance(sub, type) and issubclass(sub, BaseModel)
            keys += every_key(sub) if is_table else [key]  # type: ignore[arg-type]
        return keys

    for key in every_key(CollectorSettings):
        assert f"\n{key} =" in text or f"\n# {key} =" in text, key
    assert load_settings({}, write(tmp_path / "sample.toml", text)) == load_settings()


def test_the_sample_config_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["collector", "sample-config"])
    assert args.func(args) == 0
    assert capsys.readouterr().out == sample_config()


# -- secrets -------------------------------------------------------------------------------------


def test_passwords_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__PASSWORD", "mqtt-env")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__DB__PASSWORD", "db-env")
    settings = load_settings({"db": {"url": "postgresql://edgemeter@db.example/results"}})
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "mqtt-env"
    assert settings.db.connect_url() == "postgresql://edgemeter:db-env@db.example/results"
    assert "mqtt-env" not in repr(settings) and "db-env" not in repr(settings)


def test_a_password_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = write(tmp_path / "pw", "p@ss/word:1\n")
    settings = load_settings({"mqtt": {"password_file": secret},
                              "db": {"url": "postgresql://u@h/db", "password_file": secret}})
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "p@ss/word:1"
    assert settings.db.connect_url() == "postgresql://u:p%40ss%2Fword%3A1@h/db"


def test_password_and_password_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__PASSWORD", "x")
    with pytest.raises(ConfigError, match=r"\[mqtt\] has both password and password_file"):
        load_settings({"mqtt": {"password_file": write(tmp_path / "pw", "y")}})


def test_unreadable_or_empty_password_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read \[mqtt\] password_file"):
        load_settings({"mqtt": {"password_file": tmp_path / "nope"}})
    with pytest.raises(ConfigError, match="is empty"):
        load_settings({"mqtt": {"password_file": write(tmp_path / "empty", "\n")}})


def test_an_empty_token_from_the_environment_is_refused_at_start_like_an_empty_file(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__HTTP__TOKEN", "")
    with pytest.raises(ConfigError, match=r"\[http\] token is empty"):
        load_settings({"db": {"url": "sqlite:////tmp/x.db"}})


def test_the_models_token_comes_from_its_file_or_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({"http": {"models_token_file": write(tmp_path / "mt", "boards\n")}})
    assert settings.http.models_token is not None
    assert settings.http.models_token.get_secret_value() == "boards"
    folder = credentials(tmp_path)
    write(folder / "models-token", "cred-models")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(folder))
    settings = load_settings({})
    assert settings.http.models_token is not None
    assert settings.http.models_token.get_secret_value() == "cred-models"


def test_a_password_inside_mqtt_on_the_command_line_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgemeter.cli import main

    # stops at the missing database, after the warning
    assert main(["collector", "serve", "--mqtt", "mqtt://u:hunter2@127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "visible to other users" in err and "--mqtt-password-file" in err
    assert "password_file" in err and "hunter2" not in err


def credentials(tmp_path: Path) -> Path:
    folder = tmp_path / "creds"
    folder.mkdir()
    write(folder / "mqtt-password", "cred-mqtt\n")
    write(folder / "db-password", "cred-db")
    write(folder / "http-token", "cred-token")
    return folder


def test_systemd_credentials_are_used_when_nothing_else_gives_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials(tmp_path)))
    settings = load_settings({"db": {"url": "postgresql://u@h/db"}})
    assert settings.mqtt.password is not None and settings.http.token is not None
    assert settings.mqtt.password.get_secret_value() == "cred-mqtt"
    assert settings.db.connect_url() == "postgresql://u:cred-db@h/db"
    assert settings.http.token.get_secret_value() == "cred-token"


def test_any_other_source_wins_over_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__PASSWORD", "env")
    settings = load_settings(
        {"db": {"url": "postgresql://u:in-url@h/db"},
         "http": {"token_file": write(tmp_path / "token", "from-file")}},
        credentials_dir=credentials(tmp_path),
    )
    assert settings.mqtt.password is not None and settings.http.token is not None
    assert settings.mqtt.password.get_secret_value() == "env"
    assert settings.db.connect_url() == "postgresql://u:in-url@h/db"  # the URL's, unchanged
    assert settings.http.token.get_secret_value() == "from-file"


def test_a_password_in_the_broker_url_still_works_and_wins_over_credentials(
    tmp_path: Path,
) -> None:
    settings = load_settings({"mqtt": {"url": "mqtt://collector:in-url@broker:1883"}},
                             credentials_dir=credentials(tmp_path))
    assert settings.mqtt.password is None  # connect() takes it from the URL


def test_sqlite_has_no_password(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        settings = load_settings({"db": {"url": "sqlite:////tmp/x.db"}},
                                 environ={"EDGEMETER_COLLECTOR__DB__PASSWORD": "unused"})
    assert settings.db.connect_url() == "sqlite:////tmp/x.db"
    assert settings.db.password is None


def test_an_explicit_password_for_sqlite_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EDGEMETER_COLLECTOR__DB__PASSWORD", "db-secret")
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        settings = load_settings({"db": {"url": "sqlite:////tmp/x.db"}})
    assert settings.db.connect_url() == "sqlite:////tmp/x.db"
    assert "SQLite" in caplog.text and "db-secret" not in caplog.text


def test_a_database_url_is_required_and_a_password_needs_a_user() -> None:
    with pytest.raises(ConfigError, match="no results database: give --db URL"):
        DbSettings().connect_url()
    with pytest.raises(ConfigError, match="needs a user name") as info:
        DbSettings(url="postgresql://h/db", password="s3cret").connect_url()
    assert "s3cret" not in str(info.value)
