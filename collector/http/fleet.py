"""The fleet as the API shows it: device objects, live job progress, filters, sorting, pages.

Progress is not stored: :class:`ProgressBoard` keeps the newest ``progress`` event per device from
the event bus and forgets it when that job's ack says it ended (``done``, ``failed``,
``cancelled``, ``rejected``), or when no progress came for :data:`PROGRESS_STALE_S` (an agent that
died mid-job sends no ack). It drains its own bus subscription whenever it is read, so it needs no
thread; the subscription's bounded queue keeps it from growing while nobody looks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from collector.events import EventBus, Subscription
from collector.http.store import DeviceRow, ReadStore
from shared.selector import Candidate, select

__all__ = ["DEVICE_CACHE_S", "PROGRESS_STALE_S", "SORT_KEYS", "DeviceCache", "ProgressBoard",
           "device_object", "select_devices", "sort_and_filter"]

PROGRESS_STALE_S = 60.0
DEVICE_CACHE_S = 1.0
"""How old the device list served by ``/api/devices`` may be."""
ENDED = frozenset({"done", "failed", "cancelled", "rejected"})
SORT_KEYS = ("device_id", "fleet", "status", "last_seen", "first_seen", "board", "runtime",
             "latest_p50_ms", "latest_power_w", "spool_depth")
PROGRESS_KEYS = ("job_id", "phase", "iterations_done", "running_p50_ms", "power_w")


class ProgressBoard:
    """Newest progress per device, folded from the event bus on demand. Thread-safe."""

    def __init__(self, events: EventBus, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._subscription: Subscription = events.subscribe()
        self._latest: dict[str, tuple[float, dict[str, Any]]] = {}

    def _drain(self) -> None:
        while (event := self._subscription.get(timeout_s=0)) is not None:
            data = event.data
            device = data.get("device_id")
            if not isinstance(device, str):
                continue
            if event.kind == "progress":
                self._latest[device] = (self._clock(), {k: data.get(k) for k in PROGRESS_KEYS})
            elif event.kind == "ack" and data.get("state") in ENDED:
                current = self._latest.get(device)
                if current is not None and current[1].get("job_id") == data.get("job_id"):
                    del self._latest[device]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """device_id -> its newest progress (``job_id``, ``phase``, ``iterations_done``, ...)."""
        with self._lock:
            self._drain()
            now = self._clock()
            for device in [d for d, (at, _) in self._latest.items() if now - at > PROGRESS_STALE_S]:
                del self._latest[device]
            return {device: dict(progress) for device, (_, progress) in self._latest.items()}

    def close(self) -> None:
        self._subscription.close()


class DeviceCache:
    """The store's device list, read at most once per ``ttl_s`` whoever asks, as device objects.

    The fleet page polls and many pages may be open; reading and parsing 1,000 devices costs the
    store tens of milliseconds, so the API shares one read per second between them (live changes
    reach the page through ``/api/events`` meanwhile). One caller reads while the others wait for
    its answer. Thread-safe.
    """

    def __init__(self, store: ReadStore, ttl_s: float = DEVICE_CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._rows: dict[str, DeviceRow] = {}
        self._objects: list[dict[str, Any]] = []

    def _fresh(self, force: bool = False) -> None:
        with self._lock:
            now = self._clock()
            if not force and self._read_at is not None and now - self._read_at < self._ttl_s:
                return
            rows = self._store.list_devices()
            self._rows = {row.device_id: row for row in rows}
            self._objects = [device_object(row, None) for row in rows]
            self._read_at = now

    def objects(self, progress: dict[str, dict[str, Any]], fleet: str | None = None
                ) -> list[dict[str, Any]]:
        """Every device object (of ``fleet``) with its live ``progress`` merged in."""
        self._fresh()
        out = []
        for obj in self._objects:
            if fleet is not None and obj["fleet"] != fleet:
                continue
            live = progress.get(obj["device_id"])
            if live is not None:
                obj = {**obj, "progress": live, "current_job": obj["current_job"] or live.get("job_id")}
            out.append(obj)
        return out

    def row(self, device_id: str) -> DeviceRow | None:
        """The device, read again when the cached list does not have it (it may be new)."""
        self._fresh()
        if device_id not in self._rows:
            self._fresh(force=True)
        return self._rows.get(device_id)

    def rows(self) -> list[DeviceRow]:
        self._fresh()
        return list(self._rows.values())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def device_object(row: DeviceRow, progress: dict[str, Any] | None) -> dict[str, Any]:
    """One device as ``/api/devices`` lists it."""
    manifest, telemetry = row.manifest, row.telemetry
    board = (manifest.device.board or manifest.device.cpu_model) if manifest else None
    runtime = ", ".join(f"{name} {version}" for name, version in manifest.runtimes.items()) \
        if manifest and manifest.runtimes else None
    return {
        "device_id": row.device_id,
        "fleet": row.fleet,
        "status": row.status,
        "bd_seq": row.bd_seq,
        "first_seen": _iso(row.first_seen),
        "last_seen": _iso(row.last_seen),
        "board": board,
        "runtime": runtime,
        "current_job": (telemetry.current_job if telemetry else None)
        or (progress.get("job_id") if progress else None),
        "progress": progress,
        "latest_p50_ms": row.latest_p50_ms,
        "latest_power_w": row.latest_power_w,
        "latest_model": row.latest_model,
        "latest_run_id": None if row.latest_run_id is None else str(row.latest_run_id),
        "spool_depth": telemetry.spool_depth if telemetry else None,
    }


def _sort_value(device: dict[str, Any], key: str) -> tuple[int, Any]:
    value = device.get(key)
    # missing values last, whichever the direction
    return (1, "") if value is None else (0, value.lower() if isinstance(value, str) else value)


def sort_and_filter(devices: list[dict[str, Any]], *, status: str | None, q: str | None,
                    sort: str) -> list[dict[str, Any]]:
    """Keep devices with ``status`` whose id, board, runtime, model or fleet contains ``q``
    (any case), sorted by ``sort`` (a :data:`SORT_KEYS` name, ``-`` in front for descending;
    ``device_id`` breaks ties)."""
    if status:
        devices = [d for d in devices if d["status"] == status]
    if q:
        needle = q.lower()
        devices = [d for d in devices
                   if any(needle in str(d.get(k) or "").lower()
                          for k in ("device_id", "board", "runtime", "latest_model", "fleet"))]
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    devices = sorted(devices, key=lambda d: d["device_id"])
    present = [d for d in devices if d.get(key) is not None]
    missing = [d for d in devices if d.get(key) is None]
    present.sort(key=lambda d: _sort_value(d, key), reverse=descending)
    return present + missing


def select_devices(devices: Sequence[DeviceRow], selector: str) -> list[DeviceRow]:
    """Devices matching the selector ``edgemeter fleet run`` takes (:mod:`shared.selector`: ids
    or globs, ``fleet=NAME``, ``board=TEXT``, comma-separated, any match selects)."""
    return select(devices, selector, key=_candidate)


def _candidate(row: DeviceRow) -> Candidate:
    manifest = row.manifest
    board = (manifest.device.board or manifest.device.cpu_model or "") if manifest else ""
    return Candidate(row.device_id, row.fleet, board)
