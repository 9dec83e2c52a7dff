"""Storing monitor windows the collector received, and the receipts that release them.

The collector's writer calls :func:`store_windows` for the valid ``monitor`` messages of a batch
(:class:`shared.monitoring.MonitorWindow`) and publishes the receipts it returns once it returns:
the windows are committed in one transaction (a repeat by ``window_id`` is skipped, and receipted
again, or the agent would keep re-sending it). :func:`window_event` is
what the event bus (and so the dashboard's live stream) gets: the window's figures without its
histogram.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

from shared.messages import Receipt
from shared.monitoring import MonitorWindow
from shared.topics import TopicKind, Topics

__all__ = ["WindowStore", "store_windows", "window_event", "window_json"]


class WindowStore(Protocol):
    def add_windows(self, windows: list[MonitorWindow], *,
                    payloads: list[bytes] | None = None) -> int: ...


def store_windows(store: WindowStore, windows: list[MonitorWindow], *,
                  collector: str | None = None, payloads: list[bytes] | None = None,
                  ) -> list[tuple[str, bytes]]:
    """Store a batch of windows in one transaction (each ``window_id`` once) and return the
    receipts to publish, one per (fleet, device): ``[(topic, payload), ...]``."""
    store.add_windows(windows, payloads=payloads)
    by_device: dict[tuple[str, str], list[MonitorWindow]] = {}
    for window in windows:
        by_device.setdefault((window.fleet, window.device_id), []).append(window)
    stored_at = datetime.now(timezone.utc)
    return [(Topics.build(fleet, device_id, TopicKind.RECEIPT),
             Receipt(run_ids=list(dict.fromkeys(w.window_id for w in group)), stored_at=stored_at,
                     collector=collector).model_dump_json().encode())
            for (fleet, device_id), group in by_device.items()]


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
