"""``edgemeter config sample``: print an annotated agent config that parses back."""

from __future__ import annotations

import argparse

from agent.config import sample_config


def run(args: argparse.Namespace) -> int:
    print(sample_config(), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "config", help="agent configuration helpers",
        description="Helpers for the benchmark configuration file (TOML, given to bench and sweep "
        "with --config or EDGEMETER_CONFIG). `edgemeter config sample` prints every setting with "
        "its default and meaning, in a file that parses back.")
    inner = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    sample = inner.add_parser("sample", help="print an annotated sample config (TOML)")
    sample.set_defaults(func=run)
