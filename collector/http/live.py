"""``GET /api/events``: the collector's event bus as Server-Sent Events.

Each event is ``id: <bus seq>``, ``event: <kind>`` (``status``, ``telemetry``, ``progress``,
``ack``, ``result``) and ``data: <one line of JSON>``; a gap in the ids means this client fell more
than the bus's queue behind and lost events (the bus drops them for this client alone: ingest
never waits for a reader). A comment line (``: heartbeat``) goes out every
:data:`HEARTBEAT_S` seconds so proxies keep the connection and the browser sees it alive. The
stream starts with ``retry: 2000`` (reconnect after 2 s) and ends when the client goes away or the
server stops.

Readers cost no thread: each is an async generator on the server's event loop that sleeps on an
:class:`asyncio.Event`, which the bus's publisher (any thread) sets through
``loop.call_soon_threadsafe`` when a reader's queue goes from empty to not empty
(:class:`Wakeup`). At most ``[http] max_event_readers`` streams are open at once
(:class:`ReaderSlots`); one more is answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from collector.events import Event, EventBus, Subscription

__all__ = ["BATCH_EVENTS", "HEARTBEAT_S", "POLL_S", "RETRY_AFTER_S", "ReaderSlots", "Wakeup",
           "format_event", "router"]

HEARTBEAT_S = 15.0
POLL_S = 0.5
"""Longest sleep before checking whether the server stops."""
BATCH_EVENTS = 500
"""Events sent in one write at most."""
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
    """Wakes one reader's coroutine from the bus's publishing thread, once per empty -> ready.

    The bus calls :meth:`__call__` after each event it queues for this reader; only the first
    since the reader last drained its queue crosses threads (``call_soon_threadsafe`` writes to
    the loop's self-pipe: one write per event per reader would tax ingest).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.ready = asyncio.Event()
        self._pending = False

    def __call__(self) -> None:  # the publisher's thread
        if not self._pending:
            self._pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
                self._loop.call_soon_threadsafe(self.ready.set)

    def rearm(self) -> None:
        """Before draining the queue: an event queued after this wakes the reader again."""
        self.ready.clear()
        self._pending = False


def _drain(subscription: Subscription) -> list[Event]:
    batch: list[Event] = []
    while len(batch) < BATCH_EVENTS and (event := subscription.get(0)) is not None:
        batch.append(event)
    return batch


async def stream(events: EventBus, stopping: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
    wakeup = Wakeup(asyncio.get_running_loop())
    subscription = events.subscribe(on_event=wakeup)
    try:
        yield b"retry: 2000\n\n"
        last_sent = clock()
        while not stopping():
            wakeup.rearm()
            batch = _drain(subscription)
            if batch:
                yield b"".join(format_event(e.kind, e.data, e.seq) for e in batch)
                last_sent = clock()
                continue
            if clock() - last_sent >= HEARTBEAT_S:
                yield b": heartbeat\n\n"
                last_sent = clock()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wakeup.ready.wait(), POLL_S)
    finally:
        subscription.close()


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
    return _SlotStream(stream(state.events, lambda: bool(state.stopping.is_set())), slots)
