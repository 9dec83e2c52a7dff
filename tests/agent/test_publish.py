"""Publishing results at QoS 1, and keeping them when the broker cannot be reached."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.publish import Outbox, publish
from edgemeter.cli import main
from edgemeter.demo.broker import free_port
from shared.mqtt import connect
from shared.schema import BenchmarkResult
from shared.topics import TopicKind, Topics
from tests.factories import make_result


def test_publish_delivers_a_validated_result_on_the_device_topic(mosquitto_url: str, tmp_path: Path) -> None:
    got: list[tuple[str, bytes]] = []
    arrived = threading.Event()

    def on_message(topic: str, payload: bytes) -> None:
        got.append((topic, payload))
        arrived.set()

    with connect(mosquitto_url, "test-sub", on_message=on_message,
                 on_connect=lambda c: c.subscribe(Topics.subscription(TopicKind.RESULT))) as sub:
        assert sub.protocol == "5"
        result = make_result(device_id="pi-07", fleet="lab")
        assert publish(result, mosquitto_url, Outbox(tmp_path / "outbox")) == 1
        assert arrived.wait(5)
    topic, payload = got[0]
    assert topic == "edgemeter/v1/lab/pi-07/result"
    assert BenchmarkResult.model_validate_json(payload).run_id == result.run_id
    assert Outbox(tmp_path / "outbox").pending() == []


def test_unreachable_broker_keeps_the_result_in_the_outbox_until_the_next_publish(
    mosquitto_url: str, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox")
    dead = f"mqtt://127.0.0.1:{free_port()}"
    first = make_result(seq=1)
    with pytest.raises(Exception, match="kept in"):
        publish(first, dead, outbox, timeout_s=2)
    assert len(outbox.pending()) == 1
    got: list[bytes] = []
    done = threading.Event()

    def on_message(_t: str, payload: bytes) -> None:
        got.append(payload)
        if len(got) == 2:
            done.set()

    with connect(mosquitto_url, "test-sub-2", on_message=on_message,
                 on_connect=lambda c: c.subscribe(Topics.subscription(TopicKind.RESULT))):
        assert publish(make_result(seq=2), mosquitto_url, outbox) == 2
        assert done.wait(5)
    assert [BenchmarkResult.model_validate_json(p).seq for p in got] == [1, 2]


def test_bench_exits_3_and_says_where_the_result_waits_when_the_broker_is_down(
    shared_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEMETER_OUTBOX", str(tmp_path / "outbox"))
    code = main(["bench", str(shared_models / "kws_dscnn_int8.tflite"), "--iterations", "20", "--power",
                 "none", "--fidelity", "0", "-q", "--publish", f"mqtt://127.0.0.1:{free_port()}"])
    assert code == 3
    assert "kept in" in capsys.readouterr().err
    assert len(Outbox(tmp_path / "outbox").pending()) == 1


def test_sequence_numbers_only_grow(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state" / "outbox")
    assert [outbox.next_seq() for _ in range(3)] == [1, 2, 3]
    assert Outbox(tmp_path / "state" / "outbox").next_seq() == 4
