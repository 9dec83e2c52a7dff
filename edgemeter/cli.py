"""The ``edgemeter`` command line: one root parser, one module per subcommand.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed namespace, returning the exit code). Collector commands live
in the ``collector`` package and check for the ``collector`` extra before importing its libraries.

``-v``/``-q`` work before or after the subcommand (``edgemeter bench -q MODEL``). A usage mistake
(``--threads abc``) is one line on stderr and exit code 2, like every other error; Ctrl-C is 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from edgemeter import __version__
from shared.errors import EdgemeterError

#: Every top-level command: its module (which exposes ``register(subparsers)``) and its one-line
#: help. Only the module of the command being run is imported, so ``edgemeter --help`` and every
#: command start without loading what the others need (numpy, pydantic, runtimes, drivers).
#: ``tests/test_registries.py`` checks this table against what each module registers.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("agent.commands.bench", "benchmark one model"),
    "sweep": ("agent.commands.sweep", "throughput-latency table over batch and streams"),
    "analyze": ("agent.commands.analyze",
                "count MACs, FLOPs, params and weight bytes of a model (ONNX or TFLite)"),
    "power": ("agent.commands.power", "probe the power sources this machine offers"),
    "sustained": ("agent.commands.sustained",
                  "burst vs sustained throughput: run a model until the board settles"),
    "schema": ("agent.commands.schema", "print the JSON Schema of a result (wire schema v2)"),
    "config": ("agent.commands.config", "agent configuration helpers"),
    "agent": ("agent.commands.agent",
              "the fleet agent daemon (presence, telemetry, remote jobs, delivery)"),
    "fleet": ("edgemeter.commands.fleet", "see and drive the fleet through the broker"),
    "simulate": ("edgemeter.commands.simulate", "a fleet of virtual devices publishing to a broker"),
    "collector": ("collector.commands", "run the collector service"),
    "results": ("collector.commands", "list stored results (or dead letters)"),
    "export": ("collector.commands", "export stored results as CSV, Parquet or JSON Lines"),
    "compare": ("collector.compare.commands",
                "compare edge runs with datacenter/HPC runs and cited results"),
    "baselines": ("collector.compare.commands", "import and list comparison baselines"),
    "models": ("collector.commands_fleet", "keep model files for remote jobs in the collector's database"),
    "dead-letters": ("collector.commands_fleet", "inspect, replay and purge rejected messages"),
    "demo": ("edgemeter.demo.command", "broker + collector + benchmarks on this machine"),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

logger = logging.getLogger(__name__)


class UsageError(Exception):
    """A command line argparse refused; :func:`main` prints it as one line."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: error: {message} (see {prog} --help)")


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are one line (argparse prints the whole usage)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def _add_global_flags(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand (and theirs) ``-v`` and ``-q``, leaving the root's values alone."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in {id(p): p for p in action.choices.values()}.values():
            if "-v" not in child._option_string_actions:
                child.add_argument("-v", "--verbose", action="count", dest="sub_verbose",
                                   default=argparse.SUPPRESS, help="more log output")
            if "-q" not in child._option_string_actions:
                child.add_argument("-q", "--quiet", action="store_true",
                                   default=argparse.SUPPRESS, help="less output: errors only")
            _add_global_flags(child)


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The root parser; ``command`` names the one subcommand to load fully (``*``: all of them)."""
    parser = _Parser(
        prog="edgemeter",
        description="Measure how edge boards run quantized neural networks, and collect the "
        "results of a whole fleet over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edgemeter {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="less output: errors only, and no native runtimes' chatter")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = COMMANDS[command][0] if command in COMMANDS else None
    modules = COMMAND_MODULES if command == "*" else (wanted,) if wanted else ()
    for module in modules:
        importlib.import_module(module).register(sub)
    for name, (_module, help_text) in COMMANDS.items():
        if name not in sub.choices:  # listed in --help; parsed only when it is the one run
            sub.add_parser(name, help=help_text)
    _add_global_flags(parser)
    return parser


def _deepest_parser(parser: argparse.ArgumentParser,
                    argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)parser the command line reaches: ``edgemeter fleet run ...`` -> ``fleet run``."""
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown argument is reported by the subcommand it was given to, so
    every hint names that subcommand's ``--help``."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        _deepest_parser(parser, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first argument that is not a flag."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(argv))
    try:
        args = _parse(parser, argv)
    except UsageError as err:
        print(err, file=sys.stderr)
        return EXIT_ERROR
    verbose = args.verbose + getattr(args, "sub_verbose", 0)
    level = logging.ERROR if args.quiet and not verbose else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2 and not args.debug:
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
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our output went away (`edgemeter export ... | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
