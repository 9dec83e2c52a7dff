"""Every ``--help`` of the ``edgemeter`` command line reads as plain text: no Sphinx markup."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from edgemeter.cli import build_parser

# :class:`x`, :func:`x`, :mod:`x`, :data:`x`, :meth:`x`, :attr:`x`, ``literal``, a trailing
# ``::`` (a literal block) and ~ references: reStructuredText that argparse prints verbatim
SPHINX = re.compile(r":(class|func|mod|data|meth|attr|exc|obj|ref|doc):`|``|::\s*$|`~", re.M)


def parsers(parser: argparse.ArgumentParser, path: str = "edgemeter"
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


ALL = list(parsers(build_parser("*")))


def test_the_walk_reaches_every_command_and_their_actions() -> None:
    names = {path for path, _ in ALL}
    assert {"edgemeter bench", "edgemeter sweep", "edgemeter fleet run",
            "edgemeter collector serve", "edgemeter agent run"} <= names


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[path for path, _ in ALL])
def test_help_shows_no_sphinx_markup(path: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    found = [line.strip() for line in text.splitlines() if SPHINX.search(line)]
    assert not found, f"`{path} --help` shows Sphinx markup: {found}"


def test_the_markup_check_catches_markup() -> None:
    parser = argparse.ArgumentParser(description="Send a :class:`JobCommand` with ``--wait``.")
    assert SPHINX.search(parser.format_help())
