"""Backpressure with a real Mosquitto whose in-flight window is unlimited (``max_inflight_messages
0``): the collector's own MQTT v5 Receive Maximum bounds what it holds, a store outage loses and
dead-letters nothing, and a large backlog queued at the broker does not stop it from starting."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.config import IngestSettings, MqttSettings
from collector.errors import StoreError
from collector.service import CollectorService
from collector.stores.base import Store, open_store
from edgemeter.demo.loopback import free_port
from edgemeter.demo.mosquitto import Mosquitto, anonymous_config, find_mosquitto
from shared.mqtt import MqttConnection, connect
from shared.schema import BenchmarkResult
from shared.topics import Topics
from tests.collector.conftest import wait_for
from tests.collector.test_service import FlakyStore
from tests.conftest import unavailable
from tests.factories import make_result

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]


@pytest.fixture()
def unlimited_broker(tmp_path: Path) -> Iterator[str]:
    """A private Mosquitto that sends a subscriber any number of unacknowledged messages."""
    binary = find_mosquitto()
    if binary is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    with Mosquitto(tmp_path, anonymous_config(port, max_inflight_messages=0), ports=[port], binary=binary):
        yield f"mqtt://127.0.0.1:{port}"


class Outstanding:
    """A connect function that counts messages handed to the service and not yet acknowledged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def connect(self, url: str, client_id: str, **options: Any) -> MqttConnection:
        handler, on_connect = options["on_message_ack"], options["on_connect"]

        def on_message(topic: str, payload: bytes, mid: int, qos: int) -> None:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            handler(topic, payload, mid, qos)

        def counting_connect(conn: MqttConnection) -> None:
            ack = conn.ack

            def counted_ack(mid: int, qos: int) -> None:
                with self.lock:
                    self.now -= 1
                ack(mid, qos)

            conn.ack = counted_ack  # type: ignore[method-assign]
            on_connect(conn)

        return connect(url, client_id, **{**options, "on_message_ack": on_message,
                                          "on_connect": counting_connect})


class RefusesForAWhile(FlakyStore):
    """Refuses every write until it has refused ``refusals`` of them."""

    def __init__(self, inner: Store, refusals: int) -> None:
        super().__init__(inner)
        self.refusals = refusals

    def _check(self) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise StoreError("database is down (test)")


def publish_fast(url: str, results: list[BenchmarkResult]) -> None:
    """QoS 1, pipelined (paho's own window), waiting only for the broker's last PUBACK."""
    conn = connect(url, f"test-pub-{uuid.uuid4().hex[:8]}")
    try:
        infos = [conn.client.publish(Topics.result(r.fleet, r.device_id),
                                     r.model_dump_json().encode(), qos=1) for r in results]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        conn.close()


def collector(url: str, store: Store, counter: Outstanding | None = None,
              **ingest: Any) -> CollectorService:
    return CollectorService(
        store,
        MqttSettings(url=url, client_id=ingest.pop("client_id", f"c-{uuid.uuid4().hex[:8]}"),
                     connect_timeout_s=10),
        IngestSettings(retry_interval_s=0.01, retry_max_interval_s=0.05, **ingest),
        connect=counter.connect if counter else connect,
    )


def test_the_service_never_holds_more_than_its_receive_maximum_and_loses_nothing(
    unlimited_broker: str, sqlite_url: str,
) -> None:
    inner = open_store(sqlite_url)
    store = RefusesForAWhile(inner, refusals=40)
    counter = Outstanding()
    service = collector(unlimited_broker, store, counter, receive_maximum=100, batch_size=50)
    service.start()
    try:
        sent = [make_result(device_id=f"pi-{i % 8:02d}", seq=i) for i in range(5000)]
        publish_fast(unlimited_broker, sent)
        assert wait_for(lambda: service.stats["stored"] == 5000, timeout_s=180), service.stats
        assert counter.most <= 100, counter.most
        assert counter.most >= 50  # the window was used: the test measured something
        assert service.stats["dead_letters"] == 0 and service.stats["store_errors"] >= 40
        assert inner.list_dead_letters() == []
        with inner.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.exec_driver_sql("SELECT count(*) FROM results").scalar() == 5000
    finally:
        service.stop()
        inner.close()


def test_a_backlog_queued_at_an_unlimited_broker_does_not_stop_the_start(
    unlimited_broker: str, sqlite_url: str,
) -> None:
    store = open_store(sqlite_url)
    client_id = f"c-backlog-{uuid.uuid4().hex[:8]}"
    first = collector(unlimited_broker, store, client_id=client_id)
    first.start()  # makes the persistent session and its subscriptions
    first.stop()
    backlog = [make_result(seq=i) for i in range(3000)]
    publish_fast(unlimited_broker, backlog)  # queued for the stopped collector
    counter = Outstanding()
    second = collector(unlimited_broker, store, counter, client_id=client_id, receive_maximum=200)
    try:
        second.start()  # raises SubscribeError if the SUBACKs wait behind the backlog
        assert wait_for(lambda: second.stats["stored"] == 3000, timeout_s=120), second.stats
        assert counter.most <= 200, counter.most
    finally:
        second.stop()
        store.close()
