"""The Store interface every results database implements, and the registry that opens one by URL.

A store keeps benchmark results (each ``run_id`` once: MQTT QoS 1 may deliver a message twice),
dead letters, and cited baselines. ``sqlite:///path.db`` and ``postgresql://...`` are registered;
each implementation lives in its own module and imports its driver only when opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from collector.records import CitedBaseline, DeadLetter
from shared.errors import ConfigError, require_module
from shared.schema import BenchmarkResult


@dataclass(frozen=True)
class ResultFilter:
    model: str | None = None
    """model name, network or sha256"""
    device_id: str | None = None
    role: str | None = None
    fleet: str | None = None
    limit: int | None = None
    """keep only the newest ``limit`` results; they still come back oldest first"""


@runtime_checkable
class Store(Protocol):
    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema (versioned migrations); safe to call every start."""

    def add_results(
        self, results: Sequence[BenchmarkResult], *, topics: Sequence[str] | None = None
    ) -> int:
        """Store results in one transaction; returns how many were new (a known run_id is skipped).

        ``topics``, when given, holds the MQTT topic each result arrived on (same order). When this
        returns, the batch is committed: the collector acknowledges the messages to the broker.
        """

    def add_dead_letter(self, topic: str, reason: str, payload: bytes) -> None: ...

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        """Results, oldest first (with ``flt.limit``: the newest N, still oldest first)."""

    def get_result(self, run_id: str) -> BenchmarkResult | None: ...

    def list_dead_letters(self, limit: int | None = None) -> list[DeadLetter]: ...

    def add_cited_baselines(self, rows: Sequence[CitedBaseline]) -> int:
        """Store cited rows; returns how many were new (same content = same row)."""

    def list_cited_baselines(self) -> list[CitedBaseline]: ...

    def close(self) -> None: ...


STORES: dict[str, str] = {
    "sqlite": "collector.stores.sqlite:SqliteStore",
    "postgresql": "collector.stores.postgres:PostgresStore",
    "postgres": "collector.stores.postgres:PostgresStore",
}


def open_store(url: str, *, must_exist: bool = False) -> Store:
    """Open (and migrate) the store a URL names, importing only that store's driver.

    ``must_exist``: reading commands never create a database; a missing SQLite file is a
    :class:`ConfigError` naming the path that was looked at.
    """
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme in ("postgresql", "postgres"):
        require_module("psycopg", "collector")
    if must_exist and scheme == "sqlite":
        from collector.stores.sqlite import sqlite_path

        path = sqlite_path(url)
        if path != ":memory:" and not Path(path).is_file():
            raise ConfigError(
                f"no results database at {Path(path).resolve()}: check --db (sqlite:///relative"
                ".db or sqlite:////absolute.db) or start 'edgemeter collector serve' first"
            )
    target = STORES.get(scheme)
    if target is None:
        raise ConfigError(
            f"database URL {url!r} is not supported: use sqlite:///PATH.db or postgresql://..."
        )
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    store: Store = cls(url)
    store.migrate()
    return store
