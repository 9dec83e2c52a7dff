"""``edgemeter schema``: print the JSON Schema of the result message."""

from __future__ import annotations

import argparse
import json

from shared.schema import json_schema


def run(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("schema", help="print the JSON Schema of a result (wire schema v1)")
    parser.set_defaults(func=run)
