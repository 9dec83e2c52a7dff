"""The ``edgemeter`` command line: one root parser, one module per subcommand.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed namespace, returning the exit code). Collector commands live
in the ``collector`` package and check for the ``collector`` extra before importing its libraries.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edgemeter import __version__
from shared.errors import EdgemeterError

COMMAND_MODULES = (
    "agent.commands.bench",
    "agent.commands.agent",
    "edgemeter.commands.fleet",
    "edgemeter.commands.simulate",
    "agent.commands.sweep",
    "agent.commands.analyze",
    "agent.commands.power",
    "agent.commands.schema",
    "agent.commands.config",
    "collector.commands",
    "collector.compare.commands",
    "edgemeter.demo.command",
)

EXIT_ERROR = 2

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgemeter",
        description="Measure how edge boards run quantized neural networks, and collect the "
        "results of a whole fleet over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edgemeter {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2 and not args.debug:
        # amqtt (the demo broker) logs full tracebacks for conditions edgemeter reports in one line
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args) or 0)
    except EdgemeterError as err:
        if args.debug:
            raise
        print(f"edgemeter: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("edgemeter: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`edgemeter export ... | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
