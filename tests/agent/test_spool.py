"""The spool keeps every result until a receipt names it, and the courier re-sends the rest."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from agent.delivery import Courier, deliver_once
from agent.spool import Spool
from shared.errors import BrokerError
from shared.messages import Receipt
from shared.payload import unpack
from shared.schema import BenchmarkResult
from tests.factories import make_result


class FakeClock:
    def __init__(self, start_s: float = 1_000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s


class RecordingConn:
    """Stands in for an MQTT connection: records publishes, can refuse after N."""

    def __init__(self, refuse_after: int | None = None) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.subscribed: list[str] = []
        self.refuse_after = refuse_after

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0) -> None:
        if self.refuse_after is not None and len(self.published) >= self.refuse_after:
            raise BrokerError("broker went away")
        self.published.append((topic, payload))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.append(topic)


def receipt(*results: BenchmarkResult) -> bytes:
    return Receipt(run_ids=[r.run_id for r in results]).model_dump_json().encode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spool(tmp_path: Path, clock: FakeClock) -> Spool:
    return Spool(tmp_path / "state" / "spool.db", clock_s=clock)


def test_a_result_leaves_the_spool_only_when_a_receipt_names_it(spool: Spool) -> None:
    courier = Courier(spool)
    first, second = make_result(seq=1), make_result(seq=2)
    spool.put(first)
    spool.put(second)
    conn = RecordingConn()
    assert courier.send_due(conn) == 2
    assert spool.depth() == 2, "a PUBACK is not a receipt"
    assert courier.on_receipt(receipt(first)) == 1
    assert [e.run_id for e in spool.pending()] == [str(second.run_id)]


def test_unconfirmed_results_are_sent_again_after_the_timeout_flagged_replayed(
    spool: Spool, clock: FakeClock,
) -> None:
    courier = Courier(spool, resend_after_s=60)
    result = make_result()
    spool.put(result)
    conn = RecordingConn()
    courier.send_due(conn)
    clock.now_s += 59
    assert courier.send_due(conn) == 0
    clock.now_s += 2
    assert courier.send_due(conn) == 1
    first, again = (json.loads(unpack(p)) for _, p in conn.published)
    assert "replayed" not in first or first["replayed"] is False
    assert again["replayed"] is True
    assert BenchmarkResult.model_validate(again).run_id == result.run_id


def test_resends_go_oldest_first_and_at_most_max_per_tick(spool: Spool, clock: FakeClock) -> None:
    courier = Courier(spool, max_per_tick=3)
    results = [make_result(seq=i) for i in range(7)]
    for r in results:
        spool.put(r)
        clock.now_s += 1
    conn = RecordingConn()
    assert courier.send_due(conn) == 3
    sent = [json.loads(unpack(p))["run_id"] for _, p in conn.published]
    assert sent == [str(r.run_id) for r in results[:3]]


def test_a_broker_error_mid_batch_keeps_the_unsent_results_due(spool: Spool) -> None:
    courier = Courier(spool)
    for i in range(4):
        spool.put(make_result(seq=i))
    with pytest.raises(BrokerError):
        courier.send_due(RecordingConn(refuse_after=2))
    assert len(spool.due(resend_after_s=60)) == 2
    assert spool.depth() == 4


def test_the_spool_drops_the_oldest_past_its_size_cap_and_counts_the_drops(
    tmp_path: Path, clock: FakeClock,
) -> None:
    size = len(make_result().model_dump_json())
    spool = Spool(tmp_path / "spool.db", max_bytes=int(size * 3.5), clock_s=clock)
    results = [make_result(seq=i) for i in range(6)]
    for r in results:
        spool.put(r)
        clock.now_s += 1
    kept = [e.run_id for e in spool.pending()]
    assert kept == [str(r.run_id) for r in results[-3:]]
    assert spool.dropped_total == 3


def test_the_spool_survives_a_reopen_with_its_results_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.put(make_result())
        assert spool.next_seq() == 1
        assert spool.next_bd_seq() == 1
    with Spool(path) as spool:
        assert spool.depth() == 1
        assert spool.next_seq() == 2
        assert spool.next_bd_seq() == 2


def test_the_spool_file_is_readable_by_its_owner_only(spool: Spool) -> None:
    spool.put(make_result())
    mode = stat.S_IMODE(spool.path.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)


def test_an_outbox_folder_of_the_earlier_layout_is_imported_once(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    results = [make_result(seq=i) for i in (4, 5)]
    for r in results:
        (outbox / f"x_{r.run_id}.json").write_text(r.model_dump_json())
    (outbox / "broken.json").write_text("{not json")
    (tmp_path / "seq").write_text("17")
    with Spool(tmp_path / "spool.db") as spool:
        assert spool.import_outbox(outbox) == 2
        assert spool.import_outbox(outbox) == 0
        assert {e.run_id for e in spool.pending()} == {str(r.run_id) for r in results}
        assert spool.next_seq() == 18
    assert (outbox / "broken.bad").exists()


def test_a_malformed_receipt_confirms_nothing(spool: Spool) -> None:
    spool.put(make_result())
    courier = Courier(spool)
    assert courier.on_receipt(b'{"run_ids": ["not-a-uuid"]}') == 0
    assert courier.on_receipt(b"\xff\x00") == 0
    assert spool.depth() == 1


def test_deliver_once_subscribes_to_each_receipt_topic_before_publishing(spool: Spool) -> None:
    a, b = make_result(device_id="pi-01"), make_result(device_id="pi-02", fleet="lab")
    spool.put(a)
    spool.put(b)
    courier = Courier(spool)
    conn = RecordingConn()
    confirmer = threading.Timer(0.05, lambda: courier.on_receipt(receipt(a, b)))
    confirmer.start()
    missing = deliver_once(courier, conn, receipt_timeout_s=30)
    confirmer.join()
    assert missing == set()
    assert conn.subscribed == ["edgemeter/v1/default/pi-01/receipt", "edgemeter/v1/lab/pi-02/receipt"]
    assert len(conn.published) == 2


def test_deliver_once_reports_what_no_receipt_confirmed(spool: Spool) -> None:
    result = make_result()
    spool.put(result)
    courier = Courier(spool)
    missing = courier.wait_for_receipts({str(result.run_id)}, timeout_s=0.3,
                                        wait=lambda cond, t: False)
    assert missing == {str(result.run_id)}
