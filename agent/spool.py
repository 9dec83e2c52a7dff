"""The durable spool: every result waits here until the collector confirms it has stored it.

One SQLite file in WAL mode (``spool.db``), readable by its owner only, used by the daemon and by
``bench --publish`` alike. A result is put here before it is published and deleted only when a
:class:`shared.messages.Receipt` names its run_id: a broker's PUBACK is not enough, since a broker
that crashes before it hands the message on loses it. Unconfirmed results are sent again after a
timeout, oldest first; the collector stores each run_id once, so a re-send is harmless.

The spool is bounded by size (``max_bytes`` of payload): past the limit it drops the oldest
results, counts them in ``dropped_total`` (reported in telemetry) and logs a warning. When the
disk itself is full, it drops the oldest to make room once and otherwise raises
:class:`agent.errors.SpoolError` with the path, so a measurement is never thrown away silently.
Dropping rows takes disk space too (SQLite writes the change to its WAL first), so the spool keeps
a reserve file beside its database (``spool.db.reserve``, ``reserve_bytes``, leaving the WAL room
to reach its checkpoint). On a full disk it deletes the reserve, moves the WAL into the database
(``wal_checkpoint(TRUNCATE)``), drops the oldest results (64 KiB or more), stores the new one,
checkpoints again, caps the database file at its size (``max_page_count``: new results take the
pages of dropped ones, so the file never grows into the reserve's room again) and makes the
reserve again; the cap is lifted once the disk has room. A full disk thus keeps the newest results
that fit and counts every one it drops; before, it kept the oldest and refused every new one
(``tests/reliability/test_spool_disk_full.py``). Receipts and re-send marks on a full disk use the
reserve the same way; when even that fails, :class:`agent.errors.SpoolError` says where.

Monitor windows (:class:`shared.monitoring.MonitorWindow`) wait here too, by their ``window_id``,
with ``kind = 'monitor'`` (results have ``kind = 'result'``): :meth:`Spool.put_window`. The courier
publishes each on its kind's topic, and a receipt naming the ``window_id`` among its ``run_ids``
releases it, exactly as a result. A spool file of the earlier layout gains the ``kind`` column
when it is opened.

The same file keeps the device's counters: ``seq`` (one per result; gaps tell the collector that
something went missing) and ``bd_seq`` (the birth/death sequence of :mod:`shared.messages`).
An outbox folder of the earlier layout (one JSON file per result) is imported once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agent.errors import SpoolError
from shared.monitoring import MonitorWindow
from shared.schema import BenchmarkResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

WAL_AUTOCHECKPOINT_PAGES = 64
"""Checkpoint the WAL every 64 pages (SQLite's default 1,000 is 4 MiB a full disk must find)."""
WAL_ROOM_BYTES = 2 * WAL_AUTOCHECKPOINT_PAGES * 4096
"""Disk space the reserve file leaves free: a WAL up to its checkpoint, twice."""
UNCAPPED_PAGES = 1_073_741_823
"""SQLite's default ``max_page_count``."""
FULL_DISK_DROP_BYTES = 64 * 1024
"""On a full disk, drop the oldest results worth this much (or twice the new one): a few rows,
so the change fits in the room the reserve file gave back."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT PRIMARY KEY,
    fleet TEXT NOT NULL,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_s REAL NOT NULL,
    sent_s REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'result'
);
CREATE INDEX IF NOT EXISTS results_created ON results (created_s);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class SpooledResult:
    run_id: str
    fleet: str
    device_id: str
    payload: bytes
    attempts: int
    """how many times it has been published already (0: never)"""
    kind: str = "result"
    """the topic kind it goes out on: ``result`` or ``monitor`` (:class:`shared.topics.TopicKind`)"""


class Spool:
    """Results waiting for their receipt, and the device's counters. Thread-safe."""

    def __init__(self, path: Path, *, max_bytes: int = 64 * 2**20,
                 reserve_bytes: int = 1 << 20,
                 clock_s: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self._reserve = self.path.with_name(self.path.name + ".reserve")
        self._capped = False
        self._clock_s = clock_s
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # owner-only from the first byte; SQLite gives its -wal and -shm files the same mode
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # a small WAL, its blocks reused: a nearly full disk still takes a result
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
            if "kind" not in columns:  # a spool of the layout before monitor windows
                self._db.execute("ALTER TABLE results ADD COLUMN kind TEXT NOT NULL "
                                 "DEFAULT 'result'")
        except (OSError, sqlite3.Error) as err:
            raise SpoolError(f"cannot open the spool at {self.path}: {err}; check the folder "
                             "exists and is writable by this user ([spool] path)") from err
        self._make_reserve()

    # -- counters -------------------------------------------------------------------------------

    def next_seq(self) -> int:
        """Increment and return the device's result counter (it only grows, across reboots)."""
        return self._increment("seq")

    def next_bd_seq(self) -> int:
        """Increment and return the birth/death sequence number (once per connection)."""
        return self._increment("bd_seq")

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def dropped_total(self) -> int:
        return self.counter("dropped")

    def _increment(self, name: str, by: int = 1) -> int:
        def body(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET value = value + excluded.value", (name, by))
            return int(db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])

        return self._write_making_room(f"counting {name}", body)

    # -- results --------------------------------------------------------------------------------

    def put(self, result: BenchmarkResult) -> None:
        """Keep ``result`` until its receipt; drops the oldest when over ``max_bytes``."""
        self._put((str(result.run_id), result.fleet, result.device_id, result.seq,
                   result.model_dump_json().encode(), "result"))

    def put_window(self, window: MonitorWindow) -> None:
        """Keep a monitor window until a receipt names its ``window_id`` (as :meth:`put`)."""
        self._put((str(window.window_id), window.fleet, window.device_id, 0,
                   window.model_dump_json().encode(), "monitor"))

    def _put(self, entry: tuple[str, str, str, int, bytes, str]) -> None:
        key, fleet, device_id, seq, payload, kind = entry
        row = (key, fleet, device_id, seq, payload, len(payload), self._clock_s(), kind)
        insert = ("INSERT OR IGNORE INTO results (run_id, fleet, device_id, seq, payload, "
                  "size_bytes, created_s, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        if self._capped:
            self._lift_cap_when_room()
        try:
            with self._write() as db:
                db.execute(insert, row)
                self._enforce_cap(db, keep=row[0])
        except sqlite3.OperationalError as err:
            if "full" not in str(err).lower():
                raise SpoolError(f"cannot write the spool at {self.path}: {err}") from err
            # The disk is full: free the reserve, make room by dropping the oldest results, once.
            logger.warning("spool %s: the disk is full; dropping the oldest results to make room",
                           self.path)
            self._reserve.unlink(missing_ok=True)
            try:
                self._checkpoint()  # the WAL's pages into the database, its own space back
                with self._write() as db:
                    self._drop_oldest(db, max(len(payload) * 2, FULL_DISK_DROP_BYTES),
                                     keep=row[0])
                    db.execute(insert, row)
                self._checkpoint()
                self._cap_file()
            except sqlite3.Error as again:
                raise SpoolError(
                    f"the disk holding the spool {self.path} is full, even after dropping older "
                    f"results: free space there; run {row[0]} was not kept"
                ) from again
            finally:
                self._make_reserve()

    def due(self, *, resend_after_s: float, limit: int = 100) -> list[SpooledResult]:
        """Results never sent, then those sent more than ``resend_after_s`` ago without a
        receipt, each group oldest first: re-sends never starve a result not yet sent once."""
        cutoff = self._clock_s() - resend_after_s
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, fleet, device_id, payload, attempts, kind FROM results "
                "WHERE sent_s IS NULL OR sent_s <= ? "
                "ORDER BY sent_s IS NOT NULL, created_s, seq LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        return [SpooledResult(r[0], r[1], r[2], bytes(r[3]), int(r[4]), str(r[5]))
                for r in rows]

    def pending(self) -> list[SpooledResult]:
        """Every result still waiting for its receipt: never sent first, each group oldest first."""
        return self.due(resend_after_s=-1e12, limit=1 << 30)

    def mark_sent(self, run_ids: Iterable[str]) -> None:
        now = self._clock_s()
        rows = [(now, r) for r in run_ids]
        self._write_making_room("marking results sent", lambda db: db.executemany(
            "UPDATE results SET sent_s = ?, attempts = attempts + 1 WHERE run_id = ?", rows))

    def confirm(self, run_ids: Iterable[str]) -> int:
        """The collector stored these: forget them. Returns how many were here."""
        rows = [(str(r),) for r in run_ids]

        def body(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany("DELETE FROM results WHERE run_id = ?", rows)
            return db.total_changes - before

        return self._write_making_room("forgetting receipted results", body)

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def destinations(self) -> set[tuple[str, str]]:
        """The (fleet, device_id) pairs that have results waiting (their receipt topics)."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT fleet, device_id FROM results").fetchall()
        return {(r[0], r[1]) for r in rows}

    # -- the earlier outbox ---------------------------------------------------------------------

    def import_outbox(self, folder: Path) -> int:
        """Move the results of an outbox folder (the earlier layout) into the spool, once.

        Each imported file is deleted after it is in the spool; a file that is not a valid
        result is renamed ``*.bad`` and left there. The old ``seq`` counter beside the folder is
        carried over so that sequence numbers keep growing.
        """
        folder = Path(folder).expanduser()
        imported = 0
        seq_file = folder.parent / "seq"
        with contextlib.suppress(OSError, ValueError):
            old_seq = int(seq_file.read_text().strip() or "0")
            if old_seq > self.counter("seq"):
                self._increment("seq", old_seq - self.counter("seq"))
            seq_file.rename(seq_file.with_suffix(".imported"))
        if not folder.is_dir():
            return 0
        for path in sorted(folder.glob("*.json")):
            try:
                result = BenchmarkResult.model_validate_json(path.read_bytes())
            except (OSError, ValueError):
                logger.warning("outbox file %s is not a valid result; renamed .bad", path)
                with contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".bad"))
                continue
            self.put(result)
            path.unlink()
            imported += 1
        if imported:
            logger.info("imported %d result(s) from the outbox %s into the spool %s",
                        imported, folder, self.path)
        return imported

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _write_making_room(self, what: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body`` in a write transaction; on a full disk, once more with the reserve's room.

        Raises :class:`SpoolError` (saying where the spool is) when it cannot be written.
        """
        try:
            with self._write() as db:
                return body(db)
        except sqlite3.Error as err:
            if "full" not in str(err).lower():
                raise SpoolError(f"cannot write the spool at {self.path} ({what}): {err}") from err
        self._reserve.unlink(missing_ok=True)
        try:
            self._checkpoint()
            with self._write() as db:
                return body(db)
        except sqlite3.Error as err:
            raise SpoolError(f"the disk holding the spool {self.path} is full ({what} failed): "
                             "free space there") from err
        finally:
            self._make_reserve()

    def _cap_file(self) -> None:
        """Keep the database file at its size: later results take the pages of dropped ones
        (an insert that needs more is a full-disk event at once), so the file never grows
        into the reserve's room again."""
        with self._lock:
            pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
            self._db.execute(f"PRAGMA max_page_count = {pages}")
        self._capped = True

    def _lift_cap_when_room(self) -> None:
        """The disk has room again (more than the reserve and the WAL's room, twice): let the
        database file grow again."""
        disk = os.statvfs(self.path.parent)
        if disk.f_bavail * disk.f_frsize > 2 * (self.reserve_bytes + WAL_ROOM_BYTES):
            with self._lock:
                self._db.execute(f"PRAGMA max_page_count = {UNCAPPED_PAGES}")
            self._capped = False
            logger.info("spool %s: the disk has room again", self.path)

    def _checkpoint(self) -> None:
        """The WAL's pages into the database file, and the WAL's own space back to the disk."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _make_reserve(self) -> None:
        """(Re)make the reserve file as far as the disk allows, leaving the WAL room to grow to
        its checkpoint (a reserve that took that room would make every next write a full-disk
        event, each dropping results); see the module docstring."""
        try:
            have = self._reserve.stat().st_size if self._reserve.exists() else 0
            disk = os.statvfs(self._reserve.parent)
            want = min(self.reserve_bytes, have + disk.f_bavail * disk.f_frsize - WAL_ROOM_BYTES)
            if want > have:
                with self._reserve.open("ab") as out:
                    out.write(b"\0" * (want - have))
        except OSError as err:
            logger.debug("spool reserve %s not made: %s", self._reserve, err)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite ends it itself on SQLITE_FULL
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _enforce_cap(self, db: sqlite3.Connection, keep: str) -> None:
        total = int(db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM results").fetchone()[0])
        if total > self.max_bytes:
            self._drop_oldest(db, total - self.max_bytes, keep=keep)

    def _drop_oldest(self, db: sqlite3.Connection, bytes_to_free: int, keep: str) -> None:
        freed = dropped = 0
        for run_id, size in db.execute(
            "SELECT run_id, size_bytes FROM results WHERE run_id != ? ORDER BY created_s, seq",
            (keep,),
        ).fetchall():
            if freed >= bytes_to_free:
                break
            db.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
            freed += int(size)
            dropped += 1
        if dropped:
            db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) ON CONFLICT (name) "
                       "DO UPDATE SET value = value + excluded.value", (dropped,))
            logger.warning("spool %s: dropped the %d oldest result(s) to make room (size limit "
                           "or full disk; dropped_total counts them)", self.path, dropped)
