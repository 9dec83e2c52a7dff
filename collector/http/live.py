"""``GET /api/events``: the collector's event bus as Server-Sent Events.

Each event is ``id: <bus seq>``, ``event: <kind>`` (``status``, ``telemetry``, ``progress``,
``ack``, ``result``, ``monitor``, ``alert``) and ``data: <one line of JSON>``; a gap in the ids
means this client fell more than the bus's queue behind and lost events (the bus drops them for
this client alone: ingest never waits for a reader). A comment line (``: heartbeat``) goes out every
:data:`HEARTBEAT_S` seconds so proxies keep the connection and the browser sees it alive. The
stream starts with ``retry: 2000`` (reconnect after 2 s) and ends when the client goes away or the
server stops.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import anyio
from anyio import CapacityLimiter
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from collector.events import Event, EventBus, Subscription

__all__ = ["BATCH_EVENTS", "HEARTBEAT_S", "POLL_S", "format_event", "router"]

HEARTBEAT_S = 15.0
POLL_S = 0.5
"""Longest wait for an event before checking whether the client left or the server stops."""
BATCH_EVENTS = 500
"""Events sent in one write at most."""

router = APIRouter()

# Waiting readers sit in worker threads; their own limiter keeps them from using up the pool that
# the API's blocking routes run in.
_LIMITER = CapacityLimiter(256)


def format_event(kind: str, data: dict[str, object], seq: int) -> bytes:
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {kind}\ndata: {body}\n\n".encode()


def _next_events(subscription: Subscription) -> list[Event]:
    """Wait up to :data:`POLL_S` for an event, then take whatever else is already queued (up to
    :data:`BATCH_EVENTS`), so a busy bus costs one thread hop per batch, not per event."""
    first = subscription.get(POLL_S)
    if first is None:
        return []
    batch = [first]
    while len(batch) < BATCH_EVENTS and (more := subscription.get(0)) is not None:
        batch.append(more)
    return batch


async def stream(request: Request, events: EventBus, stopping: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
    subscription = events.subscribe()
    try:
        yield b"retry: 2000\n\n"
        last_sent = clock()
        while not stopping():
            batch = await anyio.to_thread.run_sync(_next_events, subscription, limiter=_LIMITER)
            if batch:
                yield b"".join(format_event(e.kind, e.data, e.seq) for e in batch)
                last_sent = clock()
            elif clock() - last_sent >= HEARTBEAT_S:
                yield b": heartbeat\n\n"
                last_sent = clock()
            if await request.is_disconnected():
                break
    finally:
        subscription.close()


@router.get("/api/events", summary="Live events (Server-Sent Events): status, telemetry, progress, "
            "ack, result", response_class=StreamingResponse)
async def get_events(request: Request) -> StreamingResponse:
    state = request.app.state
    return StreamingResponse(
        stream(request, state.events, lambda: bool(state.stopping.is_set())),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
