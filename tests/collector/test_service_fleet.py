"""CollectorService beyond results: receipts, presence, telemetry, job acks, progress, events,
metrics and outage reports; with a fake broker connection and a fake clock."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from collector.config import IngestSettings, MqttSettings
from collector.errors import StoreError
from collector.events import EventBus
from collector.health import CollectorStatus
from collector.inbox import Delivery, Item
from collector.metrics import CollectorMetrics
from collector.service import CollectorService
from shared.messages import JobAck, Progress, Receipt, Status, Telemetry
from shared.presence import status_wins
from shared.topics import TopicKind, Topics
from tests.collector.conftest import wait_for
from tests.collector.test_service import FakeBroker, FakeClock, MemoryStore, deliver
from tests.factories import make_result


class FleetStore(MemoryStore):
    """MemoryStore plus the devices and jobs methods."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[tuple[str, str], Status] = {}
        self.telemetry: list[Telemetry] = []
        self.acks: list[JobAck] = []

    def record_status(self, status: Status, received_at: datetime) -> bool:
        if self.down:
            raise StoreError("database is down (test)")
        key = (status.fleet, status.device_id)
        if not status_wins(self.statuses.get(key), status):
            return False
        self.statuses[key] = status
        return True

    def list_devices(self) -> list[Status]:
        return list(self.statuses.values())  # what the gauge reads of a record: .status

    def record_telemetry(self, telemetry: Telemetry, received_at: datetime) -> None:
        if self.down:
            raise StoreError("database is down (test)")
        self.telemetry.append(telemetry)

    def record_ack(self, ack: JobAck, received_at: datetime) -> None:
        if self.down:
            raise StoreError("database is down (test)")
        self.acks.append(ack)


def make_service(broker: FakeBroker, store: MemoryStore, clock: FakeClock | None = None,
                 events: EventBus | None = None) -> CollectorService:
    return CollectorService(
        store,  # type: ignore[arg-type]
        MqttSettings(url="mqtt://broker.example:1883", client_id="c1"),
        IngestSettings(retry_interval_s=5.0, retry_max_interval_s=5.0),
        connect=broker, clock=clock or FakeClock(), metrics=CollectorMetrics(), events=events,
    )


def send(broker: FakeBroker, kind: TopicKind, message: object, mid: int, *,
         device_id: str = "pi-01", fleet: str = "default", qos: int = 1) -> None:
    assert broker.deliver is not None
    payload = message if isinstance(message, bytes) else message.model_dump_json().encode()  # type: ignore[attr-defined]
    broker.deliver(Topics.build(fleet, device_id, kind), payload, mid, qos)


def publishes(broker: FakeBroker, kind: str) -> list[tuple[str, bytes, bool]]:
    return [(c[1], c[2], c[4]) for c in broker.calls
            if c[0] == "publish" and c[1].endswith("/" + kind)]


def status(state: str, bd_seq: int, device_id: str = "pi-01") -> Status:
    return Status(device_id=device_id, fleet="default", status=state,
                  bd_seq=bd_seq, sent_at=datetime.now(timezone.utc))


def test_a_receipt_per_device_names_every_stored_run_id_duplicates_included_before_the_acks() \
        -> None:
    broker, store = FakeBroker(), MemoryStore()
    service = make_service(broker, store)
    service.start()
    a = [make_result(device_id="pi-01", seq=i) for i in range(3)]
    b = make_result(device_id="pi-02", seq=0)
    store.run_ids.add(str(a[0].run_id))  # already stored: a re-send
    deliver(broker, [*a, b])
    service.stop()
    receipts = {topic: Receipt.model_validate_json(payload)
                for topic, payload, _ in publishes(broker, "receipt")}
    assert set(receipts) == {Topics.build("default", "pi-01", TopicKind.RECEIPT),
                             Topics.build("default", "pi-02", TopicKind.RECEIPT)}
    pi01 = receipts[Topics.build("default", "pi-01", TopicKind.RECEIPT)]
    assert {str(r) for r in pi01.run_ids} == {str(r.run_id) for r in a}
    assert pi01.collector == "c1"
    assert service.stats["stored"] == 3 and service.stats["duplicates"] == 1
    kinds = [c[0] for c in broker.calls if c[0] in ("publish", "ack")]
    first_ack = kinds.index("ack")
    assert kinds[first_ack - 2:first_ack] == ["publish", "publish"]  # receipts, then acks


def test_no_receipt_and_no_ack_while_the_store_is_down() -> None:
    broker, store = FakeBroker(), MemoryStore()
    service = make_service(broker, store)
    store.down = True
    service.start()
    try:
        deliver(broker, [make_result()])
        assert wait_for(lambda: service.store_down)
        assert publishes(broker, "receipt") == [] and broker.acks() == []
    finally:
        service.stop()


def test_status_telemetry_and_acks_are_recorded_and_acknowledged() -> None:
    broker, store = FakeBroker(), FleetStore()
    service = make_service(broker, store)
    service.start()
    send(broker, TopicKind.STATUS, status("online", 3), 1)
    send(broker, TopicKind.STATUS, status("offline", 2), 2)  # a stale Will: ignored by the rule
    send(broker, TopicKind.TELEMETRY, Telemetry(device_id="pi-01", fleet="default", uptime_s=5,
                                                spool_depth=7), 3, qos=0)
    send(broker, TopicKind.ACK, JobAck(device_id="pi-01", fleet="default", job_id="j1",
                                       state="accepted"), 4)
    service.stop()
    assert store.statuses[("default", "pi-01")].bd_seq == 3
    assert [t.spool_depth for t in store.telemetry] == [7]
    assert [a.job_id for a in store.acks] == ["j1"]
    assert sorted(broker.acks()) == [1, 2, 3, 4]
    assert store.letters == []
    metrics = service.metrics
    assert metrics.registry.get_sample_value("edgemeter_collector_devices_online") == 1
    assert metrics.spool_depth._value.get() == 7
    assert metrics.received.labels(kind="status")._value.get() == 2


def test_a_retained_status_sent_again_after_a_restart_changes_nothing() -> None:
    store = FleetStore()
    for _ in range(2):  # the broker re-sends retained statuses on every (re)start
        broker = FakeBroker()
        service = make_service(broker, store)
        service.start()
        send(broker, TopicKind.STATUS, status("offline", 4), 1)
        send(broker, TopicKind.STATUS, status("online", 5, "pi-02"), 2, device_id="pi-02")
        service.stop()
        assert store.statuses[("default", "pi-01")].status == "offline"
        assert store.statuses[("default", "pi-02")].bd_seq == 5
        assert store.letters == []
        online = service.metrics.registry.get_sample_value("edgemeter_collector_devices_online")
        assert online == 1  # from the store, so right after a restart too


def test_a_status_naming_another_device_is_a_dead_letter() -> None:
    broker, store = FakeBroker(), FleetStore()
    service = make_service(broker, store)
    service.start()
    send(broker, TopicKind.STATUS, status("online", 1, device_id="pi-09"), 1, device_id="pi-01")
    send(broker, TopicKind.TELEMETRY, b'{"schema_version": 1, "nonsense": true}', 2)
    service.stop()
    assert store.statuses == {} and len(store.letters) == 2
    assert store.letter_meta == [("pi-01", True), ("pi-01", False)]  # a status comes retained
    assert service.metrics.dead_letters.labels(reason="mismatch")._value.get() == 1
    assert service.metrics.dead_letters.labels(reason="invalid")._value.get() == 1


def test_progress_goes_to_the_event_bus_only_and_an_invalid_one_is_counted() -> None:
    broker, store, bus = FakeBroker(), FleetStore(), EventBus()
    service = make_service(broker, store, events=bus)
    events = bus.subscribe()
    service.start()
    send(broker, TopicKind.PROGRESS, Progress(device_id="pi-01", fleet="default", job_id="j1",
                                             phase="measure", iterations_done=10), 1, qos=0)
    send(broker, TopicKind.PROGRESS, b"{oops", 2, qos=0)
    deliver(broker, [make_result(seq=1)], first_mid=3)
    service.stop()
    first, second = events.get(1), events.get(1)
    assert first is not None and first.kind == "progress" and first.data["iterations_done"] == 10
    assert second is not None and second.kind == "result"
    assert set(second.data) >= {"run_id", "device_id", "model", "p50_ms", "throughput_sps", "watts"}
    assert store.letters == [] and service.metrics.progress_rejected._value.get() == 1


def test_collector_status_messages_are_ignored_not_dead_lettered() -> None:
    broker, store = FakeBroker(), FleetStore()
    service = make_service(broker, store)
    service.start()
    assert broker.deliver is not None
    other = CollectorStatus(collector="c2", state="online", since=datetime.now(timezone.utc))
    broker.deliver("edgemeter/v1/_collector/c2/status", other.model_dump_json().encode(), 1, 1)
    service.stop()
    assert store.letters == [] and broker.acks() == [1] and service.stats["received"] == 0


def test_an_outage_is_logged_once_reported_in_metrics_and_status_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.service")
    broker, store, clock = FakeBroker(), FleetStore(), FakeClock()
    service = make_service(broker, store, clock)
    service.start()
    try:
        store.down = True
        deliver(broker, [make_result(seq=i) for i in range(3)])
        assert wait_for(lambda: store.writes >= 1 and service.store_down)
        for _ in range(3):
            writes = store.writes
            clock.now_s += 5.0
            assert wait_for(lambda: store.writes > writes)  # noqa: B023
        assert service.metrics.store_outage._value.get() == 1
        store.down = False
        clock.now_s += 5.0
        assert wait_for(lambda: service.stats["stored"] == 3)
    finally:
        service.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    recovered = [r for r in caplog.records if "works again" in r.getMessage()]
    assert len(errors) == 1 and "retrying" in errors[0].getMessage()
    assert len(recovered) == 1 and recovered[0].levelno == logging.WARNING
    assert service.metrics.store_outage._value.get() == 0
    states = [json.loads(p)["state"] for t, p, retain in publishes(broker, "status")
              if t == "edgemeter/v1/_collector/c1/status" and retain]
    assert states == ["online", "store-down", "online", "offline"]


def test_the_service_asks_for_its_receive_maximum_and_registers_an_offline_will() -> None:
    broker = FakeBroker()
    service = make_service(broker, MemoryStore())
    service.start()
    service.stop()
    assert broker.options["receive_maximum"] == 1000
    will = broker.options["will"]
    assert will.topic == "edgemeter/v1/_collector/c1/status" and will.retain
    assert CollectorStatus.model_validate_json(will.payload).state == "offline"
    subscribed = [c[1] for c in broker.calls if c[0] == "subscribe"]
    assert subscribed == [f"edgemeter/v1/+/+/{k}"
                          for k in ("result", "status", "telemetry", "progress", "ack", "monitor")]


def test_two_services_keep_their_metrics_apart() -> None:
    one = make_service(FakeBroker(), MemoryStore())
    two = make_service(FakeBroker(), MemoryStore())
    assert one.metrics.registry is not two.metrics.registry


# -- final job acks get receipts -----------------------------------------------------------------


def test_a_final_job_ack_is_stored_once_and_receipted_each_time_it_is_announced(
        sqlite_url: str) -> None:
    from collector.stores.base import open_store

    store = open_store(sqlite_url)
    broker = FakeBroker()
    service = make_service(broker, store)  # type: ignore[arg-type]
    service.start()
    try:
        running = JobAck(device_id="pi-01", fleet="default", job_id="j1", state="running")
        done = JobAck(device_id="pi-01", fleet="default", job_id="j1", state="done",
                      sent_at=running.sent_at + timedelta(seconds=1))
        send(broker, TopicKind.ACK, running, 1)
        send(broker, TopicKind.ACK, done, 2)
        assert wait_for(lambda: len(publishes(broker, "receipt")) == 1)
        send(broker, TopicKind.ACK, done, 3)  # the agent re-announces it after a reconnect
        assert wait_for(lambda: len(publishes(broker, "receipt")) == 2)
        assert service.wait_idle(5)
        jobs = store.list_jobs()
    finally:
        service.stop()
        store.close()
    assert [(j.job_id, j.state) for j in jobs] == [("j1", "done")]
    for topic, payload, retain in publishes(broker, "receipt"):
        receipt = Receipt.model_validate_json(payload)
        assert topic == Topics.build("default", "pi-01", TopicKind.RECEIPT) and not retain
        assert receipt.job_ids == ["j1"] and receipt.run_ids == [] and receipt.collector == "c1"
    kinds = [(c[0], c[1]) for c in broker.calls if c[0] == "ack" or
             (c[0] == "publish" and c[1].endswith("/receipt"))]
    receipt_topic = Topics.build("default", "pi-01", TopicKind.RECEIPT)
    assert kinds.index(("publish", receipt_topic)) < kinds.index(("ack", 2))  # receipt, then ack


def test_a_batch_with_results_and_a_final_ack_of_one_device_gets_one_receipt_naming_both() -> None:
    broker, store = FakeBroker(), FleetStore()
    service = make_service(broker, store)
    result = make_result(device_id="pi-01", seq=0)

    items = [Item(Topics.result("default", "pi-01"), result.model_dump_json().encode(),
                  Delivery(1, 1, 1), datetime.now(timezone.utc)),
             Item(Topics.build("default", "pi-01", TopicKind.ACK),
                  JobAck(device_id="pi-01", fleet="default", job_id="j7", state="failed",
                         reason="out of memory").model_dump_json().encode(),
                  Delivery(1, 2, 1), datetime.now(timezone.utc))]
    service.start()
    try:
        assert service.writer.write(items) == []  # one batch, as the writer takes it
    finally:
        service.stop()
    assert sorted(broker.acks()) == [1, 2]
    (receipt,) = [Receipt.model_validate_json(p) for _, p, _ in publishes(broker, "receipt")]
    assert receipt.run_ids == [result.run_id] and receipt.job_ids == ["j7"]


# -- a store outage closes the receive window ----------------------------------------------------


def test_a_store_outage_closes_the_window_sends_no_receipt_and_drains_once_the_store_is_back() \
        -> None:
    import threading

    broker, store, clock = FakeBroker(), FleetStore(), FakeClock()
    service = CollectorService(
        store,  # type: ignore[arg-type]
        MqttSettings(url="mqtt://broker.example:1883", client_id="c1"),
        IngestSettings(retry_interval_s=5.0, retry_max_interval_s=5.0, receive_maximum=4),
        connect=broker, clock=clock, metrics=CollectorMetrics(),
    )
    service.start()
    results = [make_result(seq=i) for i in range(6)]
    try:
        store.down = True
        network = threading.Thread(target=deliver, args=(broker, results), daemon=True)
        network.start()
        assert wait_for(lambda: service.store_down and service.stats["received"] == 4)
        assert network.is_alive()  # the window is full: the network thread reads no more
        assert publishes(broker, "receipt") == [] and broker.acks() == []
        assert CollectorStatus.model_validate_json(publishes(broker, "status")[-1][1]).state \
            == "store-down"
        store.down = False
        clock.now_s += 5.0
        network.join(10)
        assert wait_for(lambda: service.stats["stored"] == 6), service.stats
        assert not service.store_down
    finally:
        service.stop()
    assert sorted(broker.acks()) == [1, 2, 3, 4, 5, 6]
    stored_ids = {str(r.run_id) for r in results}
    receipted = {str(run_id) for _, payload, _ in publishes(broker, "receipt")
                 for run_id in Receipt.model_validate_json(payload).run_ids}
    assert receipted == stored_ids
    calls = [c[0] if c[0] == "ack" else c[1].rpartition("/")[2] for c in broker.calls
             if c[0] == "ack" or (c[0] == "publish" and c[1].endswith("/receipt"))]
    assert calls[0] == "receipt"  # nothing acknowledged before the first commit's receipt
