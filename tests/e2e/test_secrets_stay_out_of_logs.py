"""No password reaches the terminal: the real ``collector serve`` and ``bench --publish`` at -vv."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.stores.base import open_store
from shared.mqtt import MqttConnection, connect
from tests.factories import make_result

REPO = Path(__file__).resolve().parents[2]
SECRETS = ("url-mqtt-secret", "env-mqtt-secret", "url-db-secret", "env-db-secret", "bench-secret")


def edgemeter(*argv: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "edgemeter.cli", "-vv", *argv], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**clean, "PYTHONPATH": str(REPO), **(env or {})}, **popen,  # type: ignore[arg-type]
    )


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/results.db"


@pytest.fixture()
def publisher(mosquitto_url: str) -> Iterator[MqttConnection]:
    with connect(mosquitto_url, f"test-pub-{uuid.uuid4().hex[:8]}") as conn:
        yield conn


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked:\n{text}"


@pytest.mark.mqtt
@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_collector_serve_prints_no_password(
    db: str, mosquitto_url: str, sqlite_url: str, publisher: MqttConnection,
    request: pytest.FixtureRequest,
) -> None:
    host = mosquitto_url.removeprefix("mqtt://")
    if db == "sqlite":  # broker password in the URL, database password in the environment
        mqtt_url, db_url = f"mqtt://collector:url-mqtt-secret@{host}", sqlite_url
        env = {"EDGEMETER_COLLECTOR__DB__PASSWORD": "env-db-secret"}
        read_url = sqlite_url
    else:  # the other way round (the test server trusts every password)
        read_url = str(request.getfixturevalue("postgres_url"))
        mqtt_url = f"mqtt://collector@{host}"
        db_url = read_url.replace("postgresql://postgres@", "postgresql://postgres:url-db-secret@")
        assert db_url != read_url
        env = {"EDGEMETER_COLLECTOR__MQTT__PASSWORD": "env-mqtt-secret"}
    client_id = f"edgemeter-collector-secret-{uuid.uuid4().hex[:6]}"
    proc = edgemeter("collector", "serve", "--mqtt", mqtt_url, "--db", db_url,
                     "--client-id", client_id, env=env)
    try:
        store = open_store(read_url)
        try:
            def delivered() -> bool:
                publisher.publish("edgemeter/v1/default/pi-01/result",
                                  make_result().model_dump_json().encode(), qos=1)
                time.sleep(0.1)
                return bool(store.list_results())

            deadline = time.monotonic() + 20
            while not delivered() and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
            assert delivered()
        finally:
            store.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "collector stopped" in err and client_id in err
    assert "INFO shared.mqtt: connected to" in err  # the verbose logs are there too
    if db == "sqlite":
        assert "collector:***@" in err
    assert_no_secret(out + err)


@pytest.mark.mqtt
@pytest.mark.slow
def test_bench_publish_prints_no_password(
    mosquitto_url: str, shared_models: Path, tmp_path: Path
) -> None:
    host = mosquitto_url.removeprefix("mqtt://")
    model = str(shared_models / "kws_dscnn_int8.tflite")
    fast = ["--iterations", "10", "--power", "none", "--fidelity", "0", "--warmup", "2"]
    outbox = {"EDGEMETER_SPOOL": str(tmp_path / "spool.db")}
    ok = edgemeter("bench", model, *fast, "--publish", f"mqtt://agent:bench-secret@{host}",
                   env=outbox)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
    assert "published 1 result(s) to mqtt://agent:***@" in out
    assert_no_secret(out + err)

    dead_port = f"mqtt://agent:bench-secret@127.0.0.1:{_closed_port()}"
    failed = edgemeter("bench", model, *fast, "--publish", dead_port, env=outbox)
    out, err = failed.communicate(timeout=120)
    assert failed.returncode == 3, err
    assert "not delivered" in err
    assert_no_secret(out + err)


def _closed_port() -> int:
    from edgemeter.demo.broker import free_port

    return free_port()
