"""``edgemeter power``: which power sources this machine offers, and why the others are unusable.

Each source is probed with its own settings table from the config file (``--config``, or
``EDGEMETER_CONFIG``, as for ``bench``), the environment and ``--sysfs-root``, so a wall plug
configured in ``[power.tasmota]`` is probed with its broker and topic.

It then lists what this machine can run (:mod:`agent.capabilities`): each backend with its version
and ONNX Runtime's execution providers, LiteRT delegates that load (the Edge TPU's libedgetpu) and
attached accelerators (text output only: ``--json`` stays the sources' probes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.capabilities import describe, probe
from agent.config import load_settings
from agent.power import probe_all

DESCRIPTION = (
    "Which power sources this machine offers, and why the others are unusable. Each source is "
    "probed with its own settings table from the config file (--config, or EDGEMETER_CONFIG, as "
    "for bench), the environment and --sysfs-root, so a wall plug configured in [power.tasmota] "
    "is probed with its broker and topic."
)


def run(args: argparse.Namespace) -> int:
    # --sysfs-root fills the root of every sysfs-reading source, as it does for bench
    settings = load_settings({"sysfs_root": args.sysfs_root}, args.config)
    found = probe_all(settings.power.tables)
    if args.json:
        print(json.dumps({name: {"usable": why is None, "why_not": why} for name, why in found.items()},
                         indent=2))
        return 0
    caps = probe(root=args.sysfs_root or Path("/"))
    width = max(len(name) for name in found)
    for name, why in found.items():
        print(f"{name:<{width}}  {'usable' if why is None else 'unusable: ' + why}")
    for line in describe(caps):
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("power", help="probe the power sources this machine offers",
                            description=DESCRIPTION)
    parser.add_argument("--config", type=Path,
                        help="TOML config file whose [power.NAME] tables the probes use")
    parser.add_argument("--sysfs-root", type=Path,
                        help="filesystem root for sysfs/procfs readers (default /)")
    parser.add_argument("--json", action="store_true", help="print the probe results as JSON")
    parser.set_defaults(func=run)
