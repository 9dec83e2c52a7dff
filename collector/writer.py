"""The collector's writer: takes batches from the inbox, parses them, stores them, retries while the
store fails, and only then has them receipted and acknowledged.

::

    writer = Writer(store, inbox, acker=intake, listener=announcer)
    writer.start()          # two threads: collector-writer (parse), collector-committer (store)
    ...
    inbox.close(); writer.stop()    # drains what the inbox holds, then returns

Pipeline. The ``collector-writer`` thread takes what the inbox holds (up to ``batch_size``) and
parses it (:func:`collector.ingest.read`, one ``model_validate_json`` per message), then hands the
batch to the ``collector-committer`` thread through a queue of one, so the database's time
overlaps the next batch's parsing. The committer stores a batch in this order:

1. every result of the batch in one transaction (each run_id once: a duplicate is not stored
   again, and is counted);
2. every monitor window (:mod:`shared.monitoring`) in one transaction (each ``window_id`` once);
3. every telemetry message in one transaction (``record_telemetry_batch``, which also keeps the
   telemetry history; a store without it gets ``record_telemetry`` per message);
4. then each status, job ack and dead letter in turn (anything that can never be stored is a
   dead letter; a valid message never is);
5. then it tells the listener what is committed (:meth:`WriterListener.committed`: metrics,
   receipts naming every run_id and window_id of the batch, duplicates included, and every job
   whose final ack, ``done``/``failed``/``cancelled``, is now in the store; events);
6. then acknowledges those messages (:meth:`Acker.ack`). Receipts and acks only ever follow the
   commit.

Store outages. A store error (:class:`collector.errors.StoreError`) is the store's problem, never
the message's: what is not stored yet is kept, not acknowledged, and retried after
``retry_interval_s``, doubling up to ``retry_max_interval_s``, for as long as it takes. Meanwhile
the writer takes no new messages, so the inbox fills to its receive window and the broker stops
sending. The outage is logged once when it starts (ERROR) and once when it ends (WARNING), and the
listener is told of both (:meth:`WriterListener.outage_changed`: the collector's status and the
outage gauge). Retries wait on the injected clock, so tests move time instead of sleeping. When
the service stops during an outage, a batch gets one last try, then is left unacknowledged: the
broker delivers it again to the next session.

Ownership. The store is written on the committer thread only. The outage state (since when, the
last error) and the counters (``stored``, ``duplicates``, ``dead_letters``, ``store_errors``,
``retry_pending``) are written on the committer thread under the writer's lock and read through
:meth:`Writer.outage` and :attr:`Writer.stats` from any thread. Batches pass between the two
threads through the hand-off queue only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol, cast

from collector.errors import StoreError
from collector.health import Backoff
from collector.inbox import Delivery, Inbox, Item
from collector.ingest import Rejection, read
from collector.stores.base import Store
from shared.messages import JobAck, Status, Telemetry
from shared.monitoring import MonitorWindow
from shared.payload import unpack
from shared.redact import redact_url
from shared.schema import BenchmarkResult
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = ["FINAL_JOB_STATES", "STAT_KEYS", "Acker", "Committed", "Outage", "Writer",
           "WriterListener"]

FINAL_JOB_STATES = frozenset({"done", "failed", "cancelled"})
"""Job states an agent keeps announcing until a receipt names the job."""
RETRY_POLL_S = 0.1
"""How often the committer looks at the clock while a retry waits (a test's clock jumps)."""
STAT_KEYS = ("stored", "duplicates", "dead_letters", "store_errors", "retry_pending")
Record = Status | Telemetry | JobAck
Clock = Callable[[], float]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Outage:
    """The store's state as the writer last saw it."""

    down: bool
    """True while the store refuses writes."""
    since: datetime
    """When the current state (storing, or down) began."""
    error: str = ""
    """The store's last error while down."""


@dataclass
class Committed:
    """What one pass over a batch has put in the store."""

    stored_at: datetime
    results: list[BenchmarkResult] = field(default_factory=list)
    """Every result of the batch, duplicates included, in order."""
    new: int = 0
    """How many of ``results`` the store did not have."""
    commit_s: float = 0.0
    """Seconds the results' transaction took."""
    final_acks: list[JobAck] = field(default_factory=list)
    """Final job acks (``done``, ``failed``, ``cancelled``) now in the store."""
    windows: list[MonitorWindow] = field(default_factory=list)
    """Every monitor window of the batch, duplicates included, in order."""


class Acker(Protocol):
    """Acknowledges messages to the broker (:class:`collector.intake.Intake`)."""

    def ack(self, deliveries: Sequence[Delivery]) -> None: ...


class WriterListener(Protocol):
    """Told what the writer did, on the committer thread (:class:`collector.announcer.Announcer`).
    Its methods must not raise for reasons of their own (a failed publish is theirs to handle)."""

    def committed(self, batch: Committed) -> None:
        """Results and final job acks are committed (before they are acknowledged)."""

    def recorded(self, message: Record) -> None:
        """A status, telemetry or job ack is committed."""

    def dead_lettered(self, topic: str, rejection: Rejection) -> None:
        """A message that can never be stored is kept as a dead letter."""

    def store_retried(self) -> None:
        """A write is tried again after a store failure."""

    def outage_changed(self) -> None:
        """An outage began or ended (:meth:`Writer.outage` says which)."""


class Writer:
    """Parses and stores what the inbox holds; see the module docstring."""

    def __init__(
        self,
        store: Store,
        inbox: Inbox,
        *,
        acker: Acker,
        listener: WriterListener,
        batch_size: int = 200,
        retry_interval_s: float = 1.0,
        retry_max_interval_s: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.store = store
        self.inbox = inbox
        self.batch_size = batch_size
        self.retry_interval_s = retry_interval_s
        self.retry_max_interval_s = retry_max_interval_s
        self._acker = acker
        self._listener = listener
        self._clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._outage = Outage(down=False, since=_utc_now())
        self._outage_started_s = 0.0  # on the clock; committer thread only

    # -- any thread ----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the writer was made, and ``retry_pending`` (messages waiting to be
        retried now)."""
        with self._lock:
            return dict(self._stats)

    def outage(self) -> Outage:
        """The store's state now."""
        with self._lock:
            return self._outage

    def start(self) -> None:
        """Start the writer and committer threads (a no-op while they run)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run_parser, name="collector-writer",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Store what the inbox still holds (close the inbox first), giving a failing store one
        last try per batch; False when the threads did not end within ``timeout_s``."""
        thread, self._thread = self._thread, None
        self._stopping.set()
        if thread is None:
            return True
        thread.join(timeout_s)
        if thread.is_alive():
            logger.error("collector writer did not finish within %.0f s", timeout_s)
            return False
        return True

    # -- writer thread -------------------------------------------------------------------------

    def _run_parser(self) -> None:
        handoff: queue.Queue[list[Item] | None] = queue.Queue(maxsize=1)
        committer = threading.Thread(target=self._run_committer, args=(handoff,),
                                     name="collector-committer", daemon=True)
        committer.start()
        try:
            while (batch := self.inbox.take(self.batch_size)) is not None:
                for item in batch:
                    item.outcome = read(item.topic, item.payload)  # never raises
                handoff.put(batch)
        finally:
            handoff.put(None)
            committer.join()

    # -- committer thread ----------------------------------------------------------------------

    def _run_committer(self, handoff: queue.Queue[list[Item] | None]) -> None:
        backoff = Backoff(self.retry_interval_s, self.retry_max_interval_s)
        while (batch := handoff.get()) is not None:
            try:
                self.write_until_done(batch, backoff)
            except Exception:  # the one catch-all: see below
                # Store errors are handled in write_until_done; anything else is a bug (here,
                # in the store, or in a listener). The thread must outlive it, or ingest stops
                # for good: the batch is logged and left unacknowledged, so the broker delivers
                # it again on the next connection.
                logger.exception("collector writer failed on a batch of %d messages; left "
                                 "unacknowledged", len(batch))
            with self._lock:
                self._stats["retry_pending"] = 0
            self.inbox.finish(len(batch))

    def write_until_done(self, batch: list[Item], backoff: Backoff) -> None:
        """Write ``batch``; while the store fails, keep it and retry with backoff, for ever
        (until the writer stops: then it gets one last try and is left unacknowledged)."""
        pending = self.write(batch)
        while pending:
            with self._lock:
                self._stats["retry_pending"] = len(pending)
            if self._stopping.is_set():
                pending = self.write(pending)  # one last try
                for item in pending:
                    logger.warning("collector stopping: %s is not stored; left unacknowledged, "
                                   "so the broker delivers it again to the next session",
                                   item.label)
                if pending:
                    return
                break
            self._wait(backoff.next_s())
            if self._stopping.is_set():
                continue  # to the last try
            self._listener.store_retried()
            pending = self.write(pending)
        backoff.reset()
        self._outage_over()

    def _wait(self, delay_s: float) -> None:
        """Wait ``delay_s`` on the injected clock; returns early when the writer stops."""
        due_s = self._clock() + delay_s
        while not self._stopping.is_set():
            remaining_s = due_s - self._clock()
            if remaining_s <= 0:
                return
            self._stopping.wait(min(remaining_s, RETRY_POLL_S))

    def write(self, items: list[Item]) -> list[Item]:
        """Store what ``items`` hold, then have what is committed receipted and acknowledged;
        returns the items not stored (the store failed), in order."""
        for item in items:
            if item.outcome is None:
                item.outcome = read(item.topic, item.payload)
        results = [i for i in items if isinstance(i.outcome, BenchmarkResult)]
        windows = [i for i in items if isinstance(i.outcome, MonitorWindow)]
        telemetry = [i for i in items if isinstance(i.outcome, Telemetry)]
        others = [i for i in items
                  if not isinstance(i.outcome, (BenchmarkResult, MonitorWindow, Telemetry))]
        done = Committed(stored_at=_utc_now())
        if results and not self._store_results(results, done):
            return items
        stored: list[Item] = list(results)
        pending: list[Item] = []
        if windows and not self._store_windows(windows, done):
            pending = windows + telemetry + others
        elif telemetry and not self._store_telemetry(telemetry):
            stored += windows
            pending = telemetry + others
        else:
            stored += windows + telemetry
            for n, item in enumerate(others):
                if not self._store_other(item, done):
                    pending = others[n:]
                    break
                stored.append(item)
        if done.results or done.final_acks or done.windows:
            self._listener.committed(done)
        if stored:
            self._acker.ack([item.delivery for item in stored])
        return pending

    def _store_results(self, items: list[Item], done: Committed) -> bool:
        """One transaction for every result of ``items``."""
        results = [cast(BenchmarkResult, i.outcome) for i in items]
        started = time.perf_counter()
        try:
            new = self.store.add_results(results, topics=[i.topic for i in items],
                                         payloads=[unpack(i.payload) for i in items])  # JSON
        except StoreError as err:  # keep the messages, retry
            self._store_failed(f"storing {len(items)} results", err)
            return False
        done.commit_s = time.perf_counter() - started
        done.stored_at = _utc_now()
        done.results = results
        done.new = new
        with self._lock:
            self._stats["stored"] += new
            self._stats["duplicates"] += len(results) - new
        return True

    def _store_windows(self, items: list[Item], done: Committed) -> bool:
        """One transaction for every monitor window of ``items`` (each ``window_id`` once)."""
        windows = [cast(MonitorWindow, i.outcome) for i in items]
        try:
            self.store.add_windows(windows, payloads=[unpack(i.payload) for i in items])
        except StoreError as err:  # keep the messages, retry
            self._store_failed(f"storing {len(items)} monitor windows", err)
            return False
        done.windows = windows
        return True

    def _store_telemetry(self, items: list[Item]) -> bool:
        """One transaction for every telemetry message of ``items`` (each also into the history)."""
        batch = [(cast(Telemetry, i.outcome), i.received_at) for i in items]
        try:
            record_batch = getattr(self.store, "record_telemetry_batch", None)
            if record_batch is not None:  # the SQL store: one transaction
                record_batch(batch)
            else:  # a store with only the Store protocol's record_telemetry
                for message, received_at in batch:
                    self.store.record_telemetry(message, received_at)
        except StoreError as err:  # keep the messages, retry
            self._store_failed(f"storing {len(items)} telemetry messages", err)
            return False
        for message, _ in batch:
            self._listener.recorded(message)
        return True

    def _store_other(self, item: Item, done: Committed) -> bool:
        """A status, telemetry, job ack or dead letter."""
        out = item.outcome
        try:
            if isinstance(out, Rejection):
                address = Topics.parse(item.topic)
                self.store.add_dead_letter(
                    item.topic, out.reason, item.payload,
                    device_id=address.device_id if address is not None else None,
                    # agents publish status retained: the broker hands a bad one out again on
                    # every subscribe, which the store must not count as a new occurrence
                    retained=address is not None and address.kind is TopicKind.STATUS,
                )
            elif isinstance(out, Status):
                self.store.record_status(out, item.received_at)
            elif isinstance(out, Telemetry):
                self.store.record_telemetry(out, item.received_at)
            elif isinstance(out, JobAck):
                self.store.record_ack(out, item.received_at)
        except StoreError as err:  # keep the message, retry
            self._store_failed(f"storing {item.label}", err)
            return False
        if isinstance(out, Rejection):
            with self._lock:
                self._stats["dead_letters"] += 1
            self._listener.dead_lettered(item.topic, out)
        elif isinstance(out, (Status, Telemetry, JobAck)):
            if isinstance(out, JobAck) and out.state in FINAL_JOB_STATES:
                done.final_acks.append(out)
            self._listener.recorded(out)
        return True

    def _store_failed(self, what: str, err: StoreError) -> None:
        with self._lock:
            self._stats["store_errors"] += 1
            started = not self._outage.down
            self._outage = Outage(down=True, since=_utc_now() if started else self._outage.since,
                                  error=str(err))
        if not started:
            logger.debug("store still failing (%s) while %s", err, what)
            return
        self._outage_started_s = self._clock()
        logger.error("store %s failed (%s) while %s: keeping the messages unacknowledged and "
                     "retrying every %.0f-%.0f s until it works", redact_url(self.store.url),
                     err, what, self.retry_interval_s, self.retry_max_interval_s)
        self._listener.outage_changed()

    def _outage_over(self) -> None:
        with self._lock:
            if not self._outage.down:
                return
            self._outage = Outage(down=False, since=_utc_now())
        logger.warning("store %s works again after %.0f s; storing the backlog",
                       redact_url(self.store.url), self._clock() - self._outage_started_s)
        self._listener.outage_changed()
