"""A daemon whose runtime fails on a job's model: the job fails with a one-line reason, the daemon
runs the next job, and that job's result is stored once.

Real everything: a persistent Mosquitto, the daemon on its real link and job runner (each job in a
child process running ONNX Runtime or LiteRT), the collector storing results, and model files
that make the runtimes fail: a real model cut in half, and random bytes with a model's extension.
(A runtime killed by SIGSEGV is covered by ``tests/agent/test_daemon.py``.)
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import uuid
from pathlib import Path

import pytest

from agent.spool import Spool
from collector.config import IngestSettings, MqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from shared.messages import JobCommand
from shared.mqtt import connect
from shared.topics import TopicKind, Topics
from tests.reliability.services import (
    FLEET,
    PersistentMosquitto,
    agent_settings,
    make_daemon,
    report,
    wait_until,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

GOOD = "vww_96_int8.tflite"


def cache(folder: Path, name: str, data: bytes) -> dict[str, str]:
    """Put ``data`` in the model cache as the daemon keeps it; returns the job's model ref."""
    sha = hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sha}{Path(name).suffix}").write_bytes(data)
    return {"sha256": sha, "name": name}


def test_a_runtime_failing_on_a_corrupt_model_fails_that_job_and_the_daemon_runs_the_next(
    tmp_path: Path, shared_models: Path,
) -> None:
    broker = PersistentMosquitto(tmp_path / "broker").start()
    device = f"board-{uuid.uuid4().hex[:6]}"
    settings = agent_settings(device, tmp_path / device, broker_url=broker.url)
    models = settings.models.cache_dir
    onnx = (shared_models / "vww_96_int8_qdq.onnx").read_bytes()
    jobs = [
        ("truncated-onnx", cache(models, "cut.onnx", onnx[: len(onnx) // 2])),
        ("random-tflite", cache(models, "noise.tflite", random.Random(7).randbytes(64 * 1024))),
        ("good", cache(models, GOOD, (shared_models / GOOD).read_bytes())),
    ]
    acks: dict[str, list[dict[str, str]]] = {}
    lock = threading.Lock()

    online = threading.Event()

    def on_message(topic: str, payload: bytes) -> None:
        message = json.loads(payload)
        if topic.endswith("/status"):  # the birth follows the SUBSCRIBE to cmd on one connection
            if message.get("status") == "online":
                online.set()
            return
        with lock:
            acks.setdefault(message["job_id"], []).append(message)

    def final(job_id: str) -> dict[str, str] | None:
        with lock:
            done = [a for a in acks.get(job_id, []) if a["state"] in ("done", "failed")]
        return done[-1] if done else None

    db_url = f"sqlite:///{tmp_path}/results.db"
    store = open_store(db_url)
    collector = CollectorService(store, MqttSettings(url=broker.url, client_id="rel-crash",
                                                     connect_timeout_s=10), IngestSettings())
    spool = Spool(settings.spool.path)
    daemon = make_daemon(settings, spool)
    stop = threading.Event()
    agent = threading.Thread(target=daemon.run_forever, args=(stop, 0.05), daemon=True)
    watcher = connect(broker.url, f"rel-watch-{uuid.uuid4().hex[:6]}", on_message=on_message)
    collector.start()
    try:
        for kind in (TopicKind.ACK, TopicKind.STATUS):
            watcher.subscribe(Topics.build(FLEET, device, kind), qos=1)
        agent.start()
        assert online.wait(30), "the daemon did not come online"
        for job_id, model in jobs:
            command = JobCommand(job_id=job_id, model=model,
                                 settings={"iterations": 20, "warmup": 2})
            watcher.publish(Topics.build(FLEET, device, TopicKind.CMD),
                            command.model_dump_json().encode(), qos=1)
        wait_until(lambda: all(final(job_id) for job_id, _ in jobs), 180, "every job to end")
        wait_until(lambda: spool.depth() == 0, 60, "the good job's result receipted")
        stored_at_end = collector.stats["stored"]
    finally:
        stop.set()
        agent.join(20)
        watcher.close()
        spool.close()
        collector.stop()
        store.close()
        broker.stop()
    for job_id, _ in jobs[:-1]:
        ack = final(job_id)
        assert ack is not None and ack["state"] == "failed", ack
        assert ack["reason"] and "\n" not in ack["reason"], ack
        print(f"{job_id}: failed: {ack['reason']}")
    good = final("good")
    assert good is not None and good["state"] == "done", good
    assert stored_at_end == 1
    report([good["run_id"]], db_url, note="after two jobs on corrupt models failed")
