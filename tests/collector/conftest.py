"""Fixtures for the collector tests: a store per backend, a publisher, a polling helper."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.stores.base import Store, open_store
from collector.stores.sql import SqlStore
from shared.mqtt import MqttConnection, connect


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db/results.db"  # tmp_path is absolute: sqlite:////...
    return str(request.getfixturevalue("postgres_url"))


NOW = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)
"""The wall clock of :func:`clocked` stores."""


@pytest.fixture()
def clocked(store_url: str) -> Iterator[SqlStore]:
    """A migrated store whose clock always reads :data:`NOW` (partitions ahead, prune cutoffs)."""
    opened = SqlStore(store_url, clock=lambda: NOW)
    try:
        opened.migrate()
        yield opened
    finally:
        opened.close()


@pytest.fixture()
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/results.db"


@pytest.fixture()
def publisher(mosquitto_url: str) -> Iterator[MqttConnection]:
    conn = connect(mosquitto_url, f"test-pub-{uuid.uuid4().hex[:8]}")
    yield conn
    conn.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
