"""PostgreSQL store (psycopg 3, imported when a store is opened), for a shared fleet database.

URL: ``postgresql://user[:password]@host[:port]/dbname[?options]``; libpq options such as
``connect_timeout`` or ``options=-csearch_path%3Dschema`` pass through. Without the ``collector``
extra, opening one raises :class:`shared.errors.MissingExtraError`.

One connection in autocommit mode, shared by threads under a lock; each batch is one explicit
transaction. A connection that broke (server restart) is reopened on the next call. Migrations
take a transaction-scoped advisory lock, so collectors starting together migrate once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from collector.errors import StoreError
from collector.records import CitedBaseline, DeadLetter
from collector.stores import RESULT_COLUMNS, filter_sql, newest_first_limited, result_row, utc_now
from collector.stores.base import ResultFilter
from collector.stores.migrations import latest_version, pending
from shared.errors import MissingExtraError
from shared.schema import BenchmarkResult

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
_MIGRATION_LOCK_KEY = 0x6564_6765  # "edge": one advisory lock id for edgemeter migrations
_INSERT_RESULT = (
    f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) "
    f"VALUES ({', '.join('%s::jsonb' if c == 'result' else '%s' for c in RESULT_COLUMNS)}) "
    "ON CONFLICT (run_id) DO NOTHING"
)


def _same(value: datetime) -> datetime:
    return value


class PostgresStore:
    """The :class:`collector.stores.base.Store` on a PostgreSQL database."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as err:
            raise MissingExtraError("collector", "psycopg") from err
        self._psycopg = psycopg
        self.url = url
        self._dsn = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", url)  # postgresql+psycopg://
        self._lock = threading.RLock()
        self._conn: Any = None
        self._closed = False
        self.where = self._describe(self._dsn)
        with self._lock:
            self._connection()

    def _describe(self, url: str) -> str:
        """``user@host:port/db`` for messages, never the password."""
        try:
            info = self._psycopg.conninfo.conninfo_to_dict(url)
        except self._psycopg.ProgrammingError as err:
            raise StoreError(
                f"PostgreSQL URL is malformed ({err}); use postgresql://user@host:port/dbname"
            ) from err
        user = info.get("user") or "(default user)"
        return f"{user}@{info.get('host') or 'localhost'}:{info.get('port') or 5432}/" \
               f"{info.get('dbname') or '(default db)'}"

    # -- connection --------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._closed:
            raise StoreError(f"PostgreSQL store {self.where} is closed")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            logger.warning("PostgreSQL connection to %s was lost; reconnecting", self.where)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self._dsn:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            self._conn = self._psycopg.connect(self._dsn, **kwargs)
        except self._psycopg.Error as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {first}; check that the server "
                "is running and the URL's host, port, user, password and database name"
            ) from err
        return self._conn

    @contextlib.contextmanager
    def _session(self, action: str, *, transaction: bool = False) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            try:
                if transaction:
                    with conn.transaction():
                        yield conn
                else:
                    yield conn
            except self._psycopg.Error as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise StoreError(
                    f"PostgreSQL at {self.where}: {action} failed: {first}; check the server "
                    "log and that the user may write to the database"
                ) from err

    # -- Store -------------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._session("migration", transaction=True) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {
                row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()
            }
            if applied and max(applied) > latest_version():
                raise StoreError(
                    f"PostgreSQL database {self.where} has schema version {max(applied)}, newer "
                    f"than this edgemeter knows ({latest_version()}): upgrade edgemeter"
                )
            for migration in pending(applied):
                logger.info("PostgreSQL %s: applying migration %d (%s)", self.where,
                            migration.version, migration.description)
                for statement in migration.statements("postgresql"):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (migration.version, migration.description),
                )

    def schema_version(self) -> int:
        with self._session("reading the schema version") as conn:
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
            result_row(r, topics[i] if topics is not None else None, now, _same)
            for i, r in enumerate(results)
        ]
        with self._session(f"storing {len(rows)} results", transaction=True) as conn:
            cur = conn.cursor()
            cur.executemany(_INSERT_RESULT, rows)
            return max(cur.rowcount, 0)

    def add_dead_letter(self, topic: str, reason: str, payload: bytes) -> None:
        with self._session("storing a dead letter") as conn:
            conn.execute(
                "INSERT INTO dead_letters (received_at, topic, reason, payload) "
                "VALUES (%s, %s, %s, %s)",
                (utc_now(), topic, reason, bytes(payload)),
            )

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        where, args = filter_sql(flt, "%s")
        sql, limit_args = newest_first_limited(
            f"SELECT id, created_at, result::text AS result FROM results{where}",
            "created_at, id", flt.limit if flt else None, "%s",
        )
        with self._session("listing results") as conn:
            rows = conn.execute(sql, args + limit_args).fetchall()
        return [BenchmarkResult.model_validate_json(row[2]) for row in rows]

    def get_result(self, run_id: str) -> BenchmarkResult | None:
        with self._session("reading a result") as conn:
            row = conn.execute("SELECT result::text FROM results WHERE run_id = %s",
                               (str(run_id),)).fetchone()
        return BenchmarkResult.model_validate_json(row[0]) if row else None

    def list_dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        sql, args = newest_first_limited(
            "SELECT id, received_at, topic, reason, payload FROM dead_letters", "id", limit, "%s"
        )
        with self._session("listing dead letters") as conn:
            rows = conn.execute(sql, args).fetchall()
        return [
            DeadLetter(id=row[0], received_at=row[1], topic=row[2], reason=row[3],
                       payload=bytes(row[4]))
            for row in rows
        ]

    def add_cited_baselines(self, rows: Sequence[CitedBaseline]) -> int:
        if not rows:
            return 0
        now = utc_now()
        values = [
            (row.baseline_id, row.network, row.scenario.value, now,
             json.dumps(row.model_dump(mode="json")))
            for row in rows
        ]
        with self._session(f"storing {len(values)} cited baselines", transaction=True) as conn:
            cur = conn.cursor()
            cur.executemany(
                "INSERT INTO cited_baselines (baseline_id, network, scenario, added_at, baseline) "
                "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (baseline_id) DO NOTHING",
                values,
            )
            return max(cur.rowcount, 0)

    def list_cited_baselines(self) -> list[CitedBaseline]:
        with self._session("listing cited baselines") as conn:
            rows = conn.execute(
                "SELECT baseline::text FROM cited_baselines ORDER BY id"
            ).fetchall()
        return [CitedBaseline.model_validate_json(row[0]) for row in rows]

    def seq_gaps(self, device_id: str) -> list[tuple[int, int]]:
        """Missing ``seq`` ranges of one device, as inclusive ``(first, last)`` pairs."""
        with self._session("finding seq gaps") as conn:
            rows = conn.execute(
                "SELECT prev + 1, seq - 1 FROM ("
                " SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev FROM results"
                " WHERE device_id = %s) AS s WHERE seq - prev > 1 ORDER BY seq",
                (device_id,),
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def count_results(self) -> int:
        with self._session("counting results") as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"
