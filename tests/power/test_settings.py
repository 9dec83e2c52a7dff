"""Each source owns its settings: [power] and [power.NAME] tables, env, the old flags as
shortcuts, and config errors that name the table and the key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.commands.bench_args import add_bench_flags, settings_from_args
from agent.config import load_settings, sample_config
from agent.power.mqttplug import PlugSettings
from agent.power.rapl import RaplSettings
from agent.power.rpi5 import Rpi5Settings
from agent.power.settings import PowerSettings, fold_power_flags
from shared.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    return cfg


def test_a_source_reads_its_own_table(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[power]\nsource = "tasmota"\nhz = 2\n\n[power.tasmota]\n'
                          'broker = "mqtt://plugs:1883"\ntopic = "bench-plug"\n')
    power = load_settings({}, cfg).power
    assert (power.source, power.hz, power.idle_s) == ("tasmota", 2.0, 3.0)
    assert power.table("tasmota") == PlugSettings(broker="mqtt://plugs:1883", topic="bench-plug")
    assert power.table("rapl") == RaplSettings()  # no table: the source's defaults


def test_bench_power_table_under_bench_works_too(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[bench]\nthreads = 1\n[bench.power]\nsource = "none"\n'
                          '[bench.power.rpi5]\ncalibration = [1.1, 0.4]\n')
    settings = load_settings({}, cfg)
    assert settings.threads == 1 and settings.power.source == "none"
    assert settings.power.table("rpi5") == Rpi5Settings(calibration=(1.1, 0.4))


def test_environment_reaches_a_source_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMETER_POWER__SOURCE", "shelly")
    monkeypatch.setenv("EDGEMETER_POWER__SHELLY__TOPIC", "shellyplug-1")
    monkeypatch.setenv("EDGEMETER_POWER__SHELLY__BROKER", "mqtt://broker:1883")
    power = load_settings({}).power
    assert power.source == "shelly"
    assert power.table("shelly") == PlugSettings(broker="mqtt://broker:1883", topic="shellyplug-1")


@pytest.mark.parametrize(("text", "message"), [
    ("[power.rpi5]\ncalibration = [-1.0, 0.5]\n", r"^\[power\.rpi5\] calibration: scale must be"),
    ('[power.rapl]\nrot = "/sys"\n', r"^\[power\.rapl\] rot: unknown key \(known: root\)$"),
    ('[power.tasmota]\ntopic = "a/b"\n', r"^\[power\.tasmota\] topic: 'a/b' must be one topic"),
    ("[power.nvml]\ndevices = [-1]\n", r"^\[power\.nvml\] devices: give distinct GPU indices"),
    ('[power.estimate]\nfit = "squeeze"\n', r"^\[power\.estimate\] fit: Input should be"),
    ("[power.kill-a-watt]\nx = 1\n", r"^\[power\.kill-a-watt\]: no power source"),
    ("[power]\nhzz = 5\n", r"^\[power\] hzz: unknown key"),
    ('[power]\nsource = "watts-up"\n', r"unknown power source 'watts-up'; choose one of: auto"),
])
def test_config_errors_name_the_table_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_settings({}, write(tmp_path, text))
    assert "\n" not in str(err.value)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_flags(parser)
    return parser.parse_args(["model.onnx", *argv])


def test_the_old_flags_are_shortcuts_into_the_tables(tmp_path: Path) -> None:
    settings = settings_from_args(parse(
        "--power", "tasmota", "--power-hz", "2", "--idle-s", "0", "--power-topic", "plug",
        "--power-mqtt", "mqtt://h:1883", "--rpi5-calibration", "1.2,0.3", "--sysfs-root",
        str(tmp_path),
    ))
    power = settings.power
    assert (power.source, power.hz, power.idle_s) == ("tasmota", 2.0, 0.0)
    assert power.table("tasmota") == PlugSettings(broker="mqtt://h:1883", topic="plug")
    assert power.table("shelly") == PlugSettings(broker="mqtt://h:1883", topic="plug")
    assert power.table("rpi5") == Rpi5Settings(calibration=(1.2, 0.3))
    assert power.table("rapl") == RaplSettings(root=tmp_path)
    assert settings.sysfs_root == tmp_path  # still the run's root for the manifest and system


def test_a_flag_beats_the_file_table_and_leaves_its_other_keys(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[power.tasmota]\nbroker = "mqtt://file:1883"\ntopic = "file-plug"\n')
    settings = settings_from_args(parse("--config", str(cfg), "--power-topic", "flag-plug"))
    assert settings.power.table("tasmota") == PlugSettings(broker="mqtt://file:1883",
                                                           topic="flag-plug")


def test_old_flat_keys_in_a_config_file_still_read(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[bench]\npower = "none"\npower_hz = 5\nidle_s = 0\n')
    power = load_settings({}, cfg).power
    assert (power.source, power.hz, power.idle_s) == ("none", 5.0, 0.0)


def test_fold_leaves_other_keys_and_merges_a_nested_power() -> None:
    folded = fold_power_flags({"threads": 2, "power": {"source": "rapl", "rapl": {"root": "/x"}},
                               "power_hz": 10, "power_topic": None})
    assert folded == {"threads": 2, "power": {"source": "rapl", "rapl": {"root": "/x"},
                                              "hz": 10}}


def test_the_sample_config_shows_every_source_table(tmp_path: Path) -> None:
    text = sample_config()
    for name in ("rapl", "jetson", "rpi5", "nvml", "tasmota", "shelly", "estimate"):
        assert f"# [bench.power.{name}]" in text
    # uncommenting a table with its sample keys parses
    uncommented = text.replace("# [bench.power.rapl]", "[bench.power.rapl]").replace(
        '# root = "/"    #', 'root = "/"    #', 1)
    cfg = write(tmp_path, uncommented)
    assert load_settings({}, cfg).power.table("rapl") == RaplSettings()


def test_power_settings_round_trip_through_a_dump() -> None:
    power = PowerSettings(source="rpi5", rpi5={"calibration": [1.5, 0.25]})
    again = PowerSettings.model_validate(power.model_dump())
    assert again.table("rpi5") == power.table("rpi5")


def test_the_power_command_probes_with_the_config_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from edgemeter.cli import main

    cfg = write(tmp_path, '[power.tasmota]\nbroker = "mqtt://127.0.0.1:1"\ntopic = "plug"\n')
    assert main(["power", "--config", str(cfg), "--sysfs-root", str(tmp_path), "--json"]) == 0
    probes = json.loads(capsys.readouterr().out)
    assert probes["tasmota"]["usable"] is True  # configured: it would connect when opened
    assert probes["shelly"]["usable"] is False and "--power-mqtt" in probes["shelly"]["why_not"]
    assert probes["rapl"]["usable"] is False and "no RAPL zones" in probes["rapl"]["why_not"]
