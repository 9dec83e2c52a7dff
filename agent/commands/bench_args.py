"""The flags of ``bench`` and ``sweep``, generated from the settings models, and how they load.

Every field of :class:`agent.config.BenchSettings` (the job's
:class:`shared.run_settings.RunSettings` and the agent's own fields) and of each backend's own
settings (``--providers``, ``--delegate``) is one flag, named, typed and explained by the field
(:mod:`shared.settings_flags`). A few flags are shortcuts that are no field of their own: the
wall plug's ``--power-topic`` and ``--power-mqtt`` and ``--rpi5-calibration`` fill a power
source's table (:mod:`agent.power.settings`).

Use: ``add_bench_flags(parser)`` when building a command, then ``settings_from_args(args)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from agent.config import BenchSettings, backend_settings_models, load_settings
from shared.settings_flags import add_settings_flags, given


def _pair(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    try:
        return float(lo), float(hi)
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected two numbers A,B, for example 0,255") from err


#: flags that fill a power source's table (agent.power.settings.FLAG_SHORTCUTS), not fields
POWER_SHORTCUTS = ("power_topic", "power_mqtt", "rpi5_calibration")


def add_bench_flags(parser: argparse.ArgumentParser, *, lists: Collection[str] = (),
                    defaults: Mapping[str, Any] | None = None,
                    skip: Collection[str] = ()) -> dict[str, Any]:
    """The model, ``--config``, and one flag per setting (``lists``/``defaults``/``skip``: see
    :func:`shared.settings_flags.add_settings_flags`). Flags default to None so that the
    environment and the config file show through. Returns the ``--help`` groups by name."""
    parser.add_argument("model", type=Path, help="model file (.onnx or .tflite)")
    parser.add_argument("--config", type=Path,
                        help="TOML config file (see `edgemeter config sample`)")
    groups: dict[str, Any] = {}
    for name in ("identity", "runtime", "scenario", "timing", "power", "output"):
        groups[name] = parser.add_argument_group(name)
    add_settings_flags(parser, BenchSettings, lists=lists, defaults=defaults, groups=groups,
                       skip=skip)
    for backend, model in backend_settings_models().items():
        add_settings_flags(parser, model, groups=groups, prefix=("backends", backend))
    power = groups["power"]
    power.add_argument("--power-topic",
                       help="wall plug MQTT topic or device id ([power.tasmota] / [power.shelly] "
                       "topic)")
    power.add_argument("--power-mqtt",
                       help="broker of the wall plug, mqtt://host:port ([power.tasmota] / "
                       "[power.shelly] broker)")
    power.add_argument("--rpi5-calibration", type=_pair, metavar="SCALE,OFFSET",
                       help="rpi5: turn PMIC rail power into input power, W = SCALE x PMIC + "
                       "OFFSET ([power.rpi5] calibration)")
    return groups


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags gave, nested as :class:`BenchSettings` takes them."""
    cli = given(args, BenchSettings)
    for backend, model in backend_settings_models().items():
        given(args, model, prefix=("backends", backend), into=cli)
    for name in POWER_SHORTCUTS:
        if getattr(args, name, None) is not None:
            cli[name] = getattr(args, name)
    return cli


def settings_from_args(args: argparse.Namespace, **fixed: Any) -> BenchSettings:
    """The run's settings: the flags given (``fixed`` over them), env, config file, defaults."""
    cli = given_settings(args)
    cli.update(fixed)
    return load_settings(cli, args.config)
