"""``edgemeter simulate`` on a real broker: what it says it sent is what a subscriber receives."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

from edgemeter.cli import main
from edgemeter.commands.simulate import simulate, synthetic_result
from shared.messages import Status
from shared.mqtt import connect
from shared.payload import unpack
from shared.schema import BenchmarkResult


def test_synthetic_results_are_schema_valid_and_varied() -> None:
    import random

    rng = random.Random(1)
    results = [synthetic_result(rng, f"sim-{i}", "sim", i + 1, i) for i in range(30)]
    for r in results:
        BenchmarkResult.model_validate_json(r.model_dump_json())
        assert r.latency_ms.min <= r.latency_ms.p50 <= r.latency_ms.p99 <= r.latency_ms.max
    assert len({r.model.name for r in results}) > 1
    assert len({r.device.board for r in results}) > 1


def test_every_result_the_simulator_sent_reaches_a_subscriber_once(
    mosquitto_url: str, tmp_path: Path,
) -> None:
    fleet = f"sim{uuid.uuid4().hex[:6]}"
    received: list[str] = []
    statuses: dict[str, list[str]] = {}
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            if topic.endswith("/result"):
                received.append(str(BenchmarkResult.model_validate_json(unpack(payload)).run_id))
            elif topic.endswith("/status"):
                status = Status.model_validate_json(payload)
                statuses.setdefault(status.device_id, []).append(status.status)

    conn = connect(mosquitto_url, f"sub-{uuid.uuid4().hex[:6]}", on_message=on_message)
    with conn:
        conn.subscribe(f"edgemeter/v1/{fleet}/+/result", qos=1)
        conn.subscribe(f"edgemeter/v1/{fleet}/+/status", qos=1)
        assert conn.flush(30), "the broker did not answer the subscriptions"
        sent = tmp_path / "sent.txt"
        summary = simulate(mosquitto_url, 12, 120, fleet=fleet, sent_file=sent)
        expected = sent.read_text().split()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(received) >= len(expected) and all(
                        s[-1:] == ["offline"] for s in statuses.values()):
                    break
            time.sleep(0.05)
    assert summary["results_sent"] == summary["results_acknowledged"] == 120
    assert sorted(received) == sorted(expected)
    assert len(statuses) == 12
    assert all(s[0] == "online" and s[-1] == "offline" for s in statuses.values())


def test_the_simulate_command_prints_its_summary_as_json(
    mosquitto_url: str, capsys: object,
) -> None:
    code = main(["simulate", "--mqtt", mosquitto_url, "--devices", "2", "--messages", "4",
                 "--fleet", f"sim{uuid.uuid4().hex[:6]}"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert code == 0
    assert json.loads(out)["results_acknowledged"] == 4
