"""Flags shared by ``bench`` and ``sweep``: each maps to a :class:`BenchSettings` field."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from agent.config import BenchSettings, load_settings
from agent.power.settings import FLAG_SHORTCUTS
from shared.errors import ConfigError
from shared.schema import Role, Scenario

PROFILE_HELP = (
    "quick (>=1 s, 100 queries: a smoke test), standard (the default: >=10 s, extended up to 3x "
    "while throughput is unsettled, then called unstable, a warning), mlperf (LoadGen's minimums: "
    ">=600 s and its query counts). Only mlperf can be MLPerf-valid"
)


def _pair(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    try:
        return float(lo), float(hi)
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected two numbers A,B, for example 0,255") from err


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags default to None so that env and config-file values show through."""
    parser.add_argument("model", type=Path, help="model file (.onnx or .tflite)")
    parser.add_argument("--config", type=Path, help="TOML config file (see `edgemeter config sample`)")
    ident = parser.add_argument_group("identity")
    ident.add_argument("--device-id", help="device id (default: hostname)")
    ident.add_argument("--fleet", help="fleet name (default: default)")
    ident.add_argument("--role", choices=[r.value for r in Role], help="edge (default), datacenter or hpc")
    ident.add_argument("--hardware", help="hardware catalogue key (default: detected)")
    ident.add_argument("--catalogue", type=Path, help="extra catalogue TOML merged over the shipped one")
    ident.add_argument("--network", help="network name for cross-format matching (default: from file name)")
    rt = parser.add_argument_group("runtime")
    rt.add_argument("--backend", choices=["auto", "onnxruntime", "litert"], help="default: auto, by file")
    rt.add_argument("--providers", help="ONNX Runtime execution providers, comma-separated")
    rt.add_argument("--delegate", help="LiteRT delegate, e.g. edgetpu (loads libedgetpu.so.1)")
    rt.add_argument("--threads", type=int, help="runtime threads (default: all cores)")
    rt.add_argument("--inputs", type=Path, help=".npz of inputs or a folder of images")
    rt.add_argument("--input-range", type=_pair, help="real range of float inputs, LO,HI (default 0,1)")
    rt.add_argument("--seed", type=int, help="seed for inputs and arrivals (default 0)")
    pw = parser.add_argument_group("power")
    pw.add_argument(
        "--power",
        help="auto (default), none, or a source: rapl, jetson, rpi5, nvml, tasmota, shelly, estimate",
    )
    pw.add_argument("--power-hz", type=float, help="power sampling rate (default 20; [power] hz)")
    pw.add_argument("--power-topic",
                    help="wall plug MQTT topic or device id ([power.tasmota] / [power.shelly] topic)")
    pw.add_argument("--power-mqtt",
                    help="broker of the wall plug, mqtt://host:port ([power.tasmota] / [power.shelly] broker)")
    pw.add_argument("--idle-s", type=float,
                    help="idle power baseline before the run (default 3; [power] idle_s)")
    pw.add_argument("--rpi5-calibration", type=_pair, metavar="SCALE,OFFSET",
                    help="rpi5: turn PMIC rail power into input power, W = SCALE x PMIC + OFFSET "
                    "([power.rpi5] calibration)")
    pw.add_argument("--sysfs-root", type=Path,
                    help="filesystem root for sysfs/procfs readers, power sources' too (default /)")


def add_timing_flags(parser: argparse.ArgumentParser) -> None:
    t = parser.add_argument_group("timing")
    t.add_argument("--profile", choices=["quick", "standard", "mlperf"], help=PROFILE_HELP)
    t.add_argument("--iterations", type=int, help="timed queries (overrides the profile)")
    t.add_argument("--duration-s", type=float, help="timed seconds (overrides the profile)")
    t.add_argument("--warmup", type=int, help="warm-up iterations (default: until stable)")
    t.add_argument("--fidelity", type=int, help="fidelity inputs (default 32, 0 = off)")
    t.add_argument("--full-fidelity", action="store_true", default=None,
                   help="send every fidelity output value, unrounded (default: a digest: values of "
                   "small outputs, top-5 and a sketch of large ones, sha256 of all)")


def check_output_path(path: str | None, flag: str) -> None:
    """Fail before any work when an output file could not be written (missing folder, no rights)."""
    if not path:
        return
    target = Path(path)
    folder = target.resolve().parent
    if target.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{flag} {path}: the folder {folder} is not writable")


def settings_from_args(args: argparse.Namespace, **fixed: Any) -> BenchSettings:
    # the power flags are shortcuts into [power] and its source tables (agent.power.settings)
    fields = set(BenchSettings.model_fields) | set(FLAG_SHORTCUTS)
    cli = {k: v for k, v in vars(args).items() if k in fields}
    cli.update(fixed)
    return load_settings(cli, args.config)


SCENARIOS = [s.value for s in Scenario]
