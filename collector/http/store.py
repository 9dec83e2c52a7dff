"""What the HTTP API reads and writes in the results database: a :class:`ReadStore`.

The API opens the same store class as ingest a second time (:func:`open_read_store`), so it has a
connection pool of its own and a slow page never holds a connection ingest is waiting for. It never
migrates: ``collector serve`` has done that before the API starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, cast, runtime_checkable

from sqlalchemy import Engine

from collector.stores.base import Store, open_store
from shared.messages import AgentManifest, Telemetry

__all__ = ["DeviceRow", "ReadStore", "SeqGapRow", "open_read_store"]


class DeviceRow(Protocol):
    """One device as the store keeps it (``collector.records.DeviceRecord``)."""

    @property
    def device_id(self) -> str: ...
    @property
    def fleet(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def bd_seq(self) -> int | None: ...
    @property
    def first_seen(self) -> datetime | None: ...
    @property
    def last_seen(self) -> datetime | None: ...
    @property
    def manifest(self) -> AgentManifest | None: ...
    @property
    def telemetry(self) -> Telemetry | None: ...
    @property
    def latest_run_id(self) -> str | None: ...
    @property
    def latest_p50_ms(self) -> float | None: ...
    @property
    def latest_power_w(self) -> float | None: ...
    @property
    def latest_model(self) -> str | None: ...


class SeqGapRow(Protocol):
    @property
    def device_id(self) -> str: ...
    @property
    def first_missing(self) -> int: ...
    @property
    def last_missing(self) -> int: ...


@runtime_checkable
class ReadStore(Store, Protocol):
    """The :class:`~collector.stores.base.Store` (which now has the fleet reads the API serves:
    ``list_devices``, ``seq_gaps``, ``record_job``, ``list_jobs``, ``get_model``) plus its engine."""

    @property
    def engine(self) -> Engine: ...


def open_read_store(url: str) -> ReadStore:
    """The store at ``url``, opened again for the API (its own pool), without migrating."""
    return cast(ReadStore, open_store(url, migrate=False))
