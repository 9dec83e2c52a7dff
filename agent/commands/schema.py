"""``edgemeter schema``: print the JSON Schema of the result message."""

from __future__ import annotations

import argparse
import json

from shared.schema import SCHEMA_VERSION, json_schema


def run(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "schema", help=f"print the JSON Schema of a result (wire schema v{SCHEMA_VERSION})",
        description=f"Print the JSON Schema of the result message an agent "
        f"publishes, wire schema version {SCHEMA_VERSION}: every field, its unit and its limits. "
        "Validate a result file against it with any JSON Schema tool.")
    parser.set_defaults(func=run)
