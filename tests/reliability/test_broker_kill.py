"""kill -9 of the broker mid-stream, then a restart: every result is stored, each once.

Mosquitto acknowledges a QoS 1 publish (PUBACK) as soon as the message is in its memory; it writes
its store to disk only every ``autosave_interval``. A kill -9 loses what came since the last save,
although the boards were told it arrived. Nothing is lost all the same, because a board forgets a
result only on the collector's receipt (:mod:`agent.spool`, :mod:`agent.delivery`): the results
whose receipt never came are sent again, and the store keeps each run_id once.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from tests.factories import make_result
from tests.reliability.services import (
    FLEET,
    Fleet,
    PersistentMosquitto,
    report,
    stored_count,
    wait_until,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

DEVICES = 4
PER_DEVICE = 150


def test_a_broker_killed_mid_stream_and_restarted_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    broker = PersistentMosquitto(tmp_path / "broker").start()
    db_url = f"sqlite:///{tmp_path}/results.db"
    store = open_store(db_url)
    collector = CollectorService(
        store, MqttSettings(url=broker.url, client_id=f"rel-{uuid.uuid4().hex[:6]}",
                            connect_timeout_s=10, keepalive_s=5),
        IngestSettings(retry_interval_s=0.05, retry_max_interval_s=0.5),
    )
    fleet = Fleet(broker.url, tmp_path / "agents", DEVICES, resend_after_s=2.0)
    total = DEVICES * PER_DEVICE
    fed = threading.Event()

    def jobs_finish() -> None:  # results appear while the broker dies and comes back
        for seq in range(1, PER_DEVICE + 1):
            for n, device in enumerate(fleet.devices):
                fleet.put(n, make_result(device_id=device, fleet=FLEET, seq=seq))
            fed.wait(0.01)
        fed.set()

    collector.start()
    fleet.start()
    feeder = threading.Thread(target=jobs_finish, daemon=True)
    try:
        feeder.start()
        wait_until(lambda: stored_count(db_url) >= total // 4, 60, "a quarter stored")
        broker.kill()
        killed_at = stored_count(db_url)
        broker.start()
        feeder.join(60)
        wait_until(lambda: stored_count(db_url) >= total and fleet.spooled() == 0, 90,
                   f"{total} stored and every spool empty")
    finally:
        fleet.stop()
        dropped_twice = collector.stats["duplicates"]
        collector.stop()
        store.close()
        broker.stop()
    assert killed_at < total, "the kill came after the stream had ended"
    assert (broker.data_dir / "mosquitto.db").is_file(), "the broker never saved its store"
    report(fleet.published, db_url, note=f"broker killed with {killed_at} stored; "
           f"{dropped_twice} re-sent copies dropped by the store")
