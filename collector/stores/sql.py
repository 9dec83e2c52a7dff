"""The one results store, on SQLAlchemy Core, for SQLite and PostgreSQL alike.

Queries are written once against :mod:`collector.stores.tables`; what differs by database (URL,
engine and pragmas, ``ON CONFLICT`` construct, migration lock, messages) comes from
:mod:`collector.stores.dialects`, and column storage from :mod:`collector.stores.columns`.

Transactions: each write (a batch of results, a dead letter, cited baselines) is one transaction;
when the call returns it has committed, so the collector may acknowledge the messages. Reads run in
a transaction of their own too (one snapshot). A batch is one ``INSERT ... ON CONFLICT (run_id)
DO NOTHING`` given every row at once (the driver's executemany: pipelined by psycopg, one prepared
statement in sqlite3; see :class:`_BulkInsert`), so a known ``run_id`` is skipped and the driver's
row count is the number of new rows. (A multi-row ``VALUES ... RETURNING`` measured half the rate
on PostgreSQL: psycopg re-parses a statement that long on every batch.)

Threads: any thread may call any method. Connections come from SQLAlchemy's pool (one per thread
at a time); SQLite serialises writers itself (``BEGIN IMMEDIATE`` with a busy timeout) while WAL
lets readers go on. An in-memory SQLite database is one connection shared under a lock. A
PostgreSQL connection the server dropped (restart, idle timeout) fails the one call that meets it;
the next call reconnects (the collector retries the batch).

Third-party errors become :class:`~collector.errors.StoreError` here, once, with one line that
says which database and what to check.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Engine, Select, Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from collector.errors import StoreError
from collector.records import CitedBaseline, DeadLetter
from collector.stores.base import ResultFilter
from collector.stores.dialects import WRITE_OPTION, Database, database_for
from collector.stores.schema import SchemaChange, upgrade
from collector.stores.tables import cited_baselines, dead_letters, results
from shared.schema import BenchmarkResult

__all__ = ["STREAM_BATCH_ROWS", "SqlStore"]

logger = logging.getLogger(__name__)

#: Rows fetched at a time when streaming results (a server-side cursor on PostgreSQL).
STREAM_BATCH_ROWS = 500


class _BulkInsert:
    """An ``INSERT ... ON CONFLICT DO NOTHING`` compiled once, run as one driver executemany.

    SQLAlchemy's own executemany builds and type-processes a parameter dictionary per row, which
    cost SQLite 15% of its ingest rate on batches of 250 results (``bench/store_ingest.py``). Here
    the statement comes from SQLAlchemy as usual (the dialect's construct, compiled for the
    dialect), the caller builds one tuple per row in :attr:`columns` order, passing values that
    need it through :meth:`processor` (the column type's own bind processing: SQLite's timestamp
    text), and the driver gets the tuples as they are (positional placeholders: ``?`` in sqlite3,
    ``%s`` as the PostgreSQL engine is configured). :meth:`run` returns the driver's row count: the
    rows inserted, known keys not counted.
    """

    def __init__(self, statement: Insert, table: Table, dialect: Dialect) -> None:
        self.table = table
        self.dialect = dialect
        self.columns = [c.key for c in table.c if c.key != "id"]
        # for_executemany: no implicit RETURNING of the new id, which PostgreSQL would compute
        # and send for every row only for the driver to drop it
        compiled = statement.compile(dialect=dialect, column_keys=self.columns,
                                     for_executemany=True)
        self.sql = str(compiled)
        self.positional = compiled.positional
        if self.positional and list(compiled.positiontup or []) != self.columns:
            raise AssertionError(f"{table.name}: placeholders not in column order: {self.sql}")

    def processor(self, column: str) -> Callable[[Any], Any]:
        """What a value of ``column`` must go through before the driver gets it."""
        process = self.table.c[column].type.dialect_impl(self.dialect).bind_processor(self.dialect)
        return process if process is not None else _as_is

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        params: list[Any] = rows if self.positional else [
            dict(zip(self.columns, row, strict=True)) for row in rows]
        result = conn.exec_driver_sql(self.sql, params,
                                      execution_options={"preserve_rowcount": True})
        return max(result.rowcount, 0)


def _as_is(value: Any) -> Any:
    return value


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SqlStore:
    """The :class:`collector.stores.base.Store` on any database :mod:`~.dialects` supports."""

    def __init__(self, url: str) -> None:
        self._db: Database = database_for(url)
        self.url = self._db.url
        self._closed = False
        dialect = self._db.engine.dialect
        self._insert_results = _BulkInsert(
            self._db.insert_skipping_known(results, ["run_id"]), results, dialect)
        self._insert_baselines = _BulkInsert(
            self._db.insert_skipping_known(cited_baselines, ["baseline_id"]), cited_baselines,
            dialect)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for tests and tools that query the tables directly."""
        return self._db.engine

    # -- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, action: str, *, write: bool) -> Iterator[Connection]:
        """A connection in a transaction, committed when the body returns, else rolled back."""
        if self._closed:
            raise StoreError(f"{self._db.name} store {self._db.where} is closed")
        with self._db.serialised():
            try:
                conn = self._db.engine.connect()
            except SQLAlchemyError as err:
                raise StoreError(self._db.connect_failed(err)) from err
            try:
                if write:
                    conn = conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
            except SQLAlchemyError as err:
                raise StoreError(self._db.action_failed(action, err)) from err
            finally:
                conn.close()

    # -- Store -------------------------------------------------------------------------------

    def migrate(self) -> SchemaChange:
        """Bring the schema to the newest revision (Alembic); a no-op once there."""
        if self._closed:
            raise StoreError(f"{self._db.name} store {self._db.where} is closed")
        return upgrade(self._db)

    def add_results(
        self, batch: Sequence[BenchmarkResult], *, topics: Sequence[str | None] | None = None,
        payloads: Sequence[bytes] | None = None,
    ) -> int:
        """Insert a batch in one transaction; returns how many run_ids were new.

        ``topics``, when given, holds the MQTT topic each result arrived on (same order);
        ``payloads`` the JSON of each as received, stored as it is (no second serialisation).
        """
        if not batch:
            return 0
        if topics is not None and len(topics) != len(batch):
            raise ValueError(f"{len(topics)} topics for {len(batch)} results")
        if payloads is not None and len(payloads) != len(batch):
            raise ValueError(f"{len(payloads)} payloads for {len(batch)} results")
        bulk = self._insert_results
        timestamp = bulk.processor("created_at")  # the same type as received_at
        received_at = timestamp(_utc_now())
        rows = [  # in tables.results' column order (bulk.columns)
            (
                str(r.run_id),
                r.device_id,
                r.fleet,
                r.role.value,
                timestamp(r.created_at),
                r.model.name,
                r.model.sha256,
                r.model.network,
                r.spec.effective.scenario.value,
                r.seq,
                received_at,
                topics[i] if topics is not None else None,
                payloads[i].decode() if payloads is not None else r.model_dump_json(),
            )
            for i, r in enumerate(batch)
        ]
        with self._transaction(f"storing {len(rows)} results", write=True) as conn:
            return bulk.run(conn, rows)

    def add_dead_letter(self, topic: str, reason: str, payload: bytes) -> None:
        with self._transaction("storing a dead letter", write=True) as conn:
            conn.execute(
                dead_letters.insert(),
                {"received_at": _utc_now(), "topic": topic, "reason": reason,
                 "payload": bytes(payload)},
            )

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        """Results, oldest first (with ``flt.limit``: the newest N, still oldest first)."""
        with self._transaction("listing results", write=False) as conn:
            documents = conn.execute(_results_query(flt)).scalars().all()
        return [BenchmarkResult.model_validate_json(doc) for doc in documents]

    def iter_results(self, flt: ResultFilter | None = None) -> Iterator[BenchmarkResult]:
        """Like :meth:`list_results`, but fetched :data:`STREAM_BATCH_ROWS` rows at a time.

        The read transaction stays open until the iterator is exhausted or closed; use it in a
        ``for`` loop (or ``contextlib.closing``) and call nothing else on an in-memory store
        meanwhile.
        """
        with self._transaction("streaming results", write=False) as conn:
            rows = conn.execution_options(yield_per=STREAM_BATCH_ROWS).execute(
                _results_query(flt)
            )
            for document in rows.scalars():
                yield BenchmarkResult.model_validate_json(document)

    def get_result(self, run_id: str) -> BenchmarkResult | None:
        with self._transaction("reading a result", write=False) as conn:
            document = conn.execute(
                select(results.c.result).where(results.c.run_id == str(run_id))
            ).scalar_one_or_none()
        return None if document is None else BenchmarkResult.model_validate_json(document)

    def list_dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (with ``limit``: the newest N, still oldest first)."""
        query = _newest_first_limited(
            [dead_letters.c.id, dead_letters.c.received_at, dead_letters.c.topic,
             dead_letters.c.reason, dead_letters.c.payload],
            [], [dead_letters.c.id], limit,
        )
        with self._transaction("listing dead letters", write=False) as conn:
            rows = conn.execute(query).all()
        return [
            DeadLetter(id=row.id, received_at=row.received_at, topic=row.topic,
                       reason=row.reason, payload=bytes(row.payload))
            for row in rows
        ]

    def add_cited_baselines(self, rows: Sequence[CitedBaseline]) -> int:
        """Store cited rows; returns how many were new (same content = same row)."""
        if not rows:
            return 0
        bulk = self._insert_baselines
        added_at = bulk.processor("added_at")(_utc_now())
        values = [  # in tables.cited_baselines' column order (bulk.columns)
            (row.baseline_id, row.network, row.scenario.value, added_at,
             json.dumps(row.model_dump(mode="json")))
            for row in rows
        ]
        with self._transaction(f"storing {len(values)} cited baselines", write=True) as conn:
            return bulk.run(conn, values)

    def list_cited_baselines(self) -> list[CitedBaseline]:
        with self._transaction("listing cited baselines", write=False) as conn:
            documents = conn.execute(
                select(cited_baselines.c.baseline).order_by(cited_baselines.c.id)
            ).scalars().all()
        return [CitedBaseline.model_validate_json(doc) for doc in documents]

    def close(self) -> None:
        """Close every pooled connection; later calls raise :class:`StoreError`."""
        self._closed = True
        self._db.engine.dispose()

    def __repr__(self) -> str:
        return f"SqlStore({self._db.name} {self._db.where})"


def _results_query(flt: ResultFilter | None) -> Select[Any]:
    where: list[ColumnElement[bool]] = []
    if flt is not None:
        if flt.model:
            where.append(
                (results.c.model_name == flt.model)
                | (results.c.network == flt.model)
                | (results.c.model_sha256 == flt.model)
            )
        for column, value in (("device_id", flt.device_id), ("role", flt.role),
                              ("fleet", flt.fleet)):
            if value:
                where.append(results.c[column] == value)
    return _newest_first_limited(
        [results.c.result], where, [results.c.created_at, results.c.id], flt.limit if flt else None
    )


def _newest_first_limited(
    columns: Sequence[Column[Any]],
    where: Sequence[ColumnElement[bool]],
    order: Sequence[Column[Any]],
    limit: int | None,
) -> Select[Any]:
    """``columns`` ordered by ``order``; with ``limit``, only the newest rows, still oldest first."""
    if limit is None:
        return select(*columns).where(*where).order_by(*order)
    keys = {c.key for c in columns}
    newest = (
        select(*columns, *[c for c in order if c.key not in keys])
        .where(*where)
        .order_by(*[c.desc() for c in order])
        .limit(max(int(limit), 0))
        .subquery()
    )
    return select(*[newest.c[c.key] for c in columns]).order_by(*[newest.c[c.key] for c in order])
