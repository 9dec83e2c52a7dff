"""`edgemeter simulate --window-s`: virtual devices send monitor windows and telemetry, and the
collector stores every window and every telemetry message in its history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from collector.stores.sql import SqlStore
from collector.stores.tables import monitor_windows, telemetry
from edgemeter.commands.simulate import simulate
from tests.collector.conftest import wait_for


@pytest.fixture()
def collecting(mosquitto_url: str, tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path}/results.db")
    service = CollectorService(store, MqttSettings(url=mosquitto_url, fleet="simw",
                                                   client_id=f"c-{uuid.uuid4().hex[:8]}"),
                               IngestSettings())
    service.start()
    yield store  # type: ignore[misc]
    service.stop()
    store.close()


def count(store: SqlStore, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)  # type: ignore[arg-type]


@pytest.mark.mqtt
def test_simulated_windows_and_telemetry_are_all_stored(collecting: SqlStore,
                                                       mosquitto_url: str) -> None:
    summary = simulate(mosquitto_url, 5, 0, fleet="simw", telemetry_s=0.5, hold_s=2.2,
                       window_s=0.5, window_queries=20)
    assert summary["windows_sent"] >= 15
    assert wait_for(lambda: count(collecting, monitor_windows) == summary["windows_sent"], 10)
    assert count(collecting, telemetry) >= 5 * 4
    (window,) = collecting.list_windows("sim-0000", since=datetime(2020, 1, 1, tzinfo=timezone.utc),
                                        until=datetime.now(timezone.utc), limit=1)
    assert window.queries == 20 and window.latencies is not None
