"""``GET /api/events``: the collector's event bus as Server-Sent Events.

Each event is ``id: <bus seq>``, ``event: <kind>`` (``status``, ``telemetry``, ``progress``,
``ack``, ``result``, ``monitor``, ``alert``) and ``data: <one line of JSON>``; a gap in the ids
means this client fell more than the bus's queue behind and lost events (the bus drops them for
this client alone: ingest never waits for a reader). A comment line (``: heartbeat``) goes out every
:data:`HEARTBEAT_S` seconds so proxies keep the connection and the browser sees it alive. The
stream starts with ``retry: 2000`` (reconnect after 2 s) and ends when the client goes away or the
server stops.

Readers cost no thread and the bus one subscription, whatever their number: an
:class:`EventHub` (one per app, on the server's event loop) subscribes to the bus, the bus's
publisher (any thread) wakes it through ``loop.call_soon_threadsafe`` when its queue goes from
empty to not empty (:class:`Wakeup`), and the hub formats each event once and appends it to every
reader's bounded queue (the oldest dropped when a reader falls behind, as the bus does). Each
reader is an async generator sleeping on its own :class:`asyncio.Event`. At most ``[http]
max_event_readers`` streams are open at once (:class:`ReaderSlots`); one more is answered 503
with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from collector.events import Event, EventBus, Subscription

__all__ = ["BATCH_EVENTS", "HEARTBEAT_S", "POLL_S", "RETRY_AFTER_S", "EventHub", "ReaderSlots",
           "Wakeup", "format_event", "router"]

HEARTBEAT_S = 15.0
POLL_S = 0.5
"""Longest sleep before checking whether the server stops."""
BATCH_EVENTS = 500
"""Events sent in one write at most."""
COALESCE_S = 0.05
"""How long the hub lets events gather after the first before it hands them to the readers."""
RETRY_AFTER_S = 10
"""What a reader refused for want of a slot is told to wait."""

router = APIRouter()


def format_event(kind: str, data: dict[str, object], seq: int) -> bytes:
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {kind}\ndata: {body}\n\n".encode()


class ReaderSlots:
    """How many event streams are open, at most ``limit``. Used on the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


class Wakeup:
    """Runs ``callback`` on the loop from the bus's publishing thread, once per empty -> ready.

    The bus calls :meth:`__call__` after each event it queues; only the first since the hub last
    drained crosses threads (``call_soon_threadsafe`` writes to the loop's self-pipe: one write
    per event would tax ingest), and the callback runs :data:`COALESCE_S` later, so the events of
    a busy moment go to each reader in one write.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._pending = False

    def __call__(self) -> None:  # the publisher's thread
        if not self._pending:
            self._pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
                self._loop.call_soon_threadsafe(self._loop.call_later, COALESCE_S, self._callback)

    def rearm(self) -> None:
        """Before draining the queue: an event queued after this wakes the hub again."""
        self._pending = False


class _Reader:
    """One stream's queue of formatted events; filled by the hub, emptied by its generator."""

    def __init__(self, maxlen: int) -> None:
        self.queue: collections.deque[bytes] = collections.deque(maxlen=maxlen)
        self.ready = asyncio.Event()


class EventHub:
    """The bus's one subscriber for every event stream of an app; lives on the event loop."""

    def __init__(self, events: EventBus, loop: asyncio.AbstractEventLoop) -> None:
        self._events = events
        self._loop = loop
        self._readers: set[_Reader] = set()
        self._subscription: Subscription | None = None
        self._wakeup: Wakeup | None = None

    def join(self) -> _Reader:
        reader = _Reader(self._events.queue_events)
        self._readers.add(reader)
        if self._subscription is None:
            self._wakeup = Wakeup(self._loop, self._pump)
            self._subscription = self._events.subscribe(on_event=self._wakeup)
        return reader

    def leave(self, reader: _Reader) -> None:
        self._readers.discard(reader)
        if not self._readers and self._subscription is not None:
            self._subscription.close()  # nobody listens: the publisher may skip building data
            self._subscription = None

    def _pump(self) -> None:
        """On the loop: move what the bus queued to every reader, formatted once."""
        subscription, wakeup = self._subscription, self._wakeup
        if subscription is None or wakeup is None:
            return
        wakeup.rearm()
        while True:
            batch: list[Event] = []
            while len(batch) < BATCH_EVENTS and (event := subscription.get(0)) is not None:
                batch.append(event)
            if not batch:
                return
            chunk = b"".join(format_event(e.kind, e.data, e.seq) for e in batch)
            for reader in self._readers:
                reader.queue.append(chunk)
                reader.ready.set()


def hub_of(state: Any, events: EventBus) -> EventHub:
    """The app's hub, made on first use on the running loop."""
    hub: EventHub | None = getattr(state, "event_hub", None)
    if hub is None:
        hub = EventHub(events, asyncio.get_running_loop())
        state.event_hub = hub
    return hub


async def stream(hub: EventHub, stopping: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
    reader = hub.join()
    try:
        yield b"retry: 2000\n\n"
        last_sent = clock()
        while not stopping():
            reader.ready.clear()
            if reader.queue:
                pending = list(reader.queue)
                reader.queue.clear()
                yield b"".join(pending)
                last_sent = clock()
                continue
            if clock() - last_sent >= HEARTBEAT_S:
                yield b": heartbeat\n\n"
                last_sent = clock()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader.ready.wait(), POLL_S)
    finally:
        hub.leave(reader)


class _SlotStream(StreamingResponse):
    """A stream that gives its reader slot back however it ends (even before its first byte)."""

    def __init__(self, body: AsyncIterator[bytes], slots: ReaderSlots) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.give_back()


@router.get("/api/events", summary="Live events (Server-Sent Events): status, telemetry, progress, "
            "ack, result", response_class=StreamingResponse)
async def get_events(request: Request) -> Response:
    state = request.app.state
    slots: ReaderSlots = state.event_readers
    if not slots.take():
        return JSONResponse({"error": f"{slots.limit} event streams are open, the most this "
                             "collector serves ([http] max_event_readers); try again later"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    hub = hub_of(state, state.events)
    return _SlotStream(stream(hub, lambda: bool(state.stopping.is_set())), slots)
