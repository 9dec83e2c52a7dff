"""Settings precedence: flags > EDGEMETER_* environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import BenchSettings, load_settings, sample_config
from shared.errors import ConfigError


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "edgemeter.toml"
    cfg.write_text('[bench]\nthreads = 1\nfleet = "file"\nbatch = 3\n')
    monkeypatch.setenv("EDGEMETER_FLEET", "env")
    monkeypatch.setenv("EDGEMETER_THREADS", "2")
    s = load_settings({"threads": 4, "fleet": None}, cfg)
    assert (s.threads, s.fleet, s.batch) == (4, "env", 3)
    assert load_settings({}, None).batch == 1


def test_sample_config_parses_back_to_the_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "sample.toml"
    cfg.write_text(sample_config())
    from_file = load_settings({}, cfg)
    defaults = BenchSettings()
    assert from_file.model_dump() == defaults.model_dump()


def test_bad_values_give_a_config_error_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("threads = 0\n")
    with pytest.raises(ConfigError, match="threads"):
        load_settings({}, cfg)
    cfg.write_text("threads = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, cfg)


def test_power_probe_command_says_why_each_source_is_unusable(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    import json

    from edgemeter.cli import main

    assert main(["power", "--sysfs-root", str(tmp_path), "--json"]) == 0
    probes = json.loads(capsys.readouterr().out)
    assert probes["estimate"]["usable"] is True
    assert probes["rapl"]["usable"] is False and probes["rapl"]["why_not"]


def test_a_misspelt_key_in_the_config_file_is_an_error_not_ignored(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.toml"
    cfg.write_text("[bench]\nthreds = 2\n")
    with pytest.raises(ConfigError, match="threds"):
        load_settings({}, cfg)


def test_scenario_needs_are_checked_when_the_settings_are_read() -> None:
    with pytest.raises(ConfigError, match=r"^the server scenario needs --target-qps"):
        load_settings({"scenario": "server"})
    with pytest.raises(ConfigError, match="leave --batch at 1"):
        load_settings({"scenario": "multi-stream", "batch": 2})
    assert load_settings({"scenario": "server", "target_qps": 5}).target_qps == 5


def test_a_misspelt_environment_variable_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.config import warn_unknown_env

    warn_unknown_env.cache_clear()
    monkeypatch.setenv("EDGEMETER_THREDS", "2")
    monkeypatch.setenv("EDGEMETER_FLEET", "lab")
    with caplog.at_level("WARNING", logger="agent.config"):
        load_settings({})
        load_settings({})
    warnings = [r.getMessage() for r in caplog.records]
    assert not [w for w in warnings if "EDGEMETER_FLEET" in w]  # a real setting
    assert [w for w in warnings if "THREDS" in w] == [
        "environment variable EDGEMETER_THREDS is not an edgemeter setting and is ignored; "
        "did you mean EDGEMETER_THREADS?"
    ]
