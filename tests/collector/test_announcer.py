"""The announcer: receipts (run_ids and final job acks), the collector's status, events and
metrics; with a fake publisher, a fake store and a fake clock."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from collector.announcer import DEVICES_ONLINE_TTL_S, Announcer, receipts
from collector.errors import StoreError
from collector.events import EventBus
from collector.health import CollectorStatus
from collector.metrics import CollectorMetrics
from collector.writer import Committed, Outage
from shared.errors import BrokerError
from shared.messages import JobAck, Progress, Receipt
from shared.topics import TopicKind, Topics
from tests.collector.test_service import FakeClock
from tests.collector.test_service_fleet import FleetStore, status
from tests.factories import make_result

SINCE = datetime(2026, 3, 1, tzinfo=timezone.utc)


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []
        self.fail = False

    def announce(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.fail:
            raise BrokerError("not connected (test)")
        self.sent.append((topic, payload, retain))


def announcer(publisher: FakePublisher, *, store: Any = None, outage: Outage | None = None,
              clock: FakeClock | None = None, events: EventBus | None = None,
              client_id: str = "c1") -> Announcer:
    state = outage or Outage(down=False, since=SINCE)
    return Announcer(client_id, publisher=publisher, metrics=CollectorMetrics(),
                     events=events or EventBus(), store=store or FleetStore(),
                     backlog=lambda: 7, outage=lambda: state, clock=clock or FakeClock())


def done(job_id: str, device_id: str = "pi-01", state: str = "done") -> JobAck:
    return JobAck(device_id=device_id, fleet="default", job_id=job_id, state=state)  # type: ignore[arg-type]


def test_one_receipt_per_device_names_its_run_ids_and_final_jobs_each_once() -> None:
    a = [make_result(device_id="pi-01", seq=i) for i in range(2)]
    b = make_result(device_id="pi-02", seq=0)
    batch = Committed(stored_at=SINCE, results=[*a, a[0], b], new=3,
                      final_acks=[done("j1"), done("j1"), done("j9", device_id="pi-03")])
    out = receipts(batch, "c1")
    assert set(out) == {("default", "pi-01"), ("default", "pi-02"), ("default", "pi-03")}
    pi01 = out[("default", "pi-01")]
    assert pi01.run_ids == [a[0].run_id, a[1].run_id] and pi01.job_ids == ["j1"]
    assert out[("default", "pi-02")].job_ids == []
    assert out[("default", "pi-03")].run_ids == [] and out[("default", "pi-03")].job_ids == ["j9"]
    assert all(r.collector == "c1" and r.stored_at == SINCE for r in out.values())


def test_a_committed_batch_sends_its_receipts_and_counts_its_results() -> None:
    publisher = FakePublisher()
    ann = announcer(publisher)
    result = make_result(seq=1)
    ann.committed(Committed(stored_at=datetime.now(timezone.utc), results=[result], new=1,
                            commit_s=0.01, final_acks=[done("j1")]))
    ((topic, payload, retain),) = publisher.sent
    assert topic == Topics.build("default", result.device_id, TopicKind.RECEIPT) and not retain
    receipt = Receipt.model_validate_json(payload)
    assert receipt.run_ids == [result.run_id] and receipt.job_ids == ["j1"]
    assert ann.metrics.stored._value.get() == 1 and ann.metrics.duplicates._value.get() == 0


def test_a_receipt_that_cannot_be_sent_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    publisher = FakePublisher()
    publisher.fail = True
    announcer(publisher).committed(Committed(stored_at=SINCE, final_acks=[done("j1")]))
    assert "could not send a receipt to default/pi-01" in caplog.text


def test_the_status_says_store_down_with_the_error_while_the_store_is_down() -> None:
    publisher = FakePublisher()
    ann = announcer(publisher, outage=Outage(down=True, since=SINCE, error="disk full"))
    ann.publish_status()
    ((topic, payload, retain),) = publisher.sent
    status_doc = CollectorStatus.model_validate_json(payload)
    assert topic == "edgemeter/v1/_collector/c1/status" and retain
    assert (status_doc.state, status_doc.error, status_doc.since, status_doc.backlog) == \
        ("store-down", "disk full", SINCE, 7)
    will = CollectorStatus.model_validate_json(ann.status_payload("offline", sent=False))
    assert will.state == "offline" and will.sent_at is None and will.error is None


def test_an_outage_change_sets_the_gauge_and_publishes_the_status() -> None:
    publisher = FakePublisher()
    ann = announcer(publisher, outage=Outage(down=True, since=SINCE, error="x"))
    ann.outage_changed()
    assert ann.metrics.store_outage._value.get() == 1
    assert CollectorStatus.model_validate_json(publisher.sent[-1][1]).state == "store-down"


def test_a_client_id_that_is_no_topic_level_publishes_no_status() -> None:
    publisher = FakePublisher()
    ann = announcer(publisher, client_id="a/b")
    ann.publish_status()
    assert ann.status_topic is None and publisher.sent == []


def test_progress_is_relayed_and_an_invalid_one_counted() -> None:
    bus = EventBus()
    events = bus.subscribe()
    ann = announcer(FakePublisher(), events=bus)
    ann.progress(Topics.build("default", "pi-01", TopicKind.PROGRESS),
                 Progress(device_id="pi-01", fleet="default", job_id="j1",
                          phase="measure").model_dump_json().encode())
    ann.progress(Topics.build("default", "pi-01", TopicKind.PROGRESS), b"{oops")
    event = events.get(0)
    assert event is not None and event.kind == "progress" and event.data["job_id"] == "j1"
    assert events.get(0) is None and ann.metrics.progress_rejected._value.get() == 1


def test_the_devices_online_gauge_reads_the_store_at_most_once_per_ttl() -> None:
    store, clock = FleetStore(), FakeClock()
    store.statuses[("default", "pi-01")] = status("online", 1)
    ann = announcer(FakePublisher(), store=store, clock=clock)
    scrape = ann.metrics.registry.get_sample_value
    assert scrape("edgemeter_collector_devices_online") == 1
    store.statuses[("default", "pi-02")] = status("online", 1, "pi-02")
    assert scrape("edgemeter_collector_devices_online") == 1  # cached
    clock.now_s += DEVICES_ONLINE_TTL_S
    assert scrape("edgemeter_collector_devices_online") == 2


def test_the_devices_online_gauge_is_nan_while_the_store_cannot_say() -> None:
    class DownStore(FleetStore):
        def list_devices(self) -> list[Any]:
            raise StoreError("database is down (test)")

    ann = announcer(FakePublisher(), store=DownStore())
    value = ann.metrics.registry.get_sample_value("edgemeter_collector_devices_online")
    assert value is not None and math.isnan(value)


def test_the_ingest_lag_is_measured_from_created_at_to_the_commit() -> None:
    ann = announcer(FakePublisher())
    result = make_result(seq=1)
    ann.committed(Committed(stored_at=result.created_at + timedelta(seconds=3), results=[result],
                            new=1))
    lag = ann.metrics.registry.get_sample_value("edgemeter_collector_ingest_lag_seconds_sum")
    assert lag == pytest.approx(3.0)
