"""Short run ids: the first hex digits of a run's UUID, as the results table prints them.

``resolve_run_id(store, "3f2a9c1b")`` returns the one stored run id that starts with those digits
(dashes ignored), ``None`` when none does; several matches raise :class:`AmbiguousRunId`. The
``run_id`` column holds the UUID's canonical text, so the lookup is one ``LIKE 'prefix%'``.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from collector.errors import StoreError
from collector.http.store import ReadStore
from collector.stores.tables import results

__all__ = ["MIN_DIGITS", "AmbiguousRunId", "resolve_run_id"]

MIN_DIGITS = 6
"""Shorter prefixes are not looked up: they name too many runs to be meant as one."""
_HEX = re.compile(r"^[0-9a-f]+$")


class AmbiguousRunId(ValueError):
    """A short id that more than one stored run starts with."""


def _canonical_prefix(short: str) -> str | None:
    """The prefix as the canonical UUID text starts (dashes after 8, 12, 16, 20 digits)."""
    digits = short.lower().replace("-", "")
    if not MIN_DIGITS <= len(digits) < 32 or not _HEX.match(digits):
        return None
    out = digits[:8]
    for start, end in ((8, 12), (12, 16), (16, 20), (20, 32)):
        if len(digits) > start:
            out += "-" + digits[start:end]
    return out


def resolve_run_id(store: ReadStore, short: str) -> str | None:
    """The stored run id ``short`` is the start of (see the module docstring)."""
    prefix = _canonical_prefix(short)
    if prefix is None:
        return None
    statement = (select(results.c.run_id).distinct().where(results.c.run_id.like(f"{prefix}%"))
                 .order_by(results.c.run_id).limit(2))
    try:
        with store.engine.connect() as conn:
            found = [str(r) for r in conn.execute(statement).scalars()]
    except SQLAlchemyError as err:
        raise StoreError(f"looking up run {short} in {store.url} failed: "
                         f"{str(err).splitlines()[0]}") from err
    if len(found) > 1:
        raise AmbiguousRunId(f"several runs start with {short!r}: give more of the run id")
    return found[0] if found else None
