"""``bench --publish`` on the spool: a result leaves the board only when the collector confirms it."""

from __future__ import annotations

import errno
import threading
import uuid
from pathlib import Path

import pytest

from agent.errors import PublishError
from agent.publish import publish_via_spool
from agent.spool import Spool
from edgemeter.cli import main
from edgemeter.demo.broker import free_port
from shared.messages import Receipt
from shared.mqtt import MqttConnection, connect
from shared.payload import unpack
from shared.schema import BenchmarkResult
from shared.topics import TopicKind, Topics
from tests.factories import make_result


class ReceiptingSubscriber:
    """Stands where the collector stands: takes results and answers each with a receipt."""

    def __init__(self, url: str, answer: bool = True) -> None:
        self.got: list[tuple[str, BenchmarkResult]] = []
        self.answer = answer
        self.conn: MqttConnection = connect(url, f"receipts-{uuid.uuid4().hex[:6]}",
                                            on_message=self._on_message)
        self._lock = threading.Lock()
        self.conn.subscribe(Topics.subscription(TopicKind.RESULT))
        # subscribed before anyone publishes: a result sent earlier would reach nobody
        assert self.conn.flush(30), "the broker did not answer the subscription"

    def _on_message(self, topic: str, payload: bytes) -> None:
        result = BenchmarkResult.model_validate_json(unpack(payload))  # zlib over 1 KiB
        with self._lock:
            self.got.append((topic, result))
        if self.answer:
            receipt = Receipt(run_ids=[result.run_id]).model_dump_json().encode()
            threading.Thread(target=self.conn.publish, daemon=True, args=(
                Topics.build(result.fleet, result.device_id, TopicKind.RECEIPT), receipt)).start()

    def close(self) -> None:
        self.conn.close()


def test_a_receipt_empties_the_spool_and_the_result_arrives_on_its_device_topic(
    mosquitto_url: str, tmp_path: Path,
) -> None:
    collector = ReceiptingSubscriber(mosquitto_url)
    try:
        with Spool(tmp_path / "spool.db") as spool:
            result = make_result(device_id="pi-07", fleet="lab")
            spool.put(result)
            delivery = publish_via_spool(spool, mosquitto_url, receipt_timeout_s=30)
            assert (delivery.sent, delivery.unconfirmed) == (1, frozenset())
            assert spool.depth() == 0
    finally:
        collector.close()
    topic, got = collector.got[0]
    assert topic == "edgemeter/v1/lab/pi-07/result" and got.run_id == result.run_id


def test_without_a_receipt_the_result_stays_in_the_spool(mosquitto_url: str, tmp_path: Path) -> None:
    silent = ReceiptingSubscriber(mosquitto_url, answer=False)
    try:
        with Spool(tmp_path / "spool.db") as spool:
            result = make_result()
            spool.put(result)
            delivery = publish_via_spool(spool, mosquitto_url, receipt_timeout_s=0.5)
            assert delivery.unconfirmed == {str(result.run_id)}
            assert spool.depth() == 1
    finally:
        silent.close()
    assert len(silent.got) == 1, "the broker acknowledged it; only the receipt is missing"


def test_an_unreachable_broker_keeps_the_results_until_the_next_publish_oldest_first(
    mosquitto_url: str, tmp_path: Path,
) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    with Spool(tmp_path / "spool.db") as spool:
        spool.put(make_result(seq=1))
        with pytest.raises(PublishError, match="kept in the spool"):
            publish_via_spool(spool, dead, timeout_s=2)
        assert spool.depth() == 1
        spool.put(make_result(seq=2))
        collector = ReceiptingSubscriber(mosquitto_url)
        try:
            delivery = publish_via_spool(spool, mosquitto_url, receipt_timeout_s=30)
        finally:
            collector.close()
        assert delivery.unconfirmed == frozenset() and spool.depth() == 0
    assert [r.seq for _, r in collector.got] == [1, 2]


def test_bench_exits_3_and_says_where_the_result_waits_when_the_broker_is_down(
    shared_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEMETER_SPOOL", str(tmp_path / "spool.db"))
    code = main(["bench", str(shared_models / "kws_dscnn_int8.tflite"), "--iterations", "20",
                 "--power", "none", "--fidelity", "0", "-q", "--publish",
                 f"mqtt://127.0.0.1:{free_port()}"])
    assert code == 3
    assert f"kept in the spool {tmp_path / 'spool.db'}" in capsys.readouterr().err
    with Spool(tmp_path / "spool.db") as spool:
        assert spool.depth() == 1 and spool.counter("seq") == 1


def test_a_json_write_that_fails_after_the_run_keeps_the_result_in_the_spool(
    shared_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEMETER_SPOOL", str(tmp_path / "spool.db"))
    target = tmp_path / "out.json"
    real_write = Path.write_text

    def disk_full(self: Path, *args: object, **kwargs: object) -> int:
        if self == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", disk_full)
    code = main(["bench", str(shared_models / "kws_dscnn_int8.tflite"), "--iterations", "20",
                 "--power", "none", "--fidelity", "0", "-q", "--json", str(target)])
    err = capsys.readouterr().err
    assert code == 2
    assert "No space left on device" in err and f"kept in the spool {tmp_path / 'spool.db'}" in err
    with Spool(tmp_path / "spool.db") as spool:
        assert spool.depth() == 1
