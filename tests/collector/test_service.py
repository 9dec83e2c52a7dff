"""CollectorService: with a fake broker connection and clock, and end to end with a real Mosquitto,
a real SQLite store and a paho publisher."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from collector.config import IngestSettings, MqttSettings
from collector.errors import StoreError, SubscribeError
from collector.records import DeadLetter
from collector.service import CollectorService
from collector.stores.base import Store, open_store
from shared.errors import BrokerError
from shared.mqtt import MqttConnection
from shared.schema import BenchmarkResult
from shared.topics import Topics
from tests.collector.conftest import wait_for
from tests.factories import make_result as _make_result

# A fleet of this module's own: the session's broker also carries other tests' messages (retained
# statuses of their daemons, results of their runs), which a collector of every fleet would count.
FLEET = f"svc-{uuid.uuid4().hex[:8]}"
TOPIC = Topics.result(FLEET, "pi-01")


def make_result(**fields: Any) -> BenchmarkResult:
    return _make_result(**{"fleet": FLEET, **fields})

ServiceFactory = Callable[..., CollectorService]


@pytest.fixture()
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    store = open_store(sqlite_url)
    yield store
    store.close()


@pytest.fixture()
def make_service(mosquitto_url: str) -> Iterator[ServiceFactory]:
    made: list[CollectorService] = []

    def factory(store: Store, **kwargs: Any) -> CollectorService:
        kwargs.setdefault("client_id", f"edgemeter-collector-test-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("fleet", FLEET)
        mqtt = {k: kwargs.pop(k) for k in list(kwargs) if k in MqttSettings.model_fields}
        service = CollectorService(store, MqttSettings(url=mosquitto_url, **mqtt),
                                   IngestSettings(**kwargs))
        made.append(service)
        service.start()
        return service

    yield factory
    for service in made:
        service.stop()


def publish(conn: MqttConnection, results: Sequence[BenchmarkResult]) -> None:
    for result in results:
        conn.publish(Topics.result(result.fleet, result.device_id),
                     result.model_dump_json().encode(), qos=1)


@pytest.mark.mqtt
def test_100_valid_results_are_stored(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection
) -> None:
    service = make_service(sqlite_store)
    sent = [make_result(device_id=f"pi-{i % 4:02d}", seq=i // 4) for i in range(100)]
    publish(publisher, sent)
    assert wait_for(lambda: service.stats["stored"] == 100), service.stats
    assert service.wait_idle(5)
    stats = service.stats
    assert stats["received"] == 100 and stats["dead_letters"] == 0 and stats["store_errors"] == 0
    stored = {str(r.run_id): r for r in sqlite_store.list_results()}
    assert stored == {str(r.run_id): r for r in sent}
    assert sqlite_store.list_dead_letters() == []
    with sqlite_store.engine.connect() as conn:  # type: ignore[attr-defined]
        topics = conn.exec_driver_sql("SELECT DISTINCT topic FROM results ORDER BY topic").all()
    assert [t[0] for t in topics] == [Topics.result(FLEET, f"pi-{i:02d}") for i in range(4)]


def malformed() -> list[tuple[str, str, bytes]]:
    """(topic, reason fragment, payload) for each reject class that can travel on a result topic."""
    good = json.loads(make_result().model_dump_json())
    return [
        (TOPIC, "over the 1048576 limit", b"{" + b" " * (2 * 1024 * 1024) + b"}"),
        (TOPIC, "not UTF-8", b"\xff\xfe\x00garbage"),
        (TOPIC, "not JSON", b"{not json"),
        (TOPIC, "not an object", b"[1, 2]"),
        (TOPIC, "unsupported schema_version 9", json.dumps({**good, "schema_version": 9}).encode()),
        (TOPIC, "latency_ms", json.dumps({**good, "latency_ms": None}).encode()),
        (TOPIC, "NUL", json.dumps({**good, "labels": {"x": "\u0000"}}).encode()),
        (Topics.result(FLEET, "pi-99"), "pi-99", json.dumps(good).encode()),
    ]


@pytest.mark.mqtt
def test_malformed_payloads_become_dead_letters_and_the_service_keeps_serving(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection
) -> None:
    service = make_service(sqlite_store)
    bad = malformed()
    for topic, _, payload in bad:
        publisher.publish(topic, payload, qos=1)
    after = make_result(seq=1)
    publish(publisher, [after])
    assert wait_for(lambda: service.stats["stored"] == 1 and
                    service.stats["dead_letters"] == len(bad)), service.stats
    letters: list[DeadLetter] = sqlite_store.list_dead_letters()
    assert [d.topic for d in letters] == [t for t, _, _ in bad]
    for letter, (_, _, payload) in zip(letters, bad, strict=True):  # the store may keep a prefix
        assert letter.payload and payload.startswith(letter.payload)
    for letter, (_, fragment, _) in zip(letters, bad, strict=True):
        assert fragment in letter.reason, (fragment, letter.reason)
    assert sqlite_store.list_results() == [after]


@pytest.mark.mqtt
def test_a_duplicate_publish_is_stored_once(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection
) -> None:
    service = make_service(sqlite_store)
    twice = make_result()
    publish(publisher, [twice, twice, twice])
    assert wait_for(lambda: service.stats["received"] == 3 and service.wait_idle(0)), \
        service.stats
    assert service.stats["stored"] == 1 and service.stats["duplicates"] == 2
    assert sqlite_store.list_results() == [twice]


@pytest.mark.mqtt
def test_results_published_while_stopped_arrive_on_restart(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection
) -> None:
    client_id = f"edgemeter-collector-persist-{uuid.uuid4().hex[:8]}"
    first = make_service(sqlite_store, client_id=client_id)
    first.stop()
    away = [make_result(seq=i) for i in range(20)]
    publish(publisher, away)
    second = make_service(sqlite_store, client_id=client_id)
    assert wait_for(lambda: second.stats["stored"] == 20), second.stats
    assert {r.run_id for r in sqlite_store.list_results()} == {r.run_id for r in away}


@pytest.mark.mqtt
def test_a_shared_group_splits_the_stream(
    sqlite_url: str, make_service: ServiceFactory, publisher: MqttConnection
) -> None:
    stores = [open_store(sqlite_url), open_store(sqlite_url)]
    group = f"g{uuid.uuid4().hex[:6]}"
    services = [make_service(s, group=group) for s in stores]
    assert services[0].subscription.startswith(f"$share/{group}/")
    publish(publisher, [make_result(seq=i) for i in range(40)])
    assert wait_for(lambda: sum(s.stats["stored"] for s in services) == 40), \
        [s.stats for s in services]
    assert sum(s.stats["received"] for s in services) == 40
    assert len(stores[0].list_results()) == 40
    for store in stores:
        store.close()


class FlakyStore:
    """Wraps a store; fails every write while ``down``, and refuses ``poison`` run ids."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.down = False
        self.poison: set[str] = set()

    def _check(self) -> None:
        if self.down:
            raise StoreError("database is down (test)")

    def add_results(
        self, results: Sequence[BenchmarkResult], *, topics: Sequence[str] | None = None,
        payloads: Sequence[bytes] | None = None,
    ) -> int:
        self._check()
        if any(str(r.run_id) in self.poison for r in results):
            raise StoreError("row refused (test)")
        return self.inner.add_results(results, topics=topics, payloads=payloads)

    def add_dead_letter(self, topic: str, reason: str, payload: bytes, *,
                        device_id: str | None = None, retained: bool = False) -> None:
        self._check()
        self.inner.add_dead_letter(topic, reason, payload, device_id=device_id, retained=retained)

    def list_dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        self._check()
        return self.inner.list_dead_letters(limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.mqtt
def test_a_store_outage_is_counted_and_the_messages_are_retried(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = FlakyStore(sqlite_store)
    service = make_service(flaky, retry_interval_s=0.05)
    flaky.down = True
    sent = [make_result(seq=i) for i in range(10)]
    publish(publisher, sent)
    publisher.publish(TOPIC, b"not json", qos=1)
    assert wait_for(lambda: service.stats["received"] == 11 and service.stats["queued"] == 11
                    and service.stats["retry_pending"] > 0), service.stats
    assert service.stats["store_errors"] >= 1 and service.stats["stored"] == 0
    assert service.store_down and "database is down (test)" in caplog.text
    flaky.down = False
    assert wait_for(lambda: service.stats["stored"] == 10 and service.stats["dead_letters"] == 1)
    assert service.stats["retry_pending"] == 0 and not service.store_down
    assert len(sqlite_store.list_results()) == 10 and len(sqlite_store.list_dead_letters()) == 1


@pytest.mark.mqtt
def test_a_row_the_store_refuses_is_retried_and_never_becomes_a_dead_letter(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection,
) -> None:
    flaky = FlakyStore(sqlite_store)
    service = make_service(flaky, retry_interval_s=0.02, retry_max_interval_s=0.05)
    poison = make_result(seq=99)
    flaky.poison.add(str(poison.run_id))
    publish(publisher, [make_result(seq=1), poison])
    assert wait_for(lambda: service.stats["store_errors"] >= 3), service.stats
    assert service.stats["dead_letters"] == 0 and service.store_down
    flaky.poison.clear()  # the store's problem is fixed
    assert wait_for(lambda: service.stats["stored"] == 2), service.stats
    assert service.stats["dead_letters"] == 0 and sqlite_store.list_dead_letters() == []


def crash(service: CollectorService) -> None:
    """End the service's broker connection as a crash would: no DISCONNECT, no more acks."""
    conn = service.intake.connection
    assert isinstance(conn, MqttConnection)
    conn.client.loop_stop()  # paho's network thread ends; nothing sent after this
    conn.client.socket().close()  # the broker sees the TCP connection drop


@pytest.mark.mqtt
def test_messages_received_but_not_stored_survive_a_crash(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection,
) -> None:
    client_id = f"edgemeter-collector-crash-{uuid.uuid4().hex[:8]}"
    flaky = FlakyStore(sqlite_store)
    flaky.down = True
    first = make_service(flaky, client_id=client_id, retry_interval_s=0.05)
    sent = [make_result(seq=i) for i in range(20)]
    publish(publisher, sent)
    publisher.publish(TOPIC, b"not json", qos=1)
    assert wait_for(lambda: first.stats["received"] == 21 and first.stats["queued"] == 21
                    and first.stats["retry_pending"] > 0), first.stats
    crash(first)  # the database never came back: all 21 are only in the dead collector's memory

    second = make_service(sqlite_store, client_id=client_id)
    assert wait_for(lambda: second.stats["stored"] == 20
                    and second.stats["dead_letters"] == 1), second.stats
    assert {r.run_id for r in sqlite_store.list_results()} == {r.run_id for r in sent}
    assert [d.payload for d in sqlite_store.list_dead_letters()] == [b"not json"]


@pytest.mark.mqtt
def test_stored_messages_are_acknowledged_and_not_delivered_again(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection,
) -> None:
    client_id = f"edgemeter-collector-ack-{uuid.uuid4().hex[:8]}"
    first = make_service(sqlite_store, client_id=client_id)
    publish(publisher, [make_result(seq=i) for i in range(10)])
    publisher.publish(TOPIC, b"not json", qos=1)
    assert wait_for(lambda: first.stats["stored"] == 10 and first.stats["dead_letters"] == 1)
    first.stop()

    second = make_service(sqlite_store, client_id=client_id)
    marker = make_result(seq=99)
    publish(publisher, [marker])  # the broker sends a session's unacked messages before new ones
    assert wait_for(lambda: second.stats["stored"] == 1 and second.wait_idle(0)), second.stats
    assert second.stats["received"] == 1 and second.stats["duplicates"] == 0, second.stats
    assert len(sqlite_store.list_dead_letters()) == 1


@pytest.mark.mqtt
def test_stop_drains_the_queue(sqlite_store: Store, make_service: ServiceFactory,
                               publisher: MqttConnection) -> None:
    flaky = FlakyStore(sqlite_store)
    flaky.down = True  # so that the messages wait in the queue
    service = make_service(flaky, batch_size=1000, retry_interval_s=0.02)
    publish(publisher, [make_result(seq=i) for i in range(30)])
    assert wait_for(lambda: service.stats["received"] == 30)
    flaky.down = False
    service.stop()
    assert service.stats["stored"] == 30 and service.stats["queued"] == 0


@pytest.mark.mqtt
def test_an_unreachable_broker_is_a_publish_error_and_leaves_no_thread(
    sqlite_store: Store, tmp_path: Path
) -> None:
    before = threading.active_count()
    service = CollectorService(
        sqlite_store, MqttSettings(url="mqtt://127.0.0.1:1", client_id="x", connect_timeout_s=2))
    with pytest.raises(BrokerError, match="is it running"):
        service.start()
    assert threading.active_count() == before


# -- with a fake broker connection and a fake clock ---------------------------------------------


class FakeConnection:
    """Records what the service asks of the broker, in order; grants every subscription."""

    protocol = "5"

    def __init__(self, calls: list[tuple[Any, ...]], grant: bool = True) -> None:
        self.calls = calls
        self.grant = grant

    def subscribe(self, topic: str, qos: int = 1, on_granted: Any = None) -> None:
        self.calls.append(("subscribe", topic, qos))
        if on_granted is not None and self.grant:
            on_granted(True, "")

    def ack(self, mid: int, qos: int) -> None:
        self.calls.append(("ack", mid))

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0, *,
                retain: bool = False, wait: bool = True) -> None:
        self.calls.append(("publish", topic, payload, qos, retain))

    def flush(self, timeout_s: float = 10.0) -> bool:
        self.calls.append(("flush",))
        return True

    def close(self) -> None:
        self.calls.append(("close",))


class FakeBroker:
    """A connect function: keeps the options it was called with and the message handler."""

    def __init__(self, grant: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.options: dict[str, Any] = {}
        self.deliver: Callable[[str, bytes, int, int], None] | None = None
        self.grant = grant

    def __call__(self, url: str, client_id: str, **options: Any) -> FakeConnection:
        self.options = {"url": url, "client_id": client_id, **options}
        self.deliver = options["on_message_ack"]
        conn = FakeConnection(self.calls, self.grant)
        options["on_connect"](conn)
        return conn

    def acks(self) -> list[int]:
        return [c[1] for c in self.calls if c[0] == "ack"]


class MemoryStore:
    """Just what the service writes to; ``down`` makes every call fail."""

    url = "memory://"

    def __init__(self) -> None:
        self.run_ids: set[str] = set()
        self.letters: list[bytes] = []
        self.letter_meta: list[tuple[str | None, bool]] = []  # (device_id, retained)
        self.down = False
        self.writes = 0

    def add_results(self, results: Sequence[BenchmarkResult], *,
                    topics: Sequence[str] | None = None,
                    payloads: Sequence[bytes] | None = None) -> int:
        self.writes += 1
        if self.down:
            raise StoreError("database is down (test)")
        new = {str(r.run_id) for r in results} - self.run_ids
        self.run_ids |= new
        return len(new)

    def add_dead_letter(self, topic: str, reason: str, payload: bytes, *,
                        device_id: str | None = None, retained: bool = False) -> None:
        if self.down:
            raise StoreError("database is down (test)")
        self.letters.append(payload)
        self.letter_meta.append((device_id, retained))

    def list_dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        if self.down:
            raise StoreError("database is down (test)")
        return []


class FakeClock:
    """Time moves only when the test says so; ``reads`` counts how often the service looked."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now_s


def fake_service(broker: FakeBroker, store: MemoryStore, clock: FakeClock | None = None,
                 **mqtt: Any) -> CollectorService:
    return CollectorService(
        store,  # type: ignore[arg-type]
        MqttSettings(url="mqtt://collector:url-secret@broker.example:1883", client_id="c1",
                     **mqtt),
        IngestSettings(retry_interval_s=5.0, retry_max_interval_s=20.0),
        connect=broker, clock=clock or FakeClock(),
    )


def deliver(broker: FakeBroker, results: Sequence[BenchmarkResult], first_mid: int = 1) -> None:
    assert broker.deliver is not None
    for mid, result in enumerate(results, start=first_mid):
        broker.deliver(Topics.result(result.fleet, result.device_id),
                       result.model_dump_json().encode(), mid, 1)


def test_stop_has_the_broker_confirm_every_ack_before_disconnecting() -> None:
    broker, store = FakeBroker(), MemoryStore()
    service = fake_service(broker, store)
    service.start()
    deliver(broker, [make_result(seq=i) for i in range(5)])
    assert broker.deliver is not None
    broker.deliver(TOPIC, b"not json", 6, 1)
    service.stop()
    assert service.stats["stored"] == 5 and service.stats["dead_letters"] == 1
    tail = [c[0] for c in broker.calls[-4:]]
    assert sorted(broker.acks()) == [1, 2, 3, 4, 5, 6]
    assert tail == ["ack", "publish", "flush", "close"], broker.calls  # the publish: "offline"


def test_the_service_connects_with_its_settings_credentials_and_tls_files(tmp_path: Path) -> None:
    broker, store = FakeBroker(), MemoryStore()
    service = fake_service(broker, store, username="collector", password="set-secret",
                           keepalive_s=45, session_expiry_s=600,
                           tls={"ca_file": tmp_path / "ca.pem"})
    service.start()
    service.stop()
    options = broker.options
    assert options["username"] == "collector" and options["password"] == "set-secret"
    assert options["ca_file"] == tmp_path / "ca.pem" and options["cert_file"] is None
    assert options["keepalive_s"] == 45 and options["session_expiry_s"] == 600
    assert options["clean_start"] is False and options["manual_ack"] is True
    assert options["client_id"] == "c1"


def test_a_refused_subscription_is_an_error_that_hides_the_broker_password() -> None:
    service = fake_service(FakeBroker(grant=False), MemoryStore(), connect_timeout_s=0.05)
    with pytest.raises(SubscribeError) as info:
        service.start()
    assert "url-secret" not in str(info.value)
    assert "collector:***@broker.example:1883" in str(info.value)


def test_a_failed_batch_waits_for_the_clock_before_it_is_retried() -> None:
    broker, store, clock = FakeBroker(), MemoryStore(), FakeClock()
    service = fake_service(broker, store, clock)
    service.start()
    try:
        store.down = True
        deliver(broker, [make_result(seq=i) for i in range(3)])
        assert wait_for(lambda: service.stats["retry_pending"] == 3), service.stats
        store.down = False
        writes, reads = store.writes, clock.reads
        assert wait_for(lambda: clock.reads >= reads + 3)  # the writer looked, and it is not due
        assert store.writes == writes and service.stats["stored"] == 0 and broker.acks() == []
        clock.now_s += 5.0
        assert wait_for(lambda: service.stats["stored"] == 3), service.stats
        assert service.stats["retry_pending"] == 0 and sorted(broker.acks()) == [1, 2, 3]
    finally:
        service.stop()


def test_retries_back_off_doubling_up_to_the_cap_and_never_give_up() -> None:
    broker, store, clock = FakeBroker(), MemoryStore(), FakeClock()
    service = fake_service(broker, store, clock)  # 5 s first, 20 s at most
    service.start()
    try:
        store.down = True
        deliver(broker, [make_result(seq=0)])
        assert wait_for(lambda: store.writes == 1)
        for expected_s in (5.0, 10.0, 20.0, 20.0, 20.0):
            writes = store.writes
            clock.now_s += expected_s - 0.01
            reads = clock.reads
            assert wait_for(lambda: clock.reads >= reads + 3)  # noqa: B023 (not due yet)
            assert store.writes == writes, expected_s
            clock.now_s += 0.01
            assert wait_for(lambda: store.writes == writes + 1), expected_s  # noqa: B023
        assert service.stats["stored"] == 0 and broker.acks() == []
        assert service.metrics.store_retries._value.get() == 5
        store.down = False
        clock.now_s += 20.0
        assert wait_for(lambda: service.stats["stored"] == 1), service.stats
        assert broker.acks() == [1] and service.stats["dead_letters"] == 0
    finally:
        service.stop()


def test_the_backlog_gauge_reads_the_messages_held_unacknowledged_when_scraped() -> None:
    broker, store, clock = FakeBroker(), MemoryStore(), FakeClock()
    service = fake_service(broker, store, clock)
    backlog = service.metrics.backlog

    def scraped() -> float:
        return next(iter(backlog.collect())).samples[0].value

    service.start()
    try:
        store.down = True
        deliver(broker, [make_result(seq=i) for i in range(4)])
        assert wait_for(lambda: service.stats["retry_pending"] == 4), service.stats
        assert scraped() == 4
        store.down = False
        clock.now_s += 5.0
        assert wait_for(lambda: service.stats["stored"] == 4), service.stats
        assert wait_for(lambda: scraped() == 0)
    finally:
        service.stop()


@pytest.fixture()
def python_gc_settings() -> Iterator[tuple[int, int, int]]:
    """Python's collector settings before the test, restored after it (they are process-wide)."""
    import gc

    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)
    gc.unfreeze()


def test_start_raises_the_gc_threshold_and_freezes_what_is_loaded(
        python_gc_settings: tuple[int, int, int]) -> None:
    import gc

    gc.set_threshold(700, *python_gc_settings[1:])
    gc.unfreeze()
    service = fake_service(FakeBroker(), MemoryStore())
    service.start()
    service.stop()
    assert gc.get_threshold() == (10_000, *python_gc_settings[1:])
    assert gc.get_freeze_count() > 0


def test_a_gc_threshold_of_0_leaves_pythons_settings_alone(
        python_gc_settings: tuple[int, int, int]) -> None:
    import gc

    gc.set_threshold(700, *python_gc_settings[1:])
    gc.unfreeze()
    service = CollectorService(
        MemoryStore(),  # type: ignore[arg-type]
        MqttSettings(url="mqtt://broker.example:1883", client_id="c1"),
        IngestSettings(gc_threshold=0), connect=FakeBroker(), clock=FakeClock())
    service.start()
    service.stop()
    assert gc.get_threshold()[0] == 700 and gc.get_freeze_count() == 0


@pytest.mark.mqtt
def test_a_session_taken_over_by_the_same_client_id_is_logged_as_an_error_and_counted(
    sqlite_store: Store, make_service: ServiceFactory, publisher: MqttConnection,
    mosquitto_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.mqtt import connect

    client_id = f"edgemeter-collector-taken-{uuid.uuid4().hex[:8]}"
    service = make_service(sqlite_store, client_id=client_id)
    intruder = connect(mosquitto_url, client_id)  # e.g. a device login using the collector's id
    try:
        assert wait_for(lambda: service.metrics.registry.get_sample_value(
            "edgemeter_collector_session_takeovers_total") == 1)
    finally:
        intruder.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("same client id" in e and client_id in e for e in errors), errors
    # paho reconnects and the collector goes on storing; what was published while it was away
    # is lost with the session the intruder wiped (clean start), so publish until one arrives
    for seq in range(30):
        publish(publisher, [make_result(seq=seq)])
        if wait_for(lambda: service.stats["stored"] >= 1, timeout_s=0.5):
            break
    assert service.stats["stored"] >= 1, service.stats
    assert service.intake.subscribed


def test_the_stats_line_is_reported_only_when_the_counters_changed() -> None:
    from collector.service import ReportChanges

    said: list[dict[str, int]] = []
    report = ReportChanges(said.append)
    for stats in ({"stored": 0}, {"stored": 0}, {"stored": 3}, {"stored": 3}, {"stored": 0}):
        report(dict(stats))
    assert said == [{"stored": 0}, {"stored": 3}, {"stored": 0}]
