"""Everything that differs between SQLite and PostgreSQL, apart from column types.

One :class:`Database` per supported database says how to read its URL, open an engine, insert
while skipping known keys, serialise migrations, and describe where it is in messages. The store
(:mod:`collector.stores.sql`) and the migration runner (:mod:`collector.stores.schema`) call these
and nothing else dialect-specific; column types that differ live in :mod:`collector.stores.columns`.

URLs users give (both keep working as before):

* ``sqlite:///relative.db`` (relative to the working directory), ``sqlite:////abs/path.db``,
  ``sqlite:///:memory:`` (a private in-memory database, for tests). The parent folder is created.
* ``postgresql://user[:password]@host[:port]/dbname[?options]`` or ``postgres://...``; libpq
  options such as ``connect_timeout`` or ``options=-csearch_path%3Dschema`` pass through. The
  driver is always psycopg 3 (``postgresql+psycopg://``), whatever driver the URL names.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    cast,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import Table

from collector.errors import StoreError
from collector.stores.columns import JsonText
from shared.errors import ConfigError

__all__ = ["WRITE_OPTION", "Database", "UpsertInsert", "database_for", "sqlite_path"]

#: The dialect's own INSERT, which has ``on_conflict_do_nothing``/``on_conflict_do_update`` and
#: ``excluded`` (the row that was refused) alike on both databases.
UpsertInsert = pg_dialect.Insert | sqlite_dialect.Insert

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 10
#: One advisory lock id for edgemeter migrations ("edge"), so collectors starting together
#: migrate one after the other.
PG_MIGRATION_LOCK_KEY = 0x6564_6765
#: Execution option a store sets on connections that write (SQLite then takes the write lock at
#: BEGIN, so two writers wait on the busy timeout instead of failing to upgrade a read lock).
WRITE_OPTION = "edgemeter_write"

_SQLITE_PREFIX = "sqlite:///"

#: Every use of a connection is one ``with conn.begin():`` block that commits or rolls back, so
#: the pool need not roll back again when a connection comes back (a round trip per batch on
#: PostgreSQL). No pre-ping either: a connection the server dropped fails its call, SQLAlchemy then
#: discards the pool's connections, and the next call reconnects (the collector retries the batch).
_POOL_OPTIONS: dict[str, Any] = {"pool_reset_on_return": None}


def sqlite_path(url: str) -> str:
    """The file path a ``sqlite:///`` URL names (``:memory:`` stays as is)."""
    url = re.sub(r"^sqlite\+\w+:", "sqlite:", url)  # sqlite+pysqlite:///...
    if not url.startswith(_SQLITE_PREFIX):
        raise ConfigError(
            f"SQLite URL {url!r} must look like sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path = url[len(_SQLITE_PREFIX):].split("?", 1)[0]
    if not path:
        raise ConfigError(f"SQLite URL {url!r} names no file: use sqlite:///results.db")
    return path if path == ":memory:" else str(Path(path).expanduser())


def _first_line(err: BaseException) -> str:
    """The driver's own message, first line only (SQLAlchemy appends SQL and a link)."""
    orig = getattr(err, "orig", None) or err
    message = str(orig).strip()
    return message.splitlines()[0] if message else type(orig).__name__


@dataclass
class Database:
    """How one kind of database is reached; see the module docstring."""

    name: str
    """``sqlite`` or ``postgresql``"""
    where: str
    """where it is, for messages: a file path, or ``user@host:port/db`` (never the password)"""
    url: str
    """the URL as given, with any password masked"""
    engine: Engine

    def serialised(self) -> AbstractContextManager[Any]:
        """Held around every use: an in-memory SQLite database is one connection for all threads."""
        return nullcontext()

    def insert(self, table: Table) -> UpsertInsert:
        """This database's ``INSERT`` construct, for ``ON CONFLICT`` clauses."""
        raise NotImplementedError

    def insert_skipping_known(self, table: Table, key: Sequence[str]) -> Insert:
        """``INSERT ... ON CONFLICT (key) DO NOTHING`` for this database."""
        return self.insert(table).on_conflict_do_nothing(index_elements=list(key))

    #: ``results`` is partitioned by month (:mod:`collector.stores.partitions`)
    partitioned = False
    #: writers run at the same time (row locks, not one writer at a time): a batch takes its keys'
    #: locks in key order, so two batches sharing keys cannot deadlock
    concurrent_writers = False

    def results_inserts(self, results: Table, result_ids: Table) -> list[Insert]:
        """The statements that store a batch of results, each run over every row in order, in
        one transaction: a row goes into ``results`` only with a new ``run_id`` in
        ``result_ids``; the first statement's row count is the number of new results."""
        raise NotImplementedError

    def lock_for_migration(self, conn: Connection) -> None:
        """Serialise migrations of concurrent processes (inside the migration's transaction)."""

    def connect_failed(self, err: BaseException) -> str:
        return (f"cannot open {self.name} database {self.where}: {_first_line(err)}; check the "
                "URL and that the database is reachable")

    def action_failed(self, action: str, err: BaseException) -> str:
        return f"{self.name} database {self.where}: {action} failed: {_first_line(err)}"


class _Sqlite(Database):
    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        memory = path == ":memory:"
        if not memory:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(
                    f"cannot create the folder for SQLite database {path}: "
                    f"{err.strerror or err}; check the path and its permissions"
                ) from err
        options: dict[str, Any] = {
            "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **_POOL_OPTIONS,
        }
        if memory:  # every connection to :memory: would be a database of its own
            options["poolclass"] = StaticPool
        engine = create_engine(URL.create("sqlite+pysqlite", database=path), **options)
        event.listen(engine, "connect", _sqlite_on_connect(memory))
        event.listen(engine, "begin", _sqlite_on_begin)
        super().__init__("SQLite", path, url, engine)
        self._lock = threading.RLock() if memory else None

    def serialised(self) -> AbstractContextManager[Any]:
        return self._lock if self._lock is not None else nullcontext()

    def insert(self, table: Table) -> UpsertInsert:
        return sqlite_dialect.insert(table)

    def results_inserts(self, results: Table, result_ids: Table) -> list[Insert]:
        """No partitions here: ``results.run_id`` is unique itself (``result_ids`` is unused)."""
        return [self.insert_skipping_known(results, ["run_id"])]

    def connect_failed(self, err: BaseException) -> str:
        return (f"SQLite database {self.where}: cannot open it: {_first_line(err)}; check the "
                "file is a writable edgemeter database and the disk is not full")

    def action_failed(self, action: str, err: BaseException) -> str:
        return (f"SQLite database {self.where}: {action} failed: {_first_line(err)}; check the "
                "file is a writable edgemeter database and the disk is not full")


def _sqlite_on_connect(memory: bool) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Transactions are ours (BEGIN in _sqlite_on_begin), not the sqlite3 module's.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not memory:  # WAL: the CLI and dashboard read while the collector writes
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return on_connect


def _switch_to_wal(cursor: Any, attempts: int = 50, pause_s: float = 0.1) -> None:
    """``PRAGMA journal_mode = WAL``. The switch of a new file needs its exclusive lock and does
    not wait on the busy timeout, so collectors opening one new database together (seen in a
    test of three) would fail with "database is locked": try again for a few seconds."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(pause_s)


def _sqlite_on_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class _Postgres(Database):
    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as err:
            raise ConfigError(
                f"PostgreSQL URL is malformed ({err}); use postgresql://user@host:port/dbname"
            ) from err
        parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        # positional %s placeholders: the driver takes tuples, as cheap to build as to bind
        engine = create_engine(parsed, connect_args=connect_args, paramstyle="format",
                               **_POOL_OPTIONS)
        where = (f"{parsed.username or '(default user)'}@{parsed.host or 'localhost'}:"
                 f"{parsed.port or 5432}/{parsed.database or '(default db)'}")
        masked = re.sub(r"^(\w[\w+]*://[^:/@]*:)[^@/]*@", r"\1***@", url)
        super().__init__("PostgreSQL", where, masked, engine)

    def insert(self, table: Table) -> UpsertInsert:
        return pg_dialect.insert(table)

    partitioned = True
    concurrent_writers = True

    def results_inserts(self, results: Table, result_ids: Table) -> list[Insert]:
        """One statement per row: ``WITH new AS (INSERT INTO result_ids ... ON CONFLICT DO
        NOTHING RETURNING run_id) INSERT INTO results SELECT ... FROM new``: the primary key of
        ``result_ids`` decides, so two collectors storing one run_id at once store it once."""
        values = _values_of(results)
        new = (self.insert(result_ids)
               .values(run_id=values["run_id"], created_at=values["created_at"])
               .on_conflict_do_nothing(index_elements=["run_id"])
               .returning(result_ids.c.run_id)
               .cte("new_run_ids"))
        selected = [cast(v, JSONB) if isinstance(results.c[k].type, JsonText) else v
                    for k, v in values.items()]
        return [results.insert().from_select(list(values), select(*selected).select_from(new))]

    def lock_for_migration(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})

    def connect_failed(self, err: BaseException) -> str:
        return (f"cannot connect to PostgreSQL at {self.where}: {_first_line(err)}; check that "
                "the server is running and the URL's host, port, user, password and database name")

    def action_failed(self, action: str, err: BaseException) -> str:
        return (f"PostgreSQL at {self.where}: {action} failed: {_first_line(err)}; check the "
                "server log and that the user may write to the database")


def _values_of(table: Table) -> dict[str, Any]:
    """A bound parameter per column (but ``id``), named and typed after it."""
    return {c.key: bindparam(c.key, type_=c.type) for c in table.c if c.key != "id"}


def database_for(url: str) -> Database:
    """The :class:`Database` a URL names (no connection is made yet)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return _Sqlite(url)
    if scheme in ("postgresql", "postgres"):
        return _Postgres(url)
    raise ConfigError(
        f"database URL {url!r} is not supported: use sqlite:///PATH.db or postgresql://..."
    )
