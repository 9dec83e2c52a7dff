"""Run settings declared once: the job's wire format, and the flags generated from the fields."""

from __future__ import annotations

import argparse
import json

import pytest
from pydantic import ValidationError

from shared.messages import JobCommand, JobSettings
from shared.run_settings import RunPower, RunSettings
from shared.settings_flags import add_settings_flags, flag_help, flag_specs, given

MODEL = {"sha256": "a" * 64, "name": "m.onnx"}


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """The real parsers of bench, sweep and fleet run, as the CLI builds them."""
    from edgemeter.cli import build_parser

    root = build_parser("*")
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    fleet = sub.choices["fleet"]
    fleet_sub = next(a for a in fleet._actions if isinstance(a, argparse._SubParsersAction))
    return {"bench": sub.choices["bench"], "sweep": sub.choices["sweep"],
            "fleet run": fleet_sub.choices["run"]}


PARSERS = command_parsers()


def test_job_settings_is_the_one_run_settings_model() -> None:
    assert JobSettings is RunSettings


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_run_setting_has_a_flag_with_the_fields_help(command: str) -> None:
    from agent.commands.sweep import SWEEP_AXES, SWEEP_DEFAULTS

    actions = {a.dest: a for a in PARSERS[command]._actions}
    specs = list(flag_specs(RunSettings))
    assert {".".join(s.path) for s in specs} >= {"scenario", "threads", "power.source",
                                                 "power.idle_s", "samples_per_query"}
    for spec in specs:
        action = actions.get(spec.dest)
        assert action is not None, f"{command} has no flag for {spec.dest}"
        assert spec.option in action.option_strings
        dotted = ".".join(spec.path)
        if command == "sweep" and dotted in SWEEP_AXES:
            assert spec.field.description and action.help.startswith(spec.field.description)
            continue
        default = SWEEP_DEFAULTS.get(dotted) if command == "sweep" else None
        assert action.help == flag_help(spec.field, default), (command, dotted)


def test_the_flags_keep_their_old_names() -> None:
    options = {o for a in PARSERS["bench"]._actions for o in a.option_strings}
    assert options >= {"--scenario", "--profile", "--iterations", "--duration-s", "--warmup",
                       "--threads", "--batch", "--streams", "--samples-per-query",
                       "--target-qps", "--latency-bound-ms", "--backend", "--fidelity", "--seed",
                       "--power", "--power-hz", "--idle-s", "--role", "--providers",
                       "--delegate", "--device-id", "--inputs", "--input-range",
                       "--full-fidelity", "--sysfs-root", "--publish", "--power-topic"}


def test_a_new_field_is_a_new_flag_with_its_type_choices_and_help() -> None:
    from typing import Literal

    from pydantic import Field

    class More(RunSettings):
        pace: Literal["slow", "fast"] = Field("slow", description="how fast to go")

    parser = argparse.ArgumentParser()
    add_settings_flags(parser, More)
    action = next(a for a in parser._actions if a.dest == "pace")
    assert action.option_strings == ["--pace"] and action.choices == ["slow", "fast"]
    assert action.help == "how fast to go (default: slow)"
    args = parser.parse_args(["--pace", "fast", "--idle-s", "0", "--threads", "2"])
    assert given(args, More) == {"pace": "fast", "threads": 2, "power": {"idle_s": 0.0}}
    with pytest.raises(SystemExit):
        parser.parse_args(["--pace", "warp"])


def test_flags_not_given_are_not_settings() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, RunSettings)
    assert given(parser.parse_args([]), RunSettings) == {}


def test_a_job_carries_only_the_settings_its_sender_gave() -> None:
    job = JobCommand(model=MODEL, settings=RunSettings(batch=4, power="none", idle_s=0))
    sent = json.loads(job.model_dump_json())["settings"]
    assert sent == {"batch": 4, "power": "none", "idle_s": 0.0}
    back = JobCommand.model_validate_json(job.model_dump_json())
    assert back == job and back.settings.model_fields_set == {"batch", "power"}


def test_a_job_of_the_old_format_with_nulls_still_parses() -> None:
    # what `fleet run` sent before: every JobSettings field, null where unset
    old = {"scenario": "offline", "profile": None, "iterations": 50, "duration_s": None,
           "warmup": None, "threads": None, "batch": 1, "streams": 2,
           "samples_per_query": None, "target_qps": None, "latency_bound_ms": None,
           "backend": "auto", "fidelity": None, "seed": None, "power": "rapl", "idle_s": 0.5,
           "role": None}
    job = JobCommand.model_validate_json(json.dumps({"model": MODEL, "settings": old}))
    settings = job.settings
    assert settings.model_fields_set == {"scenario", "iterations", "batch", "streams", "backend",
                                         "power"}
    assert (settings.fidelity, settings.seed, settings.profile) == (32, 0, "standard")
    assert settings.power == RunPower(source="rapl", idle_s=0.5)


@pytest.mark.parametrize(("settings", "where"), [
    ({"iterations": 0}, "iterations"),
    ({"duration_s": 7200}, "duration_s"),
    ({"threads": 1000}, "threads"),
    ({"power": "Bad Name!"}, "source"),
    ({"idle_s": 120}, "idle_s"),
    ({"inputs": "/etc"}, "inputs"),  # no paths in a job
    ({"duration_s": float("nan")}, "duration_s"),
])
def test_a_job_outside_the_bounds_is_refused(settings: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError, match=where):
        RunSettings(**settings)


@pytest.mark.parametrize(("argv", "message"), [
    (["--threads", "0"], r"^--threads: Input should be greater than or equal to 1"),
    (["--idle-s", "100"], r"^--idle-s: Input should be less than or equal to 60"),
])
def test_fleet_run_names_the_flag_of_a_value_out_of_bounds(argv: list[str], message: str) -> None:
    from edgemeter.commands.fleet import run_settings_from_args
    from shared.errors import ConfigError

    args = PARSERS["fleet run"].parse_args(["--mqtt", "mqtt://h:1", "--devices", "x", "--model",
                                            "m.onnx", *argv])
    with pytest.raises(ConfigError, match=message):
        run_settings_from_args(args)
