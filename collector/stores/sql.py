"""The one results store, on SQLAlchemy Core, for SQLite and PostgreSQL alike.

Queries are written once against :mod:`collector.stores.tables`; what differs by database (URL,
engine and pragmas, ``ON CONFLICT`` construct, migration lock, messages) comes from
:mod:`collector.stores.dialects`, and column storage from :mod:`collector.stores.columns`.

Transactions: each write (a batch of results, a dead letter, cited baselines) is one transaction;
when the call returns it has committed, so the collector may acknowledge the messages. Reads run in
a transaction of their own too (one snapshot). A batch is one ``INSERT ... ON CONFLICT (run_id)
DO NOTHING`` given every row at once (the driver's executemany: pipelined by psycopg, one prepared
statement in sqlite3; see :class:`_BulkInsert`), so a known ``run_id`` is skipped and the driver's
row count is the number of new rows (not a multi-row ``VALUES ... RETURNING``, which psycopg
re-parses on every batch). The same transaction
upserts each device's newest figures (``devices``) and each series' newest result (``series``,
what a compare reads instead of ranking the results), one statement each.

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
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Row,
    Select,
    Subquery,
    Table,
    case,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement

from collector.errors import StoreError
from collector.records import (
    CitedBaseline,
    DeadLetter,
    DeviceRecord,
    JobRecord,
    ModelRecord,
    SeqGap,
)
from collector.stores.base import ResultFilter
from collector.stores.dialects import WRITE_OPTION, Database, database_for
from collector.stores.history import HistoryMixin
from collector.stores.partitions import Month, Partitions, PruneOutcome, prune
from collector.stores.schema import SchemaChange, upgrade
from collector.stores.tables import (
    cited_baselines,
    dead_letters,
    devices,
    jobs,
    models,
    result_ids,
    results,
    series,
)
from shared.messages import AgentManifest, JobAck, JobCommand, Status, Telemetry
from shared.presence import status_wins
from shared.schema import BenchmarkResult

__all__ = ["DEAD_LETTER_MAX_BYTES", "MODEL_CHUNK_BYTES", "STREAM_BATCH_ROWS", "SqlStore"]

#: A dead letter keeps at most this much of its payload (with the full size and sha256).
DEAD_LETTER_MAX_BYTES = 64 * 1024
#: ``device_id`` of a dead letter whose topic named no device (never NULL: NULLs never conflict,
#: so such letters would not be de-duplicated).
NO_DEVICE = ""
#: The columns ``add_results`` keeps about each device's newest result.
_LATEST = ("latest_run_id", "latest_created_at", "latest_p50_ms", "latest_power_w", "latest_model")
#: The columns of the row ``add_results`` upserts per device, in order.
_LATEST_ROW = ("device_id", "fleet", "status", "first_seen", "last_seen", *_LATEST)
#: The key of a series, and the columns of the row ``add_results`` upserts per series, in order.
_SERIES_KEY = ("device_id", "model_sha256", "scenario")
_SERIES_ROW = (*_SERIES_KEY, "fleet", "role", "model_name", "network", "hardware_key",
               "latest_run_id", "latest_created_at")
#: Run ids fetched per query when reading chosen documents (bound parameters stay few).
_FETCH_CHUNK = 500

logger = logging.getLogger(__name__)

_Doc = TypeVar("_Doc", bound=BaseModel)

#: Bytes of a model read at a time when it is downloaded.
MODEL_CHUNK_BYTES = 1 << 18
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

    def __init__(self, statement: Insert, table: Table, dialect: Dialect,
                 columns: Sequence[str] | None = None) -> None:
        """``columns``: the ones each row gives, in order (default: every column but ``id``)."""
        self.table = table
        self.dialect = dialect
        self.columns = list(columns) if columns is not None else \
            [c.key for c in table.c if c.key != "id"]
        # for_executemany: no implicit RETURNING of the new id, which PostgreSQL would compute
        # and send for every row only for the driver to drop it
        compiled = statement.compile(dialect=dialect, column_keys=self.columns,
                                     for_executemany=True)
        self.sql = str(compiled)
        self.positional = compiled.positional
        names = list(compiled.positiontup or [])
        if self.positional and not set(names) <= set(self.columns):
            raise AssertionError(f"{table.name}: placeholders other than its columns: {self.sql}")
        #: where each placeholder's value sits in a row, when not simply in column order (a
        #: statement that names a column twice, or a subset: see ``Database.results_inserts``)
        self.order: list[int] | None = None if not self.positional or names == self.columns \
            else [self.columns.index(name) for name in names]

    def processor(self, column: str) -> Callable[[Any], Any]:
        """What a value of ``column`` must go through before the driver gets it."""
        process = self.table.c[column].type.dialect_impl(self.dialect).bind_processor(self.dialect)
        return process if process is not None else _as_is

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        order = self.order
        params: list[Any] = (
            [dict(zip(self.columns, row, strict=True)) for row in rows] if not self.positional
            else rows if order is None
            else [tuple([row[i] for i in order]) for row in rows]
        )
        result = conn.exec_driver_sql(self.sql, params,
                                      execution_options={"preserve_rowcount": True})
        return max(result.rowcount, 0)


def _as_is(value: Any) -> Any:
    return value


def _read_only_session(err: SQLAlchemyError) -> bool:
    """The database refused a write as read-only: PostgreSQL SQLSTATE 25006, SQLITE_READONLY."""
    orig = getattr(err, "orig", None)
    return getattr(orig, "sqlstate", None) == "25006" or \
        str(getattr(orig, "sqlite_errorname", "")).startswith("SQLITE_READONLY")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SqlStore(HistoryMixin):
    """The :class:`collector.stores.base.Store` on any database :mod:`~.dialects` supports
    (telemetry history, monitor windows and alerts: :mod:`~.history`)."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = _utc_now) -> None:
        """``clock`` gives the time of receipt for rows that need one (results, dead letters,
        models); tests pass a fake one."""
        self._clock = clock
        self._db: Database = database_for(url)
        self.url = self._db.url
        self._closed = False
        self._partitions = Partitions(self._db.partitioned, clock)
        #: (model name, device_id) -> (document text, its parse), for :meth:`list_devices`
        self._documents: dict[tuple[str, str], tuple[str, BaseModel]] = {}
        dialect = self._db.engine.dialect
        #: the statements that store new results, in order; the first one's row count is the
        #: number of new results (see ``Database.results_inserts``)
        self._insert_results = [_BulkInsert(statement, results, dialect)
                                for statement in self._db.results_inserts(results, result_ids)]
        self._insert_baselines = _BulkInsert(
            self._db.insert_skipping_known(cited_baselines, ["baseline_id"]), cited_baselines,
            dialect)
        self._note_latest_upsert = _BulkInsert(self._latest_upsert(), devices, dialect,
                                               _LATEST_ROW)
        self._note_series_upsert = _BulkInsert(self._series_upsert(), series, dialect,
                                               _SERIES_ROW)

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
                if write and _read_only_session(err):
                    # a session opened read-only stays so after the database is writable again
                    # (default_transaction_read_only, a file made read-only): the next try opens
                    # a new one
                    conn.invalidate()
                raise StoreError(self._db.action_failed(action, err)) from err
            finally:
                conn.close()

    # -- Store -------------------------------------------------------------------------------

    def migrate(self) -> SchemaChange:
        """Bring the schema to the newest revision (Alembic); a no-op once there."""
        if self._closed:
            raise StoreError(f"{self._db.name} store {self._db.where} is closed")
        change = upgrade(self._db)
        self._partitions.forget()
        self._make_partitions(self._partitions.ahead())
        self._history_ahead()
        return change

    def _make_partitions(self, months: set[Month] | list[Month]) -> None:
        """Make the month partitions ``months`` need (PostgreSQL; once per month and process).
        A failure is reported once and ingest goes on: the default partition takes the rows."""
        if not self._partitions.missing(months):
            return
        try:
            with self._transaction("making results partitions", write=True) as conn:
                self._partitions.make(conn, months)
        except StoreError as err:
            self._partitions.failed(err)

    def prune(self, *, older_than_days: float) -> PruneOutcome:
        """Remove results created more than ``older_than_days`` ago (PostgreSQL: whole month
        partitions; see :mod:`collector.stores.partitions`)."""
        if older_than_days < 0:
            raise ValueError("older_than_days must not be negative")
        cutoff = self._clock() - timedelta(days=older_than_days)
        with self._transaction("pruning results", write=True) as conn:
            outcome = prune(conn, cutoff, partitioned=self._db.partitioned)
        self._partitions.forget()
        return outcome

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
        bulk = self._insert_results[0]
        timestamp = bulk.processor("created_at")  # the same type as received_at
        now = self._clock()
        received_at = timestamp(now)
        documents = [payloads[i].decode() if payloads is not None else r.model_dump_json()
                     for i, r in enumerate(batch)]
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
                documents[i],
            )
            for i, r in enumerate(batch)
        ]
        self._make_partitions({_month_of(r.created_at) for r in batch})
        with self._transaction(f"storing {len(rows)} results", write=True) as conn:
            fresh, conflicts = self._without_duplicates(conn, batch, documents,
                                                        list(range(len(batch))))
            insert = [rows[i] for i in fresh]
            if self._db.concurrent_writers:
                # run_id order: two collectors storing overlapping batches (redeliveries) take
                # the run_ids' locks in the same order and never deadlock; within one batch,
                # results with the very same created_at then tie-break by run_id, not arrival
                insert.sort(key=_run_id_of)
            added = bulk.run(conn, insert) if insert else 0
            for then in self._insert_results[1:]:
                if insert:
                    then.run(conn, insert)
            if added < len(fresh):  # another collector stored some of them meanwhile
                fresh, raced = self._without_duplicates(conn, batch, documents, fresh,
                                                        racing=True)
                conflicts += raced
            if fresh:
                kept = [batch[i] for i in fresh]
                self._note_latest(conn, kept, now)
                # each series' newest result of the batch; the statement keeps the newer of it
                # and the one known. In key order: concurrent batches lock the same rows in the
                # same order (and after the devices rows, as every batch does), so collectors
                # never deadlock here
                self._note_series_upsert.run(conn, _series_rows(kept, [rows[i] for i in fresh]))
            self._dead_letter_conflicts(conn, conflicts, batch, documents, topics, now)
            return added

    def _without_duplicates(self, conn: Connection, batch: Sequence[BenchmarkResult],
                            documents: Sequence[str], candidates: list[int], *,
                            racing: bool = False) -> tuple[list[int], list[int]]:
        """``(fresh, conflicts)``: the indices of ``candidates`` whose run_id is neither stored
        nor earlier in the batch, and those of duplicates whose content differs from the first
        (stored or earlier in the batch), for :meth:`_dead_letter_conflicts`. An identical one
        (a redelivery, a re-sent result whose only change is ``replayed``) is dropped silently. ``racing``: the
        candidates were just inserted and some were stored by another writer meanwhile; those
        with our content stay (their devices and series rows get the same values again).
        """
        conflicts: list[int] = []
        stored = self._stored_documents(conn, [str(batch[i].run_id) for i in candidates])
        first_in_batch: dict[str, int] = {}
        fresh: list[int] = []
        for i in candidates:
            run_id = str(batch[i].run_id)
            known = stored.get(run_id)
            if racing:
                if known is None or _same_content(known, documents[i], batch[i]):
                    fresh.append(i)
                else:
                    conflicts.append(i)
                continue
            if known is None and run_id in first_in_batch:
                first = first_in_batch[run_id]
                known = documents[first]
            if known is None:
                first_in_batch[run_id] = i
                fresh.append(i)
            elif not _same_content(known, documents[i], batch[i]):
                conflicts.append(i)
        return fresh, conflicts

    def _stored_documents(self, conn: Connection, run_ids: Sequence[str]) -> dict[str, str]:
        """run_id -> stored document, for those of ``run_ids`` already stored."""
        found: dict[str, str] = {}
        unique = sorted(set(run_ids))
        for start in range(0, len(unique), _FETCH_CHUNK):
            chunk = unique[start:start + _FETCH_CHUNK]
            for run_id, document in conn.execute(
                select(results.c.run_id, results.c.result).where(results.c.run_id.in_(chunk))
            ):
                found[run_id] = document
        return found

    def _dead_letter_conflicts(self, conn: Connection, conflicts: Sequence[int],
                               batch: Sequence[BenchmarkResult],
                               documents: Sequence[str], topics: Sequence[str | None] | None,
                               now: datetime) -> None:
        """Keep each conflicting duplicate found by :meth:`_without_duplicates` as a dead letter:
        the first result with that run_id stays, this one is refused with a reason."""
        for i in conflicts:
            result = batch[i]
            run_id = str(result.run_id)
            logger.warning("result %s from %s/%s differs from the stored result with that run_id: "
                           "kept the first, dead-lettered this one", run_id, result.fleet,
                           result.device_id)
            topic = (topics[i] if topics is not None else None) or \
                f"edgemeter/v1/{result.fleet}/{result.device_id}/result"
            conn.execute(self._dead_letter_statement(retained=False), _dead_letter_row(
                topic, f"conflicting duplicate of run_id {run_id} (the first one is kept)",
                documents[i].encode(), result.device_id, now))

    def _note_latest(self, conn: Connection, batch: Sequence[BenchmarkResult],
                     now: datetime) -> None:
        """Each device's newest result of the batch becomes its ``latest_*`` if it is newer than
        the one known (ties: the later received wins, as in :meth:`list_results`); a device seen
        first through a result gets a row (status ``unknown``). One statement, a row per device,
        so the fleet page never scans the results."""
        newest: dict[str, BenchmarkResult] = {}
        for r in batch:
            known = newest.get(r.device_id)
            if known is None or r.created_at >= known.created_at:
                newest[r.device_id] = r
        upsert = self._note_latest_upsert
        timestamp = upsert.processor("latest_created_at")  # the same type as first/last_seen
        seen = timestamp(now)
        upsert.run(conn, [  # in _LATEST_ROW order
            (r.device_id, r.fleet, "unknown", seen, seen, str(r.run_id), timestamp(r.created_at),
             r.latency_ms.p50, r.energy.avg_power_w if r.energy is not None else None,
             r.model.name)
            # in device_id order: concurrent batches lock the same rows in the same order, so
            # two collectors sharing the database never deadlock here
            for _, r in sorted(newest.items())
        ])

    def _latest_upsert(self) -> Insert:
        """The statement of :meth:`_note_latest`, built and compiled once per store (building
        and compiling it per batch was a fixed cost of every ``add_results``)."""
        insert = self._db.insert(devices)
        newer = or_(devices.c.latest_created_at.is_(None),
                    insert.excluded.latest_created_at >= devices.c.latest_created_at)
        return insert.on_conflict_do_update(
            index_elements=["device_id"],
            set_={name: case((newer, insert.excluded[name]), else_=devices.c[name])
                  for name in _LATEST},
        )

    def _series_upsert(self) -> Insert:
        """The upsert that keeps ``series``: a row wins if it is newer than the one known (by
        ``created_at``, then run_id: the same rule whatever the order of arrival, and a re-sent
        run changes nothing), so a compare never ranks the results. Built and compiled once per
        store; one executemany per batch, a row per series (:func:`_series_rows`)."""
        insert = self._db.insert(series)
        return insert.on_conflict_do_update(
            index_elements=list(_SERIES_KEY),
            set_={name: insert.excluded[name] for name in _SERIES_ROW if name not in _SERIES_KEY},
            where=tuple_(insert.excluded.latest_created_at, insert.excluded.latest_run_id)
            > tuple_(series.c.latest_created_at, series.c.latest_run_id),
        )

    # -- devices -----------------------------------------------------------------------------

    def record_status(self, status: Status, received_at: datetime) -> bool:
        """Apply a birth or death if it wins (:func:`shared.presence.status_wins`) against the
        stored one; True when the device's presence changed (a new device, another status, fleet
        or ``bd_seq``, or a birth with another manifest).

        A status that loses (a stale Last Will) leaves the row as it was, ``last_seen`` included:
        it says nothing about the device being alive now. A death keeps the last birth's
        manifest. The row is locked while it is compared, so collectors sharing a subscription
        apply statuses one at a time.
        """
        with self._transaction("recording a device status", write=True) as conn:
            created = conn.execute(
                self._db.insert(devices).on_conflict_do_nothing(index_elements=["device_id"]),
                {"device_id": status.device_id, "fleet": status.fleet, "status": "unknown",
                 "first_seen": received_at, "last_seen": received_at},
            ).rowcount == 1
            row = conn.execute(
                select(devices.c.status, devices.c.bd_seq, devices.c.manifest,
                       devices.c.last_seen, devices.c.fleet)
                .where(devices.c.device_id == status.device_id).with_for_update()
            ).one()
            current = None if row.status == "unknown" or row.bd_seq is None else \
                Status.model_construct(device_id=status.device_id, fleet=row.fleet,
                                       status=row.status, bd_seq=row.bd_seq)
            if not status_wins(current, status):
                return created
            values: dict[str, Any] = {
                "fleet": status.fleet, "status": status.status, "bd_seq": status.bd_seq,
                "status_reason": status.reason, "last_seen": max(row.last_seen, received_at),
            }
            changed = created or current is None or row.fleet != status.fleet or \
                (current.status, current.bd_seq) != (status.status, status.bd_seq)
            if status.manifest is not None:
                values["manifest"] = status.manifest.model_dump_json()
                known = None if row.manifest is None else \
                    AgentManifest.model_validate_json(row.manifest)
                changed = changed or known != status.manifest
            conn.execute(devices.update().where(devices.c.device_id == status.device_id)
                         .values(**values))
            return changed

    def record_telemetry(self, telemetry: Telemetry, received_at: datetime) -> None:
        """Keep the device's newest telemetry (by ``sent_at``: one arriving late does not replace
        a newer one) and move ``last_seen`` forward; an unknown device gets a row."""
        self.record_telemetry_batch([(telemetry, received_at)])

    def record_telemetry_batch(self, batch: Sequence[tuple[Telemetry, datetime]]) -> None:
        """:meth:`record_telemetry` for many messages in one transaction (in device order, so
        two collectors' batches take their row locks alike), each also kept in the telemetry
        history (:mod:`collector.stores.history`)."""
        if not batch:
            return
        insert = self._db.insert(devices)
        newer = or_(devices.c.telemetry_sent_at.is_(None),
                    insert.excluded.telemetry_sent_at >= devices.c.telemetry_sent_at)
        statement = insert.on_conflict_do_update(
            index_elements=["device_id"],
            set_={
                "telemetry": case((newer, insert.excluded.telemetry), else_=devices.c.telemetry),
                "telemetry_sent_at": case((newer, insert.excluded.telemetry_sent_at),
                                          else_=devices.c.telemetry_sent_at),
                "last_seen": case((insert.excluded.last_seen > devices.c.last_seen,
                                   insert.excluded.last_seen), else_=devices.c.last_seen),
            },
        )
        ordered = sorted(batch, key=lambda item: (item[0].device_id, item[0].sent_at))
        for sent_at in {t.sent_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                        for t, _ in ordered}:
            self._before_telemetry(sent_at)  # history partitions (PostgreSQL)
        with self._transaction(f"recording {len(batch)} telemetry message(s)", write=True) as conn:
            for telemetry, received_at in ordered:
                conn.execute(statement, {
                    "device_id": telemetry.device_id, "fleet": telemetry.fleet,
                    "status": "unknown", "first_seen": received_at, "last_seen": received_at,
                    "telemetry": telemetry.model_dump_json(),
                    "telemetry_sent_at": telemetry.sent_at,
                })
                self._note_telemetry(conn, telemetry, received_at)  # collector.stores.history

    def list_devices(self, *, fleet: str | None = None) -> list[DeviceRecord]:
        """Every device (of ``fleet``), ordered by device_id.

        Parsing the stored manifest and telemetry is most of the cost of a fleet page (1,000
        devices: 2,000 documents), so a document whose text has not changed since the last call
        is not parsed again: its model is shared between calls (treat it as read-only).
        """
        query = select(devices).order_by(devices.c.device_id)
        if fleet is not None:
            query = query.where(devices.c.fleet == fleet)
        with self._transaction("listing devices", write=False) as conn:
            rows = conn.execute(query).all()
        return [
            DeviceRecord(
                device_id=row.device_id, fleet=row.fleet, status=row.status, bd_seq=row.bd_seq,
                first_seen=row.first_seen, last_seen=row.last_seen,
                manifest=self._parsed(AgentManifest, row.device_id, row.manifest),
                telemetry=self._parsed(Telemetry, row.device_id, row.telemetry),
                latest_run_id=row.latest_run_id, latest_p50_ms=row.latest_p50_ms,
                latest_power_w=row.latest_power_w, latest_model=row.latest_model,
                latest_created_at=row.latest_created_at, status_reason=row.status_reason,
            )
            for row in rows
        ]

    def _parsed(self, model: type[_Doc], device_id: str, document: str | None) -> _Doc | None:
        """``model`` parsed from ``document``, reusing the last parse of the same text."""
        if document is None:
            return None
        key = (model.__name__, device_id)
        cached = self._documents.get(key)
        if cached is not None and cached[0] == document:
            return cast(_Doc, cached[1])
        parsed = model.model_validate_json(document)
        self._documents[key] = (document, parsed)
        return parsed

    # -- jobs --------------------------------------------------------------------------------

    def record_job(self, job: JobCommand, *, device_id: str, fleet: str) -> None:
        """Record a job sent to a device (state ``sent``); the same job again changes nothing."""
        with self._transaction("recording a job", write=True) as conn:
            conn.execute(
                self._db.insert_skipping_known(jobs, ["device_id", "job_id"]),
                {"job_id": job.job_id, "device_id": device_id, "fleet": fleet, "kind": job.kind,
                 "created_at": job.created_at,
                 "model_name": job.model.name if job.model else None,
                 "model_sha256": job.model.sha256 if job.model else None,
                 "command": job.model_dump_json(), "state": "sent"},
            )

    def record_ack(self, ack: JobAck, received_at: datetime) -> None:
        """Apply an ack to its job: state, reason and run_id (a run_id once given stays). An ack
        sent before the one applied (shared subscriptions may reorder) changes nothing; an ack for
        a job this store never saw sent creates it (kind ``unknown``, no command)."""
        insert = self._db.insert(jobs)
        newer = or_(jobs.c.ack_sent_at.is_(None), insert.excluded.ack_sent_at >= jobs.c.ack_sent_at)
        statement = insert.on_conflict_do_update(
            index_elements=["device_id", "job_id"],
            set_={
                "state": insert.excluded.state,
                "reason": insert.excluded.reason,
                "run_id": func.coalesce(insert.excluded.run_id, jobs.c.run_id),
                "ack_sent_at": insert.excluded.ack_sent_at,
                "updated_at": insert.excluded.updated_at,
            },
            where=newer,
        )
        with self._transaction("recording a job ack", write=True) as conn:
            conn.execute(statement, {
                "job_id": ack.job_id, "device_id": ack.device_id, "fleet": ack.fleet,
                "kind": "unknown", "created_at": received_at, "state": ack.state,
                "reason": ack.reason, "run_id": str(ack.run_id) if ack.run_id else None,
                "ack_sent_at": ack.sent_at, "updated_at": received_at,
            })

    def list_jobs(self, *, device_id: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs, newest first (by the command's ``created_at``), at most ``limit``. A job this
        store only knows from its acks (sent by ``fleet run``, not through the API) takes its
        model from the result it produced."""
        query = select(*_jobs_with_models()).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()) \
            .limit(max(int(limit), 0))
        if device_id is not None:
            query = query.where(jobs.c.device_id == device_id)
        with self._transaction("listing jobs", write=False) as conn:
            rows = conn.execute(query).all()
        return [_job_record(row) for row in rows]

    # -- models ------------------------------------------------------------------------------

    def add_model(self, name: str, content: bytes) -> str:
        """Keep a model file by content; returns its sha256. The same content again keeps the
        first name and changes nothing."""
        sha256 = hashlib.sha256(content).hexdigest()
        with self._transaction("storing a model", write=True) as conn:
            conn.execute(
                self._db.insert_skipping_known(models, ["sha256"]),
                {"sha256": sha256, "name": name, "size_bytes": len(content),
                 "added_at": self._clock(), "content": bytes(content)},
            )
        return sha256

    def get_model(self, sha256: str) -> tuple[str, bytes] | None:
        """``(name, content)`` of the model with this sha256 (lower-case hex), or None."""
        with self._transaction("reading a model", write=False) as conn:
            row = conn.execute(select(models.c.name, models.c.content)
                               .where(models.c.sha256 == sha256)).one_or_none()
        return None if row is None else (row.name, bytes(row.content))

    def model_record(self, sha256: str) -> ModelRecord | None:
        """The stored model with this sha256 (lower-case hex), without its content, or None."""
        with self._transaction("reading a model", write=False) as conn:
            r = conn.execute(select(models.c.sha256, models.c.name, models.c.size_bytes,
                                    models.c.added_at).where(models.c.sha256 == sha256)
                             ).one_or_none()
        return None if r is None else ModelRecord(sha256=r.sha256, name=r.name,
                                                  size_bytes=r.size_bytes, added_at=r.added_at)

    def read_model(self, sha256: str, chunk_bytes: int = MODEL_CHUNK_BYTES) -> Iterator[bytes]:
        """The content of a stored model, ``chunk_bytes`` at a time, never whole in memory:
        SQLite's incremental blob reads, PostgreSQL ``substr`` slices. Nothing when it is not
        stored. A read transaction stays open until the iterator ends or is closed."""
        with self._transaction("reading a model", write=False) as conn:
            if self._db.engine.dialect.name == "sqlite":
                rowid = conn.execute(select(literal_column("rowid"))
                                     .select_from(models).where(models.c.sha256 == sha256)
                                     ).scalar_one_or_none()
                if rowid is None:
                    return
                raw = conn.connection.dbapi_connection
                assert raw is not None
                with raw.blobopen("models", "content", rowid, readonly=True) as blob:
                    while chunk := blob.read(chunk_bytes):
                        yield chunk
                return
            offset = 0
            while True:
                chunk = conn.execute(select(func.substr(models.c.content, offset + 1, chunk_bytes))
                                     .where(models.c.sha256 == sha256)).scalar_one_or_none()
                if not chunk:
                    return
                yield bytes(chunk)
                offset += len(chunk)

    def list_models(self) -> list[ModelRecord]:
        """Stored models, oldest first, without their content."""
        with self._transaction("listing models", write=False) as conn:
            rows = conn.execute(select(models.c.sha256, models.c.name, models.c.size_bytes,
                                       models.c.added_at)
                                .order_by(models.c.added_at, models.c.sha256)).all()
        return [ModelRecord(sha256=r.sha256, name=r.name, size_bytes=r.size_bytes,
                            added_at=r.added_at) for r in rows]

    # -- dead letters ------------------------------------------------------------------------

    def add_dead_letter(self, topic: str, reason: str, payload: bytes, *,
                        device_id: str | None = None, retained: bool = False) -> None:
        """Keep a rejected message: its first :data:`DEAD_LETTER_MAX_BYTES` bytes, full size and
        sha256. The same payload from the same device again bumps ``count`` and ``last_seen``
        (topic and reason stay the first ones), unless it is a retained message: a broker hands
        those out again on every subscribe, so one already stored is not counted again."""
        now = self._clock()
        with self._transaction("storing a dead letter", write=True) as conn:
            conn.execute(self._dead_letter_statement(retained=retained),
                         _dead_letter_row(topic, reason, payload, device_id, now))

    def _dead_letter_statement(self, *, retained: bool) -> Insert:
        insert = self._db.insert(dead_letters)
        key = ["device_id", "sha256"]
        return insert.on_conflict_do_nothing(index_elements=key) if retained else \
            insert.on_conflict_do_update(index_elements=key, set_={
                "count": dead_letters.c["count"] + 1, "last_seen": insert.excluded.last_seen})

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        """Results, oldest first (with ``flt.limit``: the newest N, still oldest first)."""
        with self._transaction("listing results", write=False) as conn:
            documents = _representatives(conn, flt) if flt is not None and \
                flt.newest_per_hardware else conn.execute(_results_query(flt)).scalars().all()
        return [BenchmarkResult.model_validate_json(doc) for doc in documents]

    def iter_results(self, flt: ResultFilter | None = None) -> Iterator[BenchmarkResult]:
        """Like :meth:`list_results`, but fetched :data:`STREAM_BATCH_ROWS` rows at a time.

        The read transaction stays open until the iterator is exhausted or closed; use it in a
        ``for`` loop (or ``contextlib.closing``) and call nothing else on an in-memory store
        meanwhile.
        """
        with self._transaction("streaming results", write=False) as conn:
            if flt is not None and flt.newest_per_hardware:  # one per series at most: a list
                documents: Iterable[str] = _representatives(conn, flt)
            else:
                documents = conn.execution_options(yield_per=STREAM_BATCH_ROWS).execute(
                    _results_query(flt)
                ).scalars()
            for document in documents:
                yield BenchmarkResult.model_validate_json(document)

    def get_result(self, run_id: str) -> BenchmarkResult | None:
        with self._transaction("reading a result", write=False) as conn:
            document = conn.execute(
                select(results.c.result).where(results.c.run_id == str(run_id))
            ).scalar_one_or_none()
        return None if document is None else BenchmarkResult.model_validate_json(document)

    def list_dead_letters(self, limit: int | None = None, *,
                          reason: str | None = None) -> list[DeadLetter]:
        """Dead letters (with this ``reason``), oldest first by first receipt (with ``limit``:
        the newest N, still oldest first)."""
        where = [] if reason is None else [dead_letters.c.reason == reason]
        query = _newest_first_limited(list(dead_letters.c), where, [dead_letters.c.id], limit)
        with self._transaction("listing dead letters", write=False) as conn:
            rows = conn.execute(query).all()
        return [_dead_letter(row) for row in rows]

    def get_dead_letter(self, letter_id: int) -> DeadLetter | None:
        with self._transaction("reading a dead letter", write=False) as conn:
            row = conn.execute(select(dead_letters)
                               .where(dead_letters.c.id == int(letter_id))).one_or_none()
        return None if row is None else _dead_letter(row)

    def count_dead_letters(self) -> list[tuple[str, int, int]]:
        """``(reason, rows, messages)`` per reason, most messages first (messages: the rows'
        counts summed, repeats included)."""
        messages = func.sum(dead_letters.c["count"])
        query = select(dead_letters.c.reason, func.count(), messages) \
            .group_by(dead_letters.c.reason).order_by(messages.desc(), dead_letters.c.reason)
        with self._transaction("counting dead letters", write=False) as conn:
            rows = conn.execute(query).all()
        return [(reason, int(n), int(total)) for reason, n, total in rows]

    def delete_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        """Delete these dead letters (None: all of them); returns how many were deleted."""
        statement = dead_letters.delete()
        if ids is not None:
            if not ids:
                return 0
            statement = statement.where(dead_letters.c.id.in_([int(i) for i in ids]))
        with self._transaction("deleting dead letters", write=True) as conn:
            return max(conn.execute(statement).rowcount, 0)

    # -- seq gaps ----------------------------------------------------------------------------

    def seq_gaps(self, *, device_id: str | None = None) -> list[SeqGap]:
        """Ranges of ``seq`` missing between a device's stored results, by device then seq.

        Computed from the results each time (``lag`` over each device's seq), so a range the
        agent's spool delivers later disappears. Numbers before the lowest stored seq are not
        counted as missing: the agent's counter starts where its spool starts.
        """
        seq = results.c.seq
        ordered = select(
            results.c.device_id, results.c.fleet, seq,
            func.lag(seq).over(partition_by=results.c.device_id, order_by=seq).label("prev"),
        )
        if device_id is not None:
            ordered = ordered.where(results.c.device_id == device_id)
        inner = ordered.subquery()
        query = select(inner.c.device_id, inner.c.fleet, inner.c.prev + 1, inner.c.seq - 1) \
            .where(inner.c.seq - inner.c.prev > 1).order_by(inner.c.device_id, inner.c.seq)
        with self._transaction("finding seq gaps", write=False) as conn:
            rows = conn.execute(query).all()
        return [SeqGap(device_id=d, fleet=f, first_missing=int(a), last_missing=int(b))
                for d, f, a, b in rows]

    def add_cited_baselines(self, rows: Sequence[CitedBaseline]) -> int:
        """Store cited rows; returns how many were new (same content = same row)."""
        if not rows:
            return 0
        bulk = self._insert_baselines
        added_at = bulk.processor("added_at")(self._clock())
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


def _dead_letter_row(topic: str, reason: str, payload: bytes, device_id: str | None,
                     now: datetime) -> dict[str, Any]:
    return {
        "received_at": now, "last_seen": now, "topic": topic, "reason": reason,
        "payload": bytes(payload[:DEAD_LETTER_MAX_BYTES]),
        "device_id": device_id or NO_DEVICE, "size_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(), "count": 1,
    }


#: Fields two results with one run_id may differ in and still be the same run.
_RESENT_FIELDS = {"replayed"}


def _same_content(stored: Any, document: str, result: BenchmarkResult) -> bool:
    """Whether ``result`` (sent as ``document``) is the run already stored as ``stored`` (the
    document as the database gives it back): byte-equal, or equal as parsed but for the fields an
    agent changes when it sends a result again."""
    if isinstance(stored, str) and stored == document:
        return True
    try:
        first = BenchmarkResult.model_validate_json(stored) if isinstance(stored, (str, bytes)) \
            else BenchmarkResult.model_validate(stored)
    except ValueError:
        return False  # the stored one no longer validates: not the same, keep it anyway
    return first.model_dump(exclude=_RESENT_FIELDS) == result.model_dump(exclude=_RESENT_FIELDS)


def _run_id_of(row: tuple[Any, ...]) -> str:
    return str(row[0])


#: Where each column sits in the rows ``add_results`` builds (tables.results' order, no ``id``).
_AT = {name: i for i, name in enumerate(c.key for c in results.c if c.key != "id")}


def _series_rows(batch: Sequence[BenchmarkResult],
                 rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The newest row of each series in ``rows`` (``rows[i]`` is ``batch[i]``, its time already
    as stored), as ``_SERIES_ROW`` tuples in key order. Read from the row tuples, not the
    results: touching each result's nested models again cost more than the statement."""
    device, sha256, scenario = _AT["device_id"], _AT["model_sha256"], _AT["scenario"]
    created, run_id = _AT["created_at"], _AT["run_id"]
    newest: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(rows):
        key = (row[device], row[sha256], row[scenario])
        known = newest.get(key)
        if known is None or (row[created], row[run_id]) > (rows[known][created],
                                                           rows[known][run_id]):
            newest[key] = i
    return [
        (*key, row[_AT["fleet"]], row[_AT["role"]], row[_AT["model_name"]], row[_AT["network"]],
         batch[i].device.hardware_key, row[run_id], row[created])
        for key, i in sorted(newest.items())
        for row in (rows[i],)
    ]


def _month_of(value: datetime) -> Month:
    utc = value.astimezone(timezone.utc)
    return utc.year, utc.month


def _jobs_with_models() -> list[Any]:
    """The jobs' columns, the model's name and sha256 falling back to the job's stored result."""
    def from_result(column: str) -> Any:
        return (select(results.c[column]).where(results.c.run_id == jobs.c.run_id)
                .limit(1).scalar_subquery())

    return [*(c for c in jobs.c if c.name not in ("model_name", "model_sha256")),
            func.coalesce(jobs.c.model_name, from_result("model_name")).label("model_name"),
            func.coalesce(jobs.c.model_sha256, from_result("model_sha256")).label("model_sha256")]


def _job_record(row: Row[Any]) -> JobRecord:
    return JobRecord(
        job_id=row.job_id, device_id=row.device_id, fleet=row.fleet, kind=row.kind,
        state=row.state, created_at=row.created_at, model_name=row.model_name,
        model_sha256=row.model_sha256, reason=row.reason, run_id=row.run_id,
        updated_at=row.updated_at,
        command=None if row.command is None else JobCommand.model_validate_json(row.command),
    )


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id, received_at=row.received_at, topic=row.topic, reason=row.reason,
        payload=bytes(row.payload), device_id=row.device_id or None, size_bytes=row.size_bytes,
        sha256=row.sha256, count=row.count, last_seen=row.last_seen,
    )


def _representatives(conn: Connection, flt: ResultFilter) -> list[str]:
    """The documents :attr:`ResultFilter.newest_per_hardware` keeps, oldest first: the chosen
    series rows name them; they are read by run_id and ``created_at`` (so PostgreSQL reads only
    their months' partitions), a few hundred at a time."""
    chosen = [(row.latest_run_id, row.latest_created_at)
              for row in conn.execute(_representatives_query(flt))]
    documents: dict[str, str] = {}
    for start in range(0, len(chosen), _FETCH_CHUNK):
        part = chosen[start:start + _FETCH_CHUNK]
        documents.update((row.run_id, row.result) for row in conn.execute(
            select(results.c.run_id, results.c.result)
            .where(results.c.run_id.in_([run_id for run_id, _ in part]),
                   results.c.created_at.in_(sorted({created for _, created in part})))))
    missing = [run_id for run_id, _ in chosen if run_id not in documents]
    for start in range(0, len(missing), _FETCH_CHUNK):
        # a series names the created_at of the newest copy it was given; a run_id stored
        # before with another created_at (a re-send) is found by run_id alone; one pruned since
        # is not found at all
        documents.update((row.run_id, row.result) for row in conn.execute(
            select(results.c.run_id, results.c.result)
            .where(results.c.run_id.in_(missing[start:start + _FETCH_CHUNK]))))
    return [documents[run_id] for run_id, _ in chosen if run_id in documents]


def _representatives_query(flt: ResultFilter) -> Select[Any]:
    """``latest_run_id`` and ``latest_created_at`` of the newest series of each hardware group
    (``hardware_key``, else the device), role, model sha256 and scenario among the series ``flt``
    keeps, oldest first (with ``flt.limit``: the newest N)."""
    s = series.c
    where: list[ColumnElement[bool]] = []
    if flt.model:
        where.append((s.model_name == flt.model) | (s.network == flt.model)
                     | (s.model_sha256 == flt.model))
    for column, value in (("device_id", flt.device_id), ("role", flt.role), ("fleet", flt.fleet)):
        if value:
            where.append(s[column] == value)
    if flt.roles is not None:
        where.append(s.role.in_(sorted(flt.roles)))
    if flt.shares_model is not None:
        names = sorted(flt.shares_model)
        where.append(s.model_sha256.in_(names) | s.network.in_(names))
    own_group = case((s.hardware_key.is_(None), s.device_id), else_=None)
    rank = func.row_number().over(
        partition_by=[s.role, s.hardware_key, own_group, s.model_sha256, s.scenario],
        order_by=[s.latest_created_at.desc(), s.device_id.desc()],
    ).label("group_rank")
    ranked = select(s.latest_run_id, s.latest_created_at, s.device_id, rank).where(*where) \
        .subquery()
    kept = select(ranked.c.latest_run_id, ranked.c.latest_created_at, ranked.c.device_id) \
        .where(ranked.c.group_rank == 1)
    if flt.limit is None:
        return kept.order_by(ranked.c.latest_created_at, ranked.c.device_id)
    newest = kept.order_by(ranked.c.latest_created_at.desc(), ranked.c.device_id.desc()) \
        .limit(max(int(flt.limit), 0)).subquery()
    return select(newest.c.latest_run_id, newest.c.latest_created_at) \
        .order_by(newest.c.latest_created_at, newest.c.device_id)


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
        if flt.roles is not None:
            where.append(results.c.role.in_(sorted(flt.roles)))
        if flt.shares_model is not None:
            names = sorted(flt.shares_model)
            where.append(results.c.model_sha256.in_(names) | results.c.network.in_(names))
        if flt.per_series is not None:
            ranked = _newest_of_each_series(where, flt.per_series)
            return _newest_first_limited([ranked.c.result], [], [ranked.c.created_at, ranked.c.id],
                                         flt.limit)
    return _newest_first_limited(
        [results.c.result], where, [results.c.created_at, results.c.id], flt.limit if flt else None
    )


def _newest_of_each_series(where: Sequence[ColumnElement[bool]], per_series: int) -> Subquery:
    """``result``, ``created_at`` and ``id`` of the newest ``per_series`` results (by
    ``created_at``, then id) of each device, model sha256 and scenario among those ``where``
    keeps. (One pass: ranking ids first and fetching the kept documents by id measured slower on
    PostgreSQL than reading the few documents ranked out.)"""
    rank = func.row_number().over(
        partition_by=[results.c.device_id, results.c.model_sha256, results.c.scenario],
        order_by=[results.c.created_at.desc(), results.c.id.desc()],
    ).label("series_rank")
    ranked = select(results.c.result, results.c.created_at, results.c.id, rank) \
        .where(*where).subquery()
    return select(ranked.c.result, ranked.c.created_at, ranked.c.id) \
        .where(ranked.c.series_rank <= max(int(per_series), 0)).subquery()


def _newest_first_limited(
    columns: Sequence[KeyedColumnElement[Any]],
    where: Sequence[ColumnElement[bool]],
    order: Sequence[KeyedColumnElement[Any]],
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
