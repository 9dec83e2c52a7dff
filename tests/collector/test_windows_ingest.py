"""The collector stores monitor windows and telemetry history from a real broker, and receipts
each window so the agent's spool lets it go."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import Store
from shared.messages import Receipt
from shared.mqtt import MqttConnection, connect
from shared.topics import TopicKind, Topics
from tests.collector.conftest import wait_for
from tests.factories_monitor import make_telemetry, make_window


@pytest.fixture()
def service(store: Store, mosquitto_url: str) -> Iterator[CollectorService]:
    running = CollectorService(store, MqttSettings(url=mosquitto_url, fleet="lab",
                                                   client_id=f"c-{uuid.uuid4().hex[:8]}"),
                               IngestSettings())
    running.start()
    yield running
    running.stop()


@pytest.mark.mqtt
def test_a_published_window_is_stored_once_and_receipted(
        store: Store, service: CollectorService, publisher: MqttConnection,
        mosquitto_url: str) -> None:
    receipts: queue.Queue[bytes] = queue.Queue()
    listener = connect(mosquitto_url, f"r-{uuid.uuid4().hex[:8]}",
                       on_message=lambda _topic, payload: receipts.put(payload))
    listener.subscribe(Topics.build("lab", "pi-01", TopicKind.RECEIPT), qos=1)
    assert listener.flush(30), "the broker did not answer the subscription"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    window = make_window([3.0] * 50, start=now - timedelta(seconds=10), fleet="lab")
    for _ in range(2):  # a re-send is stored once
        publisher.publish(Topics.monitor("lab", "pi-01"), window.model_dump_json().encode(), qos=1)
    telemetry = make_telemetry(now, fleet="lab", cpu_util_pct=42.0)
    publisher.publish(Topics.build("lab", "pi-01", TopicKind.TELEMETRY),
                      telemetry.model_dump_json().encode(), qos=1)
    since = now - timedelta(minutes=1)
    assert wait_for(lambda: len(store.list_windows(  # type: ignore[attr-defined]
        "pi-01", since=since, until=now + timedelta(minutes=1))) == 1)
    assert wait_for(lambda: any(p["messages"] for p in store.telemetry_points(  # type: ignore[attr-defined]
        "pi-01", since=since, until=now, step_s=10)))
    assert service.wait_idle(5)
    assert service.stats["dead_letters"] == 0
    got = Receipt.model_validate_json(receipts.get(timeout=5))
    listener.close()
    assert got.run_ids == [window.window_id]
