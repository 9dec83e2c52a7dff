"""Acceptance on real parts: `fleet run --wait` to two daemons returns two stored results.

A real `collector serve --http` (SQLite) on a private Mosquitto holds the model
(`edgemeter models add`); two real `agent run` daemons fetch it by sha256 from the collector's
HTTP server, run the job in child processes and deliver the results, which the collector stores
and receipts; `fleet run --wait` ends when both are stored.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from collector.stores.base import open_store
from edgemeter.cli import main
from edgemeter.demo.broker import free_port
from tests.fleet.test_daemon_presence import eventually, fleet_ls

REPO = Path(__file__).resolve().parents[2]


def http_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/devices", timeout=2):
            return True
    except OSError:
        return False


def spawn(*argv: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "edgemeter.cli", *argv], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_fleet_run_wait_to_two_daemons_returns_two_stored_results(
    mosquitto_url: str, shared_models: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], processes: list[subprocess.Popen[bytes]],
) -> None:
    model = shared_models / "kws_dscnn_int8.tflite"
    db = f"sqlite:///{tmp_path / 'results.db'}"
    assert main(["models", "add", str(model), "--db", db]) == 0
    port = free_port()
    models_url = f"http://127.0.0.1:{port}"
    processes.append(spawn("collector", "serve", "--mqtt", mosquitto_url, "--db", db, "--http",
                           f"127.0.0.1:{port}", "--client-id", f"c-{uuid.uuid4().hex[:6]}",
                           log=tmp_path / "collector.log"))
    assert eventually(lambda: http_up(models_url), 60), (tmp_path / "collector.log").read_text()
    fleet = f"f{uuid.uuid4().hex[:6]}"
    for device in ("pi-a", "pi-b"):
        state = tmp_path / device
        state.mkdir()
        (state / "agent.toml").write_text(
            f'device_id = "{device}"\nfleet = "{fleet}"\n[mqtt]\nurl = "{mosquitto_url}"\n'
            f'[spool]\npath = "{state / "spool.db"}"\n'
            f'[models]\nurl = "{models_url}"\ncache_dir = "{state / "models"}"\n'
            '[bench]\npower = "none"\nthreads = 1\nfidelity = 4\n')
        processes.append(spawn("agent", "run", "--config", str(state / "agent.toml"),
                               log=tmp_path / f"{device}.log"))
    assert eventually(lambda: all(
        fleet_ls(mosquitto_url, fleet, capsys).get(d, {}).get("status") == "online"
        for d in ("pi-a", "pi-b")), 60)

    capsys.readouterr()
    started = time.monotonic()
    code = main(["fleet", "run", "--mqtt", mosquitto_url, "--devices", f"fleet={fleet}",
                 "--model", str(model), "--models-url", models_url, "--iterations", "50",
                 "--warmup", "5", "--wait", "--timeout-s", "180"])
    err = capsys.readouterr().err
    assert code == 0, err + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "the collector has it" in err
    assert time.monotonic() - started < 180

    store = open_store(db, must_exist=True)
    try:
        stored = [r for r in store.list_results() if r.fleet == fleet]
    finally:
        store.close()
    assert sorted(r.device_id for r in stored) == ["pi-a", "pi-b"]
    assert all(r.latency_ms.count == 50 and "job_id" in r.labels for r in stored)


def test_fleet_run_says_when_the_collector_lacks_the_model(
    mosquitto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    port = free_port()
    processes.append(spawn("collector", "serve", "--mqtt", mosquitto_url, "--db", db, "--http",
                           f"127.0.0.1:{port}", "--client-id", f"c-{uuid.uuid4().hex[:6]}",
                           log=tmp_path / "collector.log"))
    assert eventually(lambda: http_up(f"http://127.0.0.1:{port}"), 60)
    model = tmp_path / "tiny.tflite"
    model.write_bytes(b"TFL3" + b"\x00" * 60)

    def ask() -> bool:
        capsys.readouterr()
        try:
            main(["fleet", "run", "--mqtt", mosquitto_url, "--devices", "nobody-*", "--model",
                  str(model), "--models-url", f"http://127.0.0.1:{port}", "--listen-s", "0.2"])
        finally:
            err = capsys.readouterr().err
        return "does not have it yet" in err and "edgemeter models add" in err

    assert eventually(ask, 60)
