"""A tiny in-process publish/subscribe bus: the collector's live events for the dashboard.

::

    bus = EventBus()
    with bus.subscribe() as events:          # a Subscription: iterate, or call get()
        for event in events:                 # blocks; Event(kind, data, seq)
            send(event.kind, event.data)

* :meth:`EventBus.publish` never blocks and never fails: each subscriber has its own bounded
  queue, and a full queue drops its **oldest** event (counted in :attr:`Subscription.dropped`), so a
  slow reader loses history, never slows the publisher (the collector's ingest).
* Events carry a ``seq`` that grows by one per published event on the bus (a Server-Sent Events
  ``id``); a reader that sees a gap knows it lost events.
* ``data`` is a JSON-ready dict. Kinds the collector publishes: ``status``, ``telemetry``,
  ``progress``, ``ack`` (each the wire message as JSON) and ``result`` (a summary: ``run_id``,
  ``fleet``, ``device_id``, ``model``, ``p50_ms``, ``throughput_sps``, ``watts``).
* :attr:`EventBus.active` is False while nobody listens, so a publisher can skip building data.
* ``subscribe(on_event=f)``: ``f()`` is called (on the publisher's thread, after the event is
  queued) for each event, so an asyncio reader can wake without a thread of its own.

Thread-safe; no threads of its own.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_QUEUE_EVENTS", "Event", "EventBus", "Subscription"]

DEFAULT_QUEUE_EVENTS = 1000
"""Events a subscriber may fall behind by before the oldest are dropped."""


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    seq: int


class Subscription:
    """One reader's bounded queue. Iterate (blocking) or :meth:`get`; :meth:`close` when done."""

    def __init__(self, bus: EventBus, maxlen: int,
                 on_event: Callable[[], None] | None = None) -> None:
        self._bus = bus
        self._on_event = on_event
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0
        """Events lost because this reader fell more than its queue behind."""

    def _put(self, event: Event) -> None:
        with self._ready:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1  # the deque drops the oldest itself
            self._events.append(event)
            self._ready.notify()
        if self._on_event is not None:
            self._on_event()

    def get(self, timeout_s: float | None = None) -> Event | None:
        """The next event; ``None`` after ``timeout_s`` without one, or once closed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._ready:
            while not self._events:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._ready.wait(remaining)
            return self._events.popleft()

    def close(self) -> None:
        """Stop receiving; a reader blocked in :meth:`get` or a ``for`` loop returns."""
        self._bus._remove(self)
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __iter__(self) -> Iterator[Event]:
        while (event := self.get()) is not None:
            yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to subscribers; see the module docstring."""

    def __init__(self, queue_events: int = DEFAULT_QUEUE_EVENTS) -> None:
        self.queue_events = queue_events
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscription, ...] = ()
        self._seq = itertools.count(1)

    @property
    def active(self) -> bool:
        """True while at least one subscriber listens."""
        return bool(self._subscribers)

    def subscribe(self, queue_events: int | None = None,
                  on_event: Callable[[], None] | None = None) -> Subscription:
        """A new reader that receives every event published from now on; ``on_event`` (which
        must not block) is called after each event is queued for it."""
        sub = Subscription(self, queue_events or self.queue_events, on_event)
        with self._lock:
            self._subscribers = (*self._subscribers, sub)
        return sub

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Hand ``data`` to every subscriber; never blocks (a full queue drops its oldest)."""
        with self._lock:
            event = Event(kind, data, next(self._seq))
            subscribers = self._subscribers
        for sub in subscribers:
            sub._put(event)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)
