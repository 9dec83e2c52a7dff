"""Collectors scaled out on an MQTT v5 shared subscription store every result exactly once.

Two real ``edgemeter collector serve`` processes with one ``--group`` subscribe to
``$share/<group>/edgemeter/v1/<fleet>/+/result`` on Mosquitto and write to one PostgreSQL schema.
The broker gives each message to one member of the group, so the two split the stream; a result
is stored by one of them, which sends its receipt to the device (``Receipt.collector`` names it).
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector.config import MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from edgemeter.commands.simulate import simulate
from edgemeter.demo.broker import PrivateBroker
from shared.messages import Receipt
from shared.mqtt import connect
from shared.topics import TopicKind, Topics
from tests.collector.conftest import wait_for
from tests.collector.test_service import FakeConnection, MemoryStore
from tests.scale.services import CollectorProcess, RoomyMosquitto

DEVICES = 200
RESULTS = 4000


def stored_run_ids(db_url: str) -> list[str]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        return [row[0] for row in conn.execute("SELECT run_id FROM results")]


@pytest.mark.slow
@pytest.mark.mqtt
@pytest.mark.postgres
def test_two_collectors_on_a_shared_subscription_store_every_result_once(
    roomy_broker: RoomyMosquitto, postgres_url: str, tmp_path: Path,
) -> None:
    open_store(postgres_url).close()  # tables made once, before two collectors race to make them
    fleet = f"share{uuid.uuid4().hex[:6]}"
    group = f"g{uuid.uuid4().hex[:6]}"
    collectors = [CollectorProcess(roomy_broker.url, postgres_url, f"edgemeter-collector-{group}-{i}",
                                   tmp_path / f"collector-{i}.log", group=group, fleet=fleet)
                  for i in range(2)]
    receipts: dict[str, list[str | None]] = {}  # run_id -> the collectors that receipted it
    lock = threading.Lock()

    def on_receipt(_topic: str, payload: bytes) -> None:
        receipt = Receipt.model_validate_json(payload)
        with lock:
            for run_id in receipt.run_ids:
                receipts.setdefault(str(run_id), []).append(receipt.collector)

    watcher = connect(roomy_broker.url, f"receipts-{group}", on_message=on_receipt)
    watcher.subscribe(Topics.subscription(TopicKind.RECEIPT, fleet), qos=1)
    assert watcher.flush(30), "the broker did not answer the subscription"
    try:
        for collector in collectors:
            collector.wait_listening()
        sent_file = tmp_path / "sent.txt"
        summary = simulate(roomy_broker.url, DEVICES, RESULTS, fleet=fleet, sent_file=sent_file,
                           telemetry_s=3600)
        assert summary["results_acknowledged"] == RESULTS
        sent = sorted(sent_file.read_text().split())
        assert wait_for(lambda: len(stored_run_ids(postgres_url)) >= RESULTS, timeout_s=60)
        assert wait_for(lambda: len(receipts) >= RESULTS, timeout_s=20)
    finally:
        stats = [c.stop() for c in collectors]
        watcher.close()
    for collector in collectors:
        assert f"$share/{group}/edgemeter/v1/{fleet}/+/result" in collector.text()
    stored = sorted(stored_run_ids(postgres_url))
    assert len(stored) == len(sent) == RESULTS
    assert stored == sent  # none missing, none twice
    assert all(s["stored"] > 0 for s in stats), stats  # both took a share
    assert sum(s["stored"] for s in stats) == RESULTS  # each result stored by one of them
    assert sum(s["duplicates"] for s in stats) == 0, stats
    assert sorted(receipts) == sent
    assert all(len(by) == 1 for by in receipts.values())  # one receipt, from one collector
    for collector, counts in zip(collectors, stats, strict=True):
        mine = sum(by == [collector.client_id] for by in receipts.values())
        assert mine == counts["stored"]  # the receipt comes from whichever stored it


@pytest.mark.mqtt
def test_a_group_on_an_mqtt_3_1_1_broker_subscribes_plainly_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    with PrivateBroker(prefer="amqtt") as broker:  # MQTT 3.1.1 only
        service = CollectorService(store, MqttSettings(url=broker.url, group="fleet-a",
                                                       client_id="edgemeter-collector-v311"))
        with caplog.at_level(logging.WARNING, logger="collector.service"):
            service.start()
            try:
                subscription = service.subscription
            finally:
                service.stop()
    store.close()
    assert subscription == Topics.subscription(TopicKind.RESULT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no shared subscriptions" in w and "fleet-a" in w for w in warnings), warnings


class NoSharesConnection(FakeConnection):
    """An MQTT v5 connection whose CONNACK said Shared Subscription Available = 0."""

    shared_subscriptions = False


@pytest.mark.mqtt
@pytest.mark.parametrize(("protocol", "shares"), [("5", True), ("3.1.1", False)])
def test_the_connection_says_whether_shared_subscriptions_work(
    roomy_broker: RoomyMosquitto, protocol: str, shares: bool,
) -> None:
    with connect(roomy_broker.url, f"shares-{uuid.uuid4().hex[:6]}",
                 protocol=protocol) as conn:  # type: ignore[arg-type]
        assert conn.shared_subscriptions is shares


def test_a_v5_broker_that_offers_no_shared_subscriptions_gets_plain_ones_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[Any, ...]] = []

    def connect(_url: str, _client_id: str, **options: Any) -> NoSharesConnection:
        conn = NoSharesConnection(calls)
        options["on_connect"](conn)
        return conn

    service = CollectorService(MemoryStore(),  # type: ignore[arg-type]
                               MqttSettings(url="mqtt://broker.example:1883", client_id="c1",
                                            group="fleet-a"), connect=connect)
    with caplog.at_level(logging.WARNING, logger="collector.service"):
        service.start()
        service.stop()
    subscribed = [c[1] for c in calls if c[0] == "subscribe"]
    assert Topics.subscription(TopicKind.RESULT) in subscribed
    assert not [t for t in subscribed if t.startswith("$share/")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no shared subscriptions" in w and "fleet-a" in w for w in warnings), warnings
