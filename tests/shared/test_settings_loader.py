"""One settings loader: flags > environment > TOML file > defaults, for bench, daemon and collector,
and one rule for secrets (value, ``*_file``, systemd credential)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.errors import ConfigError
from shared.settings import resolve_secret


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGEMETER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bench_takes_flags_over_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.config import load_settings

    cfg = write(tmp_path / "bench.toml",
                '[bench]\nthreads = 1\nbatch = 2\nstreams = 3\n[bench.power]\nidle_s = 1.5\n')
    monkeypatch.setenv("EDGEMETER_THREADS", "5")
    monkeypatch.setenv("EDGEMETER_BATCH", "6")
    monkeypatch.setenv("EDGEMETER_POWER__HZ", "7")
    settings = load_settings({"threads": 9, "batch": None}, cfg)
    assert settings.threads == 9  # flag over env and file
    assert settings.batch == 6  # env over file (a flag of None is not given)
    assert settings.streams == 3  # file over default
    assert settings.samples_per_query == 8  # default
    assert (settings.power.hz, settings.power.idle_s) == (7.0, 1.5)  # nested: env, file
    monkeypatch.setenv("EDGEMETER_CONFIG", str(cfg))
    assert load_settings({}).streams == 3  # the file named by the environment


def test_the_daemon_takes_env_over_file_over_defaults_its_bench_table_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.daemon.config import load_agent_settings

    cfg = write(tmp_path / "agent.toml",
                'device_id = "file"\nfleet = "file-fleet"\n[mqtt]\nurl = "mqtt://file:1"\n'
                '[bench]\nthreads = 1\nfidelity = 4\n')
    monkeypatch.setenv("EDGEMETER_DEVICE_ID", "env")
    monkeypatch.setenv("EDGEMETER_BENCH__THREADS", "2")
    settings = load_agent_settings(cfg)
    assert (settings.device_id, settings.fleet) == ("env", "file-fleet")
    assert settings.mqtt.url == "mqtt://file:1" and settings.mqtt.keepalive_s == 30
    assert (settings.bench.threads, settings.bench.fidelity, settings.bench.batch) == (2, 4, 1)
    assert settings.bench.model_fields_set >= {"threads", "fidelity"}
    assert "batch" not in settings.bench.model_fields_set  # a job's own batch is not overridden


def test_the_collector_takes_flags_over_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.config import load_settings

    cfg = write(tmp_path / "collector.toml",
                '[mqtt]\nurl = "mqtt://file:1"\ngroup = "file"\nfleet = "file"\n')
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__URL", "mqtt://env:2")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__GROUP", "env")
    settings = load_settings({"mqtt": {"url": "mqtt://flag:3", "group": None}}, cfg)
    assert (settings.mqtt.url, settings.mqtt.group, settings.mqtt.fleet) == (
        "mqtt://flag:3", "env", "file")
    assert settings.mqtt.keepalive_s == 30


@pytest.mark.parametrize("side", ["bench", "daemon", "collector"])
def test_every_side_names_an_unknown_key_and_the_closest_real_one(tmp_path: Path, side: str) -> None:
    from agent.config import load_settings as load_bench
    from agent.daemon.config import load_agent_settings
    from collector.config import load_settings as load_collector

    text, load = {
        "bench": ("[bench]\nthreds = 2\n", lambda p: load_bench({}, p)),
        "daemon": ("[mqtt]\nkeepalive = 5\n", load_agent_settings),
        "collector": ("[mqtt]\nkeepalive = 5\n", lambda p: load_collector({}, p)),
    }[side]
    with pytest.raises(ConfigError, match=r"unknown setting \S+ \(did you mean \S+\?\)") as err:
        load(write(tmp_path / "c.toml", text))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("side", ["bench", "daemon", "collector"])
def test_every_side_says_when_the_file_is_missing_or_not_toml(tmp_path: Path, side: str) -> None:
    from agent.config import load_settings as load_bench
    from agent.daemon.config import load_agent_settings
    from collector.config import load_settings as load_collector

    load = {"bench": lambda p: load_bench({}, p), "daemon": load_agent_settings,
            "collector": lambda p: load_collector({}, p)}[side]
    with pytest.raises(ConfigError, match=r"cannot read config file .*: no such file"):
        load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load(write(tmp_path / "bad.toml", "[mqtt\n"))


# -- secrets -------------------------------------------------------------------------------------


def secret(tmp_path: Path, **kw: object) -> str | None:
    args: dict[str, object] = {"table": "mqtt", "key": "password", "value": None, "file": None,
                               "credential": "mqtt-password", "folder": None, **kw}
    found = resolve_secret(**args)  # type: ignore[arg-type]
    return None if found is None else found.get_secret_value()


def test_a_secret_comes_from_its_value_its_file_or_the_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    write(creds / "mqtt-password", "from-systemd\n")
    pw = write(tmp_path / "pw", "from-file\n")
    assert secret(tmp_path, value=SecretStr("v"), folder=creds) == "v"
    assert secret(tmp_path, file=pw, folder=creds) == "from-file"
    assert secret(tmp_path, folder=creds) == "from-systemd"
    assert secret(tmp_path, folder=creds, elsewhere=True) is None  # e.g. in the URL
    assert secret(tmp_path) is None


def test_a_secret_rule_refuses_both_and_an_empty_file_but_not_an_empty_credential(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"\[mqtt\] has both password and password_file"):
        secret(tmp_path, value=SecretStr("v"), file=write(tmp_path / "pw", "x"))
    with pytest.raises(ConfigError, match="is empty"):
        secret(tmp_path, file=write(tmp_path / "empty", "\n"))
    with pytest.raises(ConfigError, match=r"cannot read \[mqtt\] password_file"):
        secret(tmp_path, file=tmp_path / "nope")
    creds = tmp_path / "creds"
    creds.mkdir()
    write(creds / "mqtt-password", "")
    assert secret(tmp_path, folder=creds) is None  # mutual TLS: no password


def test_the_daemon_and_the_collector_follow_the_same_secret_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.daemon.config import load_agent_settings
    from collector.config import load_settings as load_collector

    creds = tmp_path / "creds"
    creds.mkdir()
    write(creds / "mqtt-password", "cred\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    collector = load_collector({})
    assert collector.mqtt.password is not None
    assert collector.mqtt.password.get_secret_value() == "cred"
    assert load_agent_settings(None).mqtt.resolved_password() == "cred"
    monkeypatch.setenv("EDGEMETER_MQTT__PASSWORD", "env")
    monkeypatch.setenv("EDGEMETER_COLLECTOR__MQTT__PASSWORD", "env")
    pw = write(tmp_path / "pw", "file")
    with pytest.raises(ConfigError, match="has both password and password_file"):
        load_agent_settings(write(tmp_path / "a.toml", f'[mqtt]\npassword_file = "{pw}"\n'))
    with pytest.raises(ConfigError, match="has both password and password_file"):
        load_collector({"mqtt": {"password_file": pw}})


def test_a_flat_environment_value_for_a_table_reads_as_its_old_shortcut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.config import load_settings

    monkeypatch.setenv("EDGEMETER_POWER", "none")
    assert load_settings({}).power.source == "none"
    monkeypatch.setenv("EDGEMETER_INPUT_RANGE", "not a pair")
    with pytest.raises(ConfigError, match=r"^invalid setting input_range"):
        load_settings({})
