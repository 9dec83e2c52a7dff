"""The device selector: which devices a job goes to, as ``fleet run`` and ``POST /api/jobs`` take it.

Grammar: terms separated by commas; a device is chosen when ANY term matches it.

* ``fleet=PATTERN``: the device's fleet matches the glob ``PATTERN`` (``fleet=lab*``);
* ``board=TEXT``: ``TEXT`` occurs in the device's board name, any case (``board=pi 5``);
* anything else: the device id matches the glob (``pi-*``, ``orin-1``).

Globs are :func:`fnmatch.fnmatchcase`'s (``*``, ``?``, ``[seq]``), case-sensitive. Spaces around
terms are ignored; empty terms are skipped. Devices come back in their given order, each once.

Use::

    chosen = select(devices, "pi-*,board=orin", key=lambda d: Candidate(d.id, d.fleet, d.board))
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Candidate", "Term", "matches", "parse_selector", "select"]

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """What a selector looks at: a device's id, fleet and board name (``""`` when unknown)."""

    device_id: str
    fleet: str
    board: str = ""


@dataclass(frozen=True)
class Term:
    """One comma-separated term: ``kind`` is ``id``, ``fleet`` or ``board``."""

    kind: str
    value: str

    def matches(self, device: Candidate) -> bool:
        if self.kind == "fleet":
            return fnmatch.fnmatchcase(device.fleet, self.value)
        if self.kind == "board":
            return self.value.lower() in device.board.lower()
        return fnmatch.fnmatchcase(device.device_id, self.value)


def parse_selector(selector: str) -> list[Term]:
    """The terms of ``selector``; ``key=value`` with a key other than fleet or board is an id
    glob (device ids may hold ``=``-free text only, so it simply matches nothing)."""
    terms = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        key, eq, value = term.partition("=")
        key = key.strip()
        if eq and key in ("fleet", "board"):
            terms.append(Term(key, value.strip()))
        else:
            terms.append(Term("id", term))
    return terms


def matches(selector: str, device: Candidate) -> bool:
    """Whether any term of ``selector`` matches ``device``."""
    return any(term.matches(device) for term in parse_selector(selector))


def select(devices: Iterable[T], selector: str, key: Callable[[T], Candidate]) -> list[T]:
    """The ``devices`` (in their order) that any term of ``selector`` matches."""
    terms = parse_selector(selector)
    return [d for d in devices if any(term.matches(key(d)) for term in terms)]
