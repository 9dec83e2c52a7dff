"""What the HTTP API reads and writes in the results database: a :class:`ReadStore`.

The API opens the same store class as ingest a second time (:func:`open_read_store`), so it has a
connection pool of its own and a slow page never holds a connection ingest is waiting for. It never
migrates: ``collector serve`` has done that before the API starts. Besides the
:class:`~collector.stores.base.Store` methods it uses the SQLAlchemy engine, for the keyset pages
of :mod:`collector.http.runs`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy import Engine

from collector.records import DeviceRecord
from collector.stores.base import Store, open_store
from shared.errors import ConfigError

__all__ = ["DeviceRow", "ReadStore", "open_read_store"]

DeviceRow = DeviceRecord
"""One device as the store keeps it."""


@runtime_checkable
class ReadStore(Store, Protocol):
    """The :class:`~collector.stores.base.Store` with its SQLAlchemy engine."""

    @property
    def engine(self) -> Engine: ...


def open_read_store(url: str) -> ReadStore:
    """The store at ``url``, opened again for the API (its own pool), without migrating."""
    store = open_store(url, migrate=False)
    if not isinstance(store, ReadStore):
        store.close()
        raise ConfigError(f"the HTTP API needs an SQL store; {store.url} has no SQLAlchemy engine")
    return store
