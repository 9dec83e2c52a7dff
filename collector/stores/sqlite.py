"""SQLite store (stdlib :mod:`sqlite3`), for one collector and the CLI on the same machine.

``sqlite:///relative.db`` is relative to the working directory, ``sqlite:////abs/path.db`` is
absolute, and ``sqlite:///:memory:`` is a private in-memory database (tests). The parent folder is
created. The database runs in WAL mode, so the CLI and dashboard can read while the collector
writes.

Threads: every thread gets its own connection (the collector's writer thread writes, any thread
may read; SQLite's own locking with a busy timeout serialises writers). An in-memory database has
a single connection shared under a lock, since each connection would otherwise see its own.
Transactions are explicit (``isolation_level=None`` and ``BEGIN IMMEDIATE``): one per batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from collector.errors import StoreError
from collector.records import CitedBaseline, DeadLetter
from collector.stores import (
    RESULT_COLUMNS,
    filter_sql,
    newest_first_limited,
    result_row,
    utc_now,
    utc_text,
)
from collector.stores.base import ResultFilter
from collector.stores.migrations import latest_version, pending
from shared.errors import ConfigError
from shared.schema import BenchmarkResult

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_PREFIX = "sqlite:///"
_INSERT_RESULT = (
    f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in RESULT_COLUMNS)}) ON CONFLICT (run_id) DO NOTHING"
)


def sqlite_path(url: str) -> str:
    """The file path a ``sqlite:///`` URL names (``:memory:`` stays as is)."""
    url = re.sub(r"^sqlite\+\w+:", "sqlite:", url)  # sqlite+pysqlite:///...
    if not url.startswith(_PREFIX):
        raise ConfigError(
            f"SQLite URL {url!r} must look like sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path = url[len(_PREFIX):].split("?", 1)[0]
    if not path:
        raise ConfigError(f"SQLite URL {url!r} names no file: use sqlite:///results.db")
    return path if path == ":memory:" else str(Path(path).expanduser())


class SqliteStore:
    """The :class:`collector.stores.base.Store` on one SQLite file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._memory = self.path == ":memory:"
        self._local = threading.local()
        self._lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(
                    f"cannot create the folder for SQLite database {self.path}: "
                    f"{err.strerror or err}; check the path and its permissions"
                ) from err
        with self._errors("open"):
            self._connection()

    # -- connections -------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        if self._memory:
            if not self._connections:
                self._connections.append(self._open())
            return self._connections[0]
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as err:
            raise StoreError(
                f"SQLite database {self.path}: {action} failed: {err}; check the file is a "
                "writable edgemeter database and the disk is not full"
            ) from err

    @contextlib.contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._errors(action), (self._lock if self._memory else contextlib.nullcontext()):
            yield self._connection()

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One transaction; rolled back when the body raises."""
        with self._read(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- Store -------------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._write("migration") as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            if applied and max(applied) > latest_version():
                raise StoreError(
                    f"SQLite database {self.path} has schema version {max(applied)}, newer than "
                    f"this edgemeter knows ({latest_version()}): upgrade edgemeter"
                )
            for migration in pending(applied):
                logger.info("SQLite %s: applying migration %d (%s)", self.path,
                            migration.version, migration.description)
                for statement in migration.statements("sqlite"):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, utc_text(utc_now())),
                )

    def schema_version(self) -> int:
        with self._read("reading the schema version") as conn:
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def add_results(
        self, results: Sequence[BenchmarkResult], *, topics: Sequence[str | None] | None = None
    ) -> int:
        """Insert a batch in one transaction; returns how many run_ids were new.

        ``topics``, when given, holds the MQTT topic each result arrived on (same order).
        """
        if not results:
            return 0
        now = utc_now()
        rows = [
            result_row(r, topics[i] if topics is not None else None, now, utc_text)
            for i, r in enumerate(results)
        ]
        with self._write(f"storing {len(rows)} results") as conn:
            cur = conn.executemany(_INSERT_RESULT, rows)
            return max(cur.rowcount, 0)

    def add_dead_letter(self, topic: str, reason: str, payload: bytes) -> None:
        with self._write("storing a dead letter") as conn:
            conn.execute(
                "INSERT INTO dead_letters (received_at, topic, reason, payload) "
                "VALUES (?, ?, ?, ?)",
                (utc_text(utc_now()), topic, reason, bytes(payload)),
            )

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        where, args = filter_sql(flt, "?")
        sql, limit_args = newest_first_limited(
            f"SELECT id, created_at, result FROM results{where}", "created_at, id",
            flt.limit if flt else None, "?",
        )
        with self._read("listing results") as conn:
            rows = conn.execute(sql, args + limit_args).fetchall()
        return [BenchmarkResult.model_validate_json(row[2]) for row in rows]

    def get_result(self, run_id: str) -> BenchmarkResult | None:
        with self._read("reading a result") as conn:
            row = conn.execute("SELECT result FROM results WHERE run_id = ?",
                               (str(run_id),)).fetchone()
        return BenchmarkResult.model_validate_json(row[0]) if row else None

    def list_dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        sql, args = newest_first_limited(
            "SELECT id, received_at, topic, reason, payload FROM dead_letters", "id", limit, "?"
        )
        with self._read("listing dead letters") as conn:
            rows = conn.execute(sql, args).fetchall()
        return [
            DeadLetter(id=row[0], received_at=datetime.fromisoformat(row[1]), topic=row[2],
                       reason=row[3], payload=bytes(row[4]))
            for row in rows
        ]

    def add_cited_baselines(self, rows: Sequence[CitedBaseline]) -> int:
        if not rows:
            return 0
        now = utc_text(utc_now())
        values = [
            (row.baseline_id, row.network, row.scenario.value, now,
             json.dumps(row.model_dump(mode="json")))
            for row in rows
        ]
        with self._write(f"storing {len(values)} cited baselines") as conn:
            cur = conn.executemany(
                "INSERT INTO cited_baselines (baseline_id, network, scenario, added_at, baseline) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (baseline_id) DO NOTHING",
                values,
            )
            return max(cur.rowcount, 0)

    def list_cited_baselines(self) -> list[CitedBaseline]:
        with self._read("listing cited baselines") as conn:
            rows = conn.execute("SELECT baseline FROM cited_baselines ORDER BY id").fetchall()
        return [CitedBaseline.model_validate_json(row[0]) for row in rows]

    def seq_gaps(self, device_id: str) -> list[tuple[int, int]]:
        """Missing ``seq`` ranges of one device, as inclusive ``(first, last)`` pairs."""
        with self._read("finding seq gaps") as conn:
            rows = conn.execute(
                "SELECT prev + 1, seq - 1 FROM ("
                " SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev FROM results"
                " WHERE device_id = ?) AS s WHERE seq - prev > 1 ORDER BY seq",
                (device_id,),
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def count_results(self) -> int:
        with self._read("counting results") as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"
