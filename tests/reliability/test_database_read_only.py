"""The database refuses writes for 10 s during a 5,000-result stream: all 5,000 are stored, none is
dead-lettered (the acceptance of [Reliability]).

How each database is made to refuse writes, for real, under a running collector:

* SQLite: ``chattr +i`` (immutable) on the database file and its ``-wal``. Tests run as root,
  and root ignores file modes (``chmod 0444`` changes nothing) and a folder's write bit, while the
  immutable flag binds root too: every write through the collector's open descriptors fails
  (``disk I/O error``) and a new connection opens read-only (``attempt to write a readonly
  database``). The ``-shm`` file is left alone: SQLite maps it into memory, and a store to a page
  of an immutable mapped file is a SIGBUS that would kill the collector, which no real outage
  does. ``chattr -i`` ends the outage. Needs a file system with the flag (ext4, xfs, btrfs) and
  CAP_LINUX_IMMUTABLE; the test skips (fails under CI=true) without them.
* PostgreSQL: a login role of the test's own whose sessions default to read-only transactions
  (``ALTER ROLE ... SET default_transaction_read_only = on``), and ``pg_terminate_backend`` of its
  backends, so the collector's connections end and come back read-only, as after a fail-over to a
  standby. After 10 s the setting is reset, with the backends ended again (a fail-back) or not
  (the sessions the collector opened read-only stay read-only; the store replaces a session that
  refused a write as read-only).

The shared server is never restarted; the role and its objects are dropped afterwards.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from tests.collector.test_backpressure import publish_fast
from tests.conftest import POSTGRES_URL, unavailable
from tests.factories import make_result
from tests.reliability.services import PersistentMosquitto, report, wait_until

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

STREAM = 5000
OUTAGE_S = 10.0


def _chattr(flag: str, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True,
                          check=False)


class SqliteOutage:
    def __init__(self, db_path: Path) -> None:
        self.paths = [db_path, db_path.with_name(db_path.name + "-wal")]

    def begin(self) -> None:
        done = _chattr("+i", self.paths)
        if done.returncode != 0:
            unavailable(f"chattr +i is not possible here: {done.stderr.strip()}")

    def end(self) -> None:
        _chattr("-i", self.paths)


class PostgresOutage:
    def __init__(self, role: str, *, end_backends_at_end: bool = True) -> None:
        self.role = role
        self.end_backends_at_end = end_backends_at_end

    def _run(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def _end_backends(self) -> str:
        return ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE usename = '{self.role}'")

    def begin(self) -> None:
        self._run(f'ALTER ROLE "{self.role}" SET default_transaction_read_only = on',
                  self._end_backends())

    def end(self) -> None:
        self._run(f'ALTER ROLE "{self.role}" RESET default_transaction_read_only',
                  *([self._end_backends()] if self.end_backends_at_end else []))


@pytest.fixture()
def own_role_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` (a private schema) for a login role made for this test, then dropped."""
    import psycopg

    schema = unquote(postgres_url.split("search_path")[1]).lstrip("=")
    role = f"rel_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT CONNECT ON DATABASE "{POSTGRES_URL.rsplit("/", 1)[1]}" TO "{role}"')
    yield postgres_url.replace("//postgres@", f"//{role}@", 1)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        conn.execute(f'DROP OWNED BY "{role}" CASCADE')
        conn.execute(f'DROP ROLE "{role}"')


def _stream_through_an_outage(broker: PersistentMosquitto, db_url: str,
                              begin: Callable[[], None], end: Callable[[], None]) -> None:
    store = open_store(db_url)
    service = CollectorService(
        store, MqttSettings(url=broker.url, client_id=f"rel-{uuid.uuid4().hex[:6]}",
                            connect_timeout_s=10),
        IngestSettings(retry_interval_s=0.1, retry_max_interval_s=1.0),
    )
    sent = [make_result(device_id=f"pi-{i % 10:02d}", seq=i) for i in range(STREAM)]
    service.start()
    outage_s = 0.0
    try:
        publish_fast(broker.url, sent[:1000])
        wait_until(lambda: service.stats["stored"] >= 500, 60, "500 stored before the outage")
        begin()
        began = time.monotonic()
        try:
            publish_fast(broker.url, sent[1000:])
            wait_until(lambda: service.store_down, 30, "the collector to see the outage")
            time.sleep(max(OUTAGE_S - (time.monotonic() - began), 0))  # the fault lasts 10 s
        finally:
            end()
            outage_s = time.monotonic() - began
        wait_until(lambda: service.stats["stored"] >= STREAM, 120, f"{STREAM} stored")
        wait_until(lambda: not service.store_down, 30, "the outage to be over")
        stats = service.stats
    finally:
        service.stop()
        store.close()
    assert stats["dead_letters"] == 0, stats
    assert stats["store_errors"] > 0, "the database never refused a write"
    report([str(r.run_id) for r in sent], db_url,
           note=f"writes refused for {outage_s:.0f} s, {stats['store_errors']} store errors, "
                f"0 dead letters")


def test_sqlite_refusing_writes_for_10_s_loses_and_dead_letters_nothing(tmp_path: Path) -> None:
    broker = PersistentMosquitto(tmp_path / "broker").start()
    db_path = tmp_path / "results.db"
    outage = SqliteOutage(db_path)
    try:
        _stream_through_an_outage(broker, f"sqlite:///{db_path}", outage.begin, outage.end)
    finally:
        outage.end()
        broker.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("end_backends_at_end", [True, False],
                         ids=["backends-ended-again", "setting-reset-only"])
def test_postgresql_read_only_with_ended_backends_for_10_s_loses_and_dead_letters_nothing(
    tmp_path: Path, own_role_url: str, end_backends_at_end: bool,
) -> None:
    """``setting-reset-only``: the collector's sessions, opened read-only, are the only thing
    between the database and the writes once the setting is reset; the store drops a session
    that refused a write as read-only (it retried in vain for ever before)."""
    role = own_role_url.split("//", 1)[1].split("@", 1)[0]
    broker = PersistentMosquitto(tmp_path / "broker").start()
    outage = PostgresOutage(role, end_backends_at_end=end_backends_at_end)
    try:
        _stream_through_an_outage(broker, own_role_url, outage.begin, outage.end)
    finally:
        broker.stop()
