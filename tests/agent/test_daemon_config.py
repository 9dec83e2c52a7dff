"""The daemon's settings: a sample that parses back, env over file, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.daemon.config import load_agent_settings, sample_config
from shared.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_the_sample_config_parses_back(tmp_path: Path) -> None:
    settings = load_agent_settings(write(tmp_path, sample_config()))
    assert settings.device_id == "pi-kitchen-01"
    assert settings.mqtt.keepalive_s == 30


def test_the_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMETER_MQTT__URL", "mqtt://broker.lan:1884")
    monkeypatch.setenv("EDGEMETER_DEVICE_ID", "from-env")
    settings = load_agent_settings(write(tmp_path, 'device_id = "from-file"\n[mqtt]\nurl = "mqtt://x:1"\n'))
    assert (settings.device_id, settings.mqtt.url) == ("from-env", "mqtt://broker.lan:1884")


def test_an_unknown_key_fails_at_start_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting mqtt\.keepalive \(did you mean "
                       r"mqtt\.keepalive_s\?\)"):
        load_agent_settings(write(tmp_path, "[mqtt]\nkeepalive = 5\n"))


def test_a_bad_broker_url_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mqtt://"):
        load_agent_settings(write(tmp_path, '[mqtt]\nurl = "http://nope"\n'))


def test_the_password_comes_from_a_file_or_the_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = load_agent_settings(write(tmp_path, f'[mqtt]\npassword_file = "{secret}"\n'))
    assert settings.mqtt.resolved_password() == "s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_agent_settings(None).mqtt.resolved_password() == "from-systemd"
    (creds / "mqtt-password").write_text("")
    assert load_agent_settings(None).mqtt.resolved_password() is None
    assert "s3cret" not in repr(settings)


def test_a_missing_password_file_is_a_one_line_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password_file /nope/pw"):
        load_agent_settings(write(tmp_path, '[mqtt]\npassword_file = "/nope/pw"\n'))
