"""The collector's inbox: the bounded queue between the broker connection and the writer, and the
receive window that keeps it bounded.

::

    inbox = Inbox(window=1000, source="mqtt://broker:1883")
    inbox.put(item)                    # network thread; blocks while the window is full
    batch = inbox.take(200)            # writer thread: what is queued, at once; None when closed
    inbox.finish(len(batch))           # committer thread: the batch is stored (or given up)

Receive window. A message counts against the window from :meth:`Inbox.put` until
:meth:`Inbox.finish`: queued, being parsed, or being stored. While ``window`` messages are held,
:meth:`Inbox.put` does not return, so the network thread reads no more from the socket and TCP
pushes back on the broker. A broker that keeps the MQTT v5 Receive Maximum (the same number, asked
for at connect) never fills it; Mosquitto 2.0.11 sends its whole queue once acks start flowing, so
the collector keeps the bound itself. Memory stays bounded by the window at any rate.

Batches. :meth:`Inbox.take` returns whatever is queued, up to its limit, without waiting to fill
it: at a low rate each message goes to the store at once, and under load batches grow by
themselves (the queue fills while the writer works).

Closing. After :meth:`Inbox.close`, :meth:`Inbox.put` refuses new messages (returns False: they
stay unacknowledged with the broker for the next session) and :meth:`Inbox.take` returns what is
left, then ``None``.

Ownership. The inbox owns its queue, the in-flight count, the closed flag and the ``received``
counter, all behind one lock (with three conditions on it). It is written by the network thread
(:meth:`put`, :meth:`note_unqueued`), the writer thread (:meth:`take`), the committer thread
(:meth:`finish`) and whoever stops the service (:meth:`close`); read from any thread
(:attr:`depth`, :attr:`received`, :meth:`wait_idle`). An :class:`Item` belongs to one thread at a
time: it is handed on through the inbox or a queue, never shared.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from collector.ingest import Message, Rejection
from shared.schema import BenchmarkResult

logger = logging.getLogger(__name__)

__all__ = ["Delivery", "Inbox", "Item"]

WAIT_SLICE_S = 1.0
"""How long a blocked :meth:`Inbox.put` or :meth:`Inbox.take` sleeps before looking again."""


@dataclass(frozen=True)
class Delivery:
    """What acknowledging a message takes: the connection it came on, its id and its QoS.

    Message ids belong to one connection: ``connection`` counts (re)connections, and a message is
    acknowledged only on the connection it arrived on."""

    connection: int
    mid: int
    qos: int


@dataclass
class Item:
    """One message on its way to the store: its model, or why it is a dead letter."""

    topic: str
    payload: bytes
    delivery: Delivery
    received_at: datetime
    outcome: Message | Rejection | None = None
    """``None`` until the writer has read it (:func:`collector.ingest.read`)."""

    @property
    def label(self) -> str:
        """What the message is, for a log line."""
        out = self.outcome
        if isinstance(out, BenchmarkResult):
            return f"run_id {out.run_id}"
        return f"dead letter on {self.topic}" if isinstance(out, Rejection) else self.topic


class Inbox:
    """A bounded queue of received messages with a receive window; see the module docstring."""

    def __init__(self, window: int, *, source: str = "the broker") -> None:
        """``window``: messages held at most (received and not finished); ``source`` names the
        broker in the one log line said when it sends past the window."""
        if window < 1:
            raise ValueError(f"the receive window must be at least 1, not {window}")
        self.window = window
        self.source = source
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue: collections.deque[Item] = collections.deque()
        self._in_flight = 0
        self._closed = False
        self._received = 0
        self._warned_window = False

    # -- network thread ------------------------------------------------------------------------

    def put(self, item: Item) -> bool:
        """Queue ``item``; then, while the window is full, wait for room. False (not queued) once
        closed: the message stays unacknowledged with the broker."""
        with self._lock:
            if self._closed:
                return False
            self._queue.append(item)
            self._received += 1
            self._has_items.notify()
            if len(self._queue) + self._in_flight >= self.window:
                self._hold_back()
        return True

    def note_unqueued(self) -> None:
        """Count a message received that needs no storing (``progress``)."""
        with self._lock:
            self._received += 1

    def _hold_back(self) -> None:
        """With the lock held: read no more (do not return) until the writer frees room."""
        if not self._warned_window:
            self._warned_window = True
            logger.info("broker %s sends more than the receive maximum (%d) unacknowledged "
                        "messages; reading no more until some are stored", self.source,
                        self.window)
        while len(self._queue) + self._in_flight >= self.window and not self._closed:
            self._space.wait(WAIT_SLICE_S)

    # -- writer and committer threads ----------------------------------------------------------

    def take(self, limit: int) -> list[Item] | None:
        """What is queued, up to ``limit``, as soon as there is anything; ``None`` once closed
        and drained. The items count as in flight until :meth:`finish`."""
        with self._lock:
            while not self._queue:
                if self._closed:
                    return None
                self._has_items.wait(WAIT_SLICE_S)
            count = min(len(self._queue), limit)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight += count
            return batch

    def finish(self, count: int) -> None:
        """``count`` messages taken earlier are done with (stored, or left to the broker)."""
        with self._lock:
            self._in_flight -= count
            self._space.notify_all()
            if not self._queue and not self._in_flight:
                self._idle.notify_all()

    # -- any thread ----------------------------------------------------------------------------

    def open(self) -> None:
        """Take messages again (a service started after a stop)."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """Refuse new messages; :meth:`take` drains what is queued, then returns ``None``."""
        with self._lock:
            self._closed = True
            self._has_items.notify_all()
            self._space.notify_all()

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    @property
    def depth(self) -> int:
        """Messages held: received and not yet finished (queued or in flight)."""
        with self._lock:
            return len(self._queue) + self._in_flight

    @property
    def received(self) -> int:
        """Messages received since the inbox was made, queued or not."""
        with self._lock:
            return self._received

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every message put so far is finished; False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True
