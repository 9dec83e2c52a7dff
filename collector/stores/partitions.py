"""Monthly partitions of ``results`` on PostgreSQL, and pruning old results on either database.

The telemetry history tables (``telemetry``, ``telemetry_1m``; :mod:`collector.stores.history`)
are partitioned the same way under their own names (``telemetry_yYYYYmMM``, ``telemetry_default``):
every helper here takes the parent ``table`` (``results`` unless given).

On PostgreSQL ``results`` is partitioned by ``RANGE (created_at)`` (revision 0003): one partition
per calendar month in UTC, named ``results_yYYYYmMM``, plus ``results_default``, which takes any
row no month partition does, so an insert is never refused. The store makes partitions ahead
(:meth:`Partitions.ahead`: this month and the next two, each time it migrates) and for any month a
batch of results falls in that has none yet (:meth:`Partitions.ensure`, before the batch's
transaction). Making one takes an advisory lock, so collectors sharing a database make each once;
rows of that month already in the default partition move into the new one. If making a partition
fails, the rows go to the default partition and a warning says why (once): ingest never waits on it.

Pruning (:func:`prune`): PostgreSQL drops the whole month partitions that end on or before the
cutoff (rows of the month holding the cutoff stay until that month is wholly older) and deletes
older rows from the default partition; SQLite deletes the rows older than the cutoff. The
run_ids of pruned results go with them (PostgreSQL: from ``result_ids`` too), so the same run_id
could be stored again. A ``series`` row whose newest result went goes too (all its results did).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, TextClause, bindparam, text

from collector.stores.columns import UtcTimestamp

__all__ = ["MONTHS_AHEAD", "Month", "Partitions", "PruneOutcome", "month_bounds", "prune"]

logger = logging.getLogger(__name__)

Month = tuple[int, int]
"""(year, month) in UTC"""

#: Months made ahead of the current one whenever the store migrates.
MONTHS_AHEAD = 2
#: Advisory lock held while partitions are made or dropped ("edgf"); the migration lock is "edge".
PARTITION_LOCK_KEY = 0x6564_6766
DEFAULT_PARTITION = "results_default"
_NAME = re.compile(r"^(\w+)_y(\d{4})m(\d{2})$")


def partition_name(month: Month, table: str = "results") -> str:
    return f"{table}_y{month[0]:04d}m{month[1]:02d}"


def month_bounds(month: Month) -> tuple[datetime, datetime]:
    """The first instant of the month and of the next, in UTC."""
    year, number = month
    start = datetime(year, number, 1, tzinfo=timezone.utc)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def months_from(first: Month, count: int) -> list[Month]:
    year, number = first
    out = []
    for _ in range(count):
        out.append((year, number))
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return out


def existing_months(conn: Connection, table: str = "results") -> set[Month]:
    """The month partitions ``table`` has now."""
    names = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:parent AS regclass)"), {"parent": table}).scalars()
    return {(int(m.group(2)), int(m.group(3))) for m in map(_NAME.match, names)
            if m and m.group(1) == table}


#: The column each partitioned table is partitioned by.
PARTITION_KEYS = {"results": "created_at", "telemetry": "sent_at", "telemetry_1m": "minute"}


def _create(conn: Connection, month: Month, table: str = "results") -> None:
    """Make one month's partition, moving that month's rows out of the default partition."""
    start, end = month_bounds(month)
    bounds = {"start": start, "end": end}
    key = PARTITION_KEYS[table]
    default = f"{table}_default"
    in_default = conn.execute(text(
        f"SELECT EXISTS (SELECT 1 FROM {default} "
        f"WHERE {key} >= :start AND {key} < :end)"), bounds).scalar()
    if in_default:
        conn.execute(text(f"CREATE TEMP TABLE edgemeter_moving (LIKE {table}) ON COMMIT DROP"))
        conn.execute(text(
            f"WITH moved AS (DELETE FROM {default} WHERE {key} >= :start "
            f"AND {key} < :end RETURNING *) INSERT INTO edgemeter_moving SELECT * FROM moved"),
            bounds)
    # DDL takes no parameters; the bounds are made here from integers
    conn.execute(text(
        f"CREATE TABLE {partition_name(month, table)} PARTITION OF {table} FOR VALUES FROM "
        f"('{start.isoformat()}') TO ('{end.isoformat()}')"))
    if in_default:
        conn.execute(text(f"INSERT INTO {table} OVERRIDING SYSTEM VALUE "
                          "SELECT * FROM edgemeter_moving"))
        conn.execute(text("DROP TABLE edgemeter_moving"))
    logger.info("made %s partition %s", table, partition_name(month, table))


class Partitions:
    """Which month partitions exist (cached) and making the missing ones; a no-op unless
    ``enabled`` (PostgreSQL)."""

    def __init__(self, enabled: bool, clock: Callable[[], datetime],
                 table: str = "results") -> None:
        self.enabled = enabled
        self.table = table
        self._clock = clock
        self._known: set[Month] | None = None
        self._lock = threading.Lock()
        self._warned = False

    def missing(self, months: Iterable[Month]) -> bool:
        """True when some of ``months`` may lack a partition (cheap: no query)."""
        return self.enabled and (self._known is None or not set(months) <= self._known)

    def ahead(self) -> list[Month]:
        now = self._clock().astimezone(timezone.utc)
        return months_from((now.year, now.month), MONTHS_AHEAD + 1)

    def make(self, conn: Connection, months: Iterable[Month]) -> list[Month]:
        """In ``conn``'s transaction, make the partitions of ``months`` that do not exist yet;
        returns the ones made."""
        wanted = set(months)
        with self._lock:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
            known = existing_months(conn, self.table)
            made = sorted(wanted - known)
            for month in made:
                _create(conn, month, self.table)
            self._known = known | wanted
        return made

    def failed(self, err: Exception) -> None:
        """Making partitions failed: say so once; the rows go to the default partition."""
        self._known = None
        if not self._warned:
            self._warned = True
            logger.warning("cannot make %s partitions (%s): rows go to the default "
                           "partition until this is fixed", self.table, err)

    def forget(self) -> None:
        self._known = None


@dataclass(frozen=True)
class PruneOutcome:
    """What :func:`prune` removed."""

    cutoff: datetime
    results_deleted: int
    partitions_dropped: tuple[str, ...] = ()

    def __str__(self) -> str:
        dropped = f" ({len(self.partitions_dropped)} month partitions dropped: " \
            f"{', '.join(self.partitions_dropped)})" if self.partitions_dropped else ""
        return (f"pruned {self.results_deleted} results created before "
                f"{self.cutoff.isoformat(timespec='seconds')}{dropped}")


def prune(conn: Connection, cutoff: datetime, *, partitioned: bool) -> PruneOutcome:
    """Remove results created before ``cutoff`` (see the module docstring for PostgreSQL's
    whole-month rule), with their ``result_ids`` rows, in ``conn``'s transaction."""
    bounds = {"cutoff": cutoff}
    if not partitioned:  # SQLite: run_ids are unique in results itself
        deleted = conn.execute(_at_cutoff("DELETE FROM results WHERE created_at < :cutoff"),
                               bounds)
        _forget_pruned_series(conn, cutoff)
        return PruneOutcome(cutoff, max(deleted.rowcount, 0))
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
    dropped: list[str] = []
    total = 0
    for month in sorted(existing_months(conn)):
        start, end = month_bounds(month)
        if end > cutoff:
            continue
        name = partition_name(month)
        total += int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar() or 0)
        conn.execute(text("DELETE FROM result_ids WHERE created_at >= :start AND created_at < :end"),
                     {"start": start, "end": end})
        conn.execute(text(f"DROP TABLE {name}"))
        dropped.append(name)
    gone = conn.execute(text(
        f"WITH gone AS (DELETE FROM {DEFAULT_PARTITION} WHERE created_at < :cutoff "
        "RETURNING run_id) DELETE FROM result_ids WHERE run_id IN (SELECT run_id FROM gone)"),
        bounds)
    total += max(gone.rowcount, 0)
    _forget_pruned_series(conn, cutoff)
    return PruneOutcome(cutoff, total, tuple(dropped))


def _at_cutoff(sql: str) -> TextClause:
    """``sql`` with ``:cutoff`` bound as the tables store time (SQLite: fixed-width UTC text)."""
    return text(sql).bindparams(bindparam("cutoff", type_=UtcTimestamp()))


def _forget_pruned_series(conn: Connection, cutoff: datetime) -> None:
    """Delete the ``series`` rows whose newest result is no longer stored."""
    conn.execute(_at_cutoff(
        "DELETE FROM series WHERE latest_created_at < :cutoff AND NOT EXISTS "
        "(SELECT 1 FROM results WHERE results.run_id = series.latest_run_id)"), {"cutoff": cutoff})
