"""kill -9 of ``edgemeter collector serve`` mid-ingest, twice, each time restarted.

The collector acknowledges a message to the broker only after the store committed it, on a
persistent session: what it held when it died (received, maybe stored, not acknowledged) the
broker delivers again to the restarted collector, and what it stored without sending the receipt
the agents send again. The store keeps each run_id once, so both only cost a duplicate dropped.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from tests.factories import make_result
from tests.reliability.services import (
    FLEET,
    Fleet,
    PersistentMosquitto,
    report,
    stored_count,
    wait_until,
)
from tests.scale.services import CollectorProcess

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres, pytest.mark.slow]

DEVICES = 4
PER_DEVICE = 250


def test_a_collector_killed_mid_ingest_twice_and_restarted_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, postgres_url: str,
) -> None:
    broker = PersistentMosquitto(tmp_path / "broker").start()
    client_id = f"rel-{uuid.uuid4().hex[:6]}"
    fleet = Fleet(broker.url, tmp_path / "agents", DEVICES, resend_after_s=3.0)
    total = DEVICES * PER_DEVICE
    kills: list[int] = []

    def serve(n: int) -> CollectorProcess:
        process = CollectorProcess(broker.url, postgres_url, client_id, tmp_path / f"collector-{n}.log")
        process.wait_listening(60)
        return process

    def jobs_finish() -> None:
        pace = threading.Event()
        for seq in range(1, PER_DEVICE + 1):
            for n, device in enumerate(fleet.devices):
                fleet.put(n, make_result(device_id=device, fleet=FLEET, seq=seq))
            pace.wait(0.01)

    collector = serve(0)
    fleet.start()
    feeder = threading.Thread(target=jobs_finish, daemon=True)
    try:
        feeder.start()
        for n, fraction in enumerate((0.25, 0.6), start=1):
            wait_until(lambda f=fraction: stored_count(postgres_url) >= total * f, 90,
                       f"{fraction:.0%} stored")
            collector.kill()
            kills.append(stored_count(postgres_url))
            collector = serve(n)
        feeder.join(60)
        wait_until(lambda: stored_count(postgres_url) >= total and fleet.spooled() == 0, 120,
                   f"{total} stored and every spool empty")
    finally:
        fleet.stop()
        stats = collector.stop() if collector.process.poll() is None else {}
        broker.stop()
    assert kills[-1] < total, "the kills came after the stream had ended"
    report(fleet.published, postgres_url,
           note=f"collector killed with {kills[0]} and {kills[1]} stored; the last one dropped "
                f"{stats.get('duplicates', 0)} duplicates")
