"""The daemon's job book and ack outbox, on disk: what survives a crash, a kill -9 or a reboot.

Two tables in the spool's SQLite file (``spool.db``, beside the results):

- ``jobs``: every job accepted, with its last state (``accepted``, ``running``, ``done``,
  ``failed``, ``cancelled``). A job written ``accepted`` or ``running`` that the daemon finds at
  start was interrupted by a crash: :meth:`JobLedger.interrupted` lists them and the daemon reports
  each ``failed`` ("agent restarted during the job") before it takes a new one. The table also
  tells a command delivered twice from a new one.
- ``job_acks``: the outbox of acks, in the order they were made. :meth:`JobLedger.next_ack` gives
  the oldest not yet acknowledged by the broker; :meth:`JobLedger.published` forgets a non-final
  ack once the broker has it, and keeps a final one (``done``, ``failed``, ``cancelled``) until a
  :class:`shared.messages.Receipt` names its job (:meth:`JobLedger.confirm`): after every
  reconnect :meth:`JobLedger.reannounce` queues the unconfirmed final acks again, so a final state
  the broker lost after its PUBACK still reaches the collector.

Not thread-safe on purpose: the daemon's loop thread is its only user (:mod:`agent.daemon.service`).
Write errors (a full disk) raise :class:`agent.errors.SpoolError` with the path.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SpoolError
from shared.messages import JobCommand

FINAL_STATES = frozenset({"done", "failed", "cancelled"})
OPEN_STATES = ("accepted", "running")
MAX_REMEMBERED_JOBS = 1000
"""Finished jobs remembered (to run a command delivered twice once); older ones are forgotten."""
MAX_UNCONFIRMED_FINALS = 1000
"""Final acks kept for their receipt; past this the oldest are given up (a collector that never
sends job receipts must not make every reconnect re-send the whole history)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    command BLOB NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    run_id TEXT,
    updated_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_acks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    payload BLOB NOT NULL,
    final INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS job_acks_job ON job_acks (job_id);
"""


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    state: str
    reason: str | None
    run_id: str | None


@dataclass(frozen=True)
class PendingAck:
    id: int
    job_id: str
    state: str
    payload: bytes
    final: bool


class JobLedger:
    """Jobs and their acks in ``path`` (the spool's database file); see the module docstring."""

    def __init__(self, path: Path, *, clock_s: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self._clock_s = clock_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise SpoolError(f"cannot open the job ledger in {self.path}: {err}; check the folder "
                             "is writable by this user ([spool] path)") from err

    # -- jobs -----------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT job_id, state, reason, run_id FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()
        return JobRecord(*row) if row else None

    def interrupted(self) -> list[str]:
        """Jobs accepted or running when the daemon last stopped without finishing them."""
        rows = self._db.execute(
            "SELECT job_id FROM jobs WHERE state IN (?, ?) ORDER BY updated_s, rowid", OPEN_STATES,
        ).fetchall()
        return [r[0] for r in rows]

    def record(self, job: JobCommand | str, state: str, ack: bytes, *, reason: str | None = None,
               run_id: str | None = None) -> None:
        """The job's new ``state`` and its ack, in one transaction (a job given as a command is
        written whole: the first state, ``accepted``)."""
        now = self._clock_s()

        def body(db: sqlite3.Connection) -> None:
            if isinstance(job, JobCommand):
                db.execute("INSERT OR REPLACE INTO jobs (job_id, command, state, reason, run_id, "
                           "updated_s) VALUES (?, ?, ?, ?, ?, ?)",
                           (job.job_id, job.model_dump_json().encode(), state, reason, run_id, now))
                job_id = job.job_id
            else:
                job_id = job
                db.execute("UPDATE jobs SET state = ?, reason = ?, run_id = COALESCE(?, run_id), "
                           "updated_s = ? WHERE job_id = ?", (state, reason, run_id, now, job_id))
            db.execute("INSERT INTO job_acks (job_id, state, payload, final) VALUES (?, ?, ?, ?)",
                       (job_id, state, ack, int(state in FINAL_STATES)))
            if state in FINAL_STATES:
                db.execute("DELETE FROM job_acks WHERE final = 1 AND published = 1 AND id NOT IN "
                           "(SELECT id FROM job_acks WHERE final = 1 ORDER BY id DESC LIMIT ?)",
                           (MAX_UNCONFIRMED_FINALS,))

        self._write(f"recording job {job if isinstance(job, str) else job.job_id} {state}", body)

    def add_ack(self, job_id: str, state: str, ack: bytes) -> None:
        """An ack for a job this ledger does not keep (``rejected``), or one said again."""
        self._write("queueing an ack", lambda db: db.execute(
            "INSERT INTO job_acks (job_id, state, payload, final) VALUES (?, ?, ?, ?)",
            (job_id, state, ack, int(state in FINAL_STATES))))

    # -- the outbox -----------------------------------------------------------------------------

    def next_ack(self) -> PendingAck | None:
        """The oldest ack the broker has not acknowledged yet."""
        row = self._db.execute("SELECT id, job_id, state, payload, final FROM job_acks "
                               "WHERE published = 0 ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return PendingAck(int(row[0]), row[1], row[2], bytes(row[3]), bool(row[4]))

    def published(self, ack: PendingAck) -> None:
        """The broker acknowledged ``ack``: forget it, or keep a final one for its receipt."""
        if ack.final:
            self._write("marking an ack sent", lambda db: db.execute(
                "UPDATE job_acks SET published = 1 WHERE id = ?", (ack.id,)))
        else:
            self._write("forgetting a sent ack", lambda db: db.execute(
                "DELETE FROM job_acks WHERE id = ?", (ack.id,)))

    def reannounce(self, job_id: str | None = None) -> int:
        """Queue the unconfirmed final acks again (of one job, or all); returns how many."""
        where, args = ("AND job_id = ?", (job_id,)) if job_id is not None else ("", ())

        def body(db: sqlite3.Connection) -> int:
            return db.execute(f"UPDATE job_acks SET published = 0 WHERE final = 1 AND "
                              f"published = 1 {where}", args).rowcount

        return self._write("re-announcing final acks", body)

    def has_final_ack(self, job_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM job_acks WHERE job_id = ? AND final = 1",
                                (job_id,)).fetchone() is not None

    def confirm(self, job_ids: Iterable[str]) -> int:
        """The collector stored these jobs' final acks: forget them. Returns how many."""
        rows = [(j,) for j in job_ids]
        if not rows:
            return 0

        def body(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany("DELETE FROM job_acks WHERE final = 1 AND job_id = ?", rows)
            done = db.total_changes - before
            db.execute(
                "DELETE FROM jobs WHERE state NOT IN (?, ?) AND job_id NOT IN "
                "(SELECT job_id FROM job_acks) AND job_id NOT IN (SELECT job_id FROM jobs "
                "ORDER BY updated_s DESC LIMIT ?)", (*OPEN_STATES, MAX_REMEMBERED_JOBS))
            return done

        return self._write("forgetting confirmed acks", body)

    def unconfirmed(self) -> int:
        """Final acks waiting for their receipt."""
        return int(self._db.execute("SELECT COUNT(*) FROM job_acks WHERE final = 1").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def _write(self, what: str, body: Callable[[sqlite3.Connection], object]) -> int:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = body(self._db)
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            raise SpoolError(f"cannot write the job ledger in {self.path} ({what}): {err}") from err
        return result if isinstance(result, int) else 0
