"""Acceptance on real parts: a monitoring job's windows stored and served, an alert on their p99
in a real Alertmanager, and `fleet cancel` ending the job.

A real `collector serve --http --config` (SQLite, an ``[[alerts.rules]]`` on p99 and an
``[alerts] alertmanager_url``), a private Mosquitto, a real Alertmanager, and a real `agent run`
daemon; `edgemeter fleet monitor` starts the job with 1 s windows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from edgemeter.cli import main
from edgemeter.demo.broker import free_port, port_accepts
from shared.schema import LatencyHistogram
from tests.conftest import unavailable
from tests.fleet.test_daemon_presence import eventually, fleet_ls
from tests.fleet.test_fleet_run import REPO, http_up


def spawn(*argv: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(list(argv), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


@pytest.mark.slow
def test_a_monitoring_job_is_stored_served_alerted_and_cancelled(
    mosquitto_url: str, shared_models: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], processes: list[subprocess.Popen[bytes]],
) -> None:
    alertmanager, amtool = shutil.which("prometheus-alertmanager"), shutil.which("amtool")
    if alertmanager is None or amtool is None:
        unavailable("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
    assert alertmanager is not None and amtool is not None
    am_port = free_port()
    (tmp_path / "am.yml").write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n")
    processes.append(spawn(alertmanager, f"--config.file={tmp_path / 'am.yml'}",
                           f"--storage.path={tmp_path / 'am'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                           log=tmp_path / "alertmanager.log"))
    model = shared_models / "kws_dscnn_int8.tflite"
    db = f"sqlite:///{tmp_path / 'results.db'}"
    assert main(["models", "add", str(model), "--db", db]) == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    fleet = f"f{uuid.uuid4().hex[:6]}"
    (tmp_path / "collector.toml").write_text(
        f'[alerts]\nalertmanager_url = "http://127.0.0.1:{am_port}"\nevaluate_every_s = 1\n'
        '[[alerts.rules]]\nname = "MonitorSlow"\nmetric = "p99_ms"\nop = ">"\n'
        f'threshold = 0.0\nfor_s = 2\ndevices = "fleet={fleet}"\nseverity = "critical"\n')
    processes.append(spawn(sys.executable, "-m", "edgemeter.cli", "collector", "serve",
                           "--config", str(tmp_path / "collector.toml"), "--mqtt", mosquitto_url,
                           "--db", db, "--http", f"127.0.0.1:{port}",
                           "--client-id", f"c-{uuid.uuid4().hex[:6]}",
                           log=tmp_path / "collector.log"))
    assert eventually(lambda: http_up(url), 60), (tmp_path / "collector.log").read_text()
    state = tmp_path / "pi-m"
    state.mkdir()
    (state / "agent.toml").write_text(
        f'device_id = "pi-m"\nfleet = "{fleet}"\n[mqtt]\nurl = "{mosquitto_url}"\n'
        f'[spool]\npath = "{state / "spool.db"}"\n'
        f'[models]\nurl = "{url}"\ncache_dir = "{state / "models"}"\n'
        '[bench]\npower = "none"\nthreads = 1\n')
    processes.append(spawn(sys.executable, "-m", "edgemeter.cli", "agent", "run", "--config",
                           str(state / "agent.toml"), log=tmp_path / "pi-m.log",
                           env={"EDGEMETER_MONITOR_SOCKET": str(state / "monitor.sock")}))
    assert eventually(lambda: fleet_ls(mosquitto_url, fleet, capsys).get("pi-m", {})
                      .get("status") == "online", 60)
    capsys.readouterr()
    assert main(["fleet", "monitor", "--mqtt", mosquitto_url, "--devices", f"fleet={fleet}",
                 "--model", str(model), "--rate-qps", "20", "--window-s", "1",
                 "--name", "kws-canary"]) == 0, capsys.readouterr().err
    job_id = capsys.readouterr().out.strip()
    logs = tmp_path

    def windows() -> list[dict[str, Any]]:
        return list(get_json(f"{url}/api/devices/pi-m/monitor?since=10m&name=kws-canary")
                    ["windows"])

    assert eventually(lambda: len(windows()) >= 5, 60), \
        "".join(p.read_text() for p in logs.glob("*.log"))
    served = windows()
    assert all(w["job_id"] == job_id for w in served)
    with_queries = [w for w in served if w["queries"]]
    assert with_queries and all(
        LatencyHistogram.model_validate(w["latencies"]).count == w["queries"]
        for w in with_queries)

    def in_alertmanager() -> bool:
        done = subprocess.run([amtool, "alert", "query", f"--alertmanager.url=http://127.0.0.1:"
                               f"{am_port}", "-o", "json", "alertname=MonitorSlow"],
                              capture_output=True, text=True, timeout=30)
        return done.returncode == 0 and any(
            a["labels"].get("device_id") == "pi-m" for a in json.loads(done.stdout or "[]"))

    assert port_accepts(am_port)
    assert eventually(in_alertmanager, 30), (tmp_path / "collector.log").read_text()[-3000:]
    firing = get_json(f"{url}/api/alerts?state=firing")["alerts"]
    assert [a["rule"] for a in firing if a["device_id"] == "pi-m"] == ["MonitorSlow"]

    capsys.readouterr()
    assert main(["fleet", "cancel", "--mqtt", mosquitto_url, "--devices", f"fleet={fleet}",
                 job_id]) == 0, capsys.readouterr().err
