"""Storing a monitor window the collector received, and the receipt that releases it.

The collector's writer calls :func:`store_window` for each valid ``monitor`` message
(:class:`shared.monitoring.MonitorWindow`) and publishes what it returns once it returns: the
window is committed (a repeat by ``window_id`` is skipped, and receipted again, or the agent
would keep re-sending it). :func:`window_event` is what the event bus (and so the dashboard's
live stream) gets: the window's figures without its histogram.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

from shared.messages import Receipt
from shared.monitoring import MonitorWindow
from shared.topics import TopicKind, Topics

__all__ = ["WindowStore", "store_window", "window_event", "window_json"]


class WindowStore(Protocol):
    def add_windows(self, windows: list[MonitorWindow], *,
                    payloads: list[bytes] | None = None) -> int: ...


def store_window(store: WindowStore, window: MonitorWindow, *, collector: str | None = None,
                 payload: bytes | None = None) -> tuple[str, bytes]:
    """Store ``window`` (once) and return the receipt to publish: ``(topic, payload)``."""
    store.add_windows([window], payloads=None if payload is None else [payload])
    receipt = Receipt(run_ids=[window.window_id], stored_at=datetime.now(timezone.utc),
                      collector=collector)
    return (Topics.build(window.fleet, window.device_id, TopicKind.RECEIPT),
            receipt.model_dump_json().encode())


def window_json(window: MonitorWindow) -> dict[str, Any]:
    """A window as the HTTP API and the event stream show it (``latency_ms`` flat, times ISO)."""
    latency = window.latency_ms
    return {
        "name": window.name, "job_id": window.job_id, "device_id": window.device_id,
        "fleet": window.fleet, "window_id": str(window.window_id),
        "start": window.start.isoformat(), "end": window.end.isoformat(),
        "queries": window.queries,
        "latency_ms": latency.model_dump() if latency is not None else None,
        "throughput_sps": window.throughput_sps, "power_w": window.power_w,
        "power_source": window.power_source, "power_estimated": window.power_estimated,
        "temperature_c": window.temperature_c, "throttled": window.throttled,
        "dropped": window.dropped,
    }


def window_event(window: MonitorWindow) -> dict[str, Any]:
    return window_json(window)
