"""``edgemeter demo``: ``--no-serve`` ends after the table; otherwise it serves a live dashboard."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.http.test_serve import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL = "ic_resnet8_int8.tflite"


def _demo(*argv: str, **popen: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
    return subprocess.Popen([sys.executable, "-m", "edgemeter.cli", "demo", *argv], cwd=REPO,
                            env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **popen)  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.mqtt
def test_demo_with_no_serve_prints_the_table_and_ends(shared_models: Path, tmp_path: Path,
                                                     mosquitto_url: str) -> None:
    proc = _demo(str(shared_models / MODEL), "--dir", str(tmp_path), "--broker", "mosquitto",
                 "--no-serve")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "1 of 1 result(s) collected" in out
    assert "dashboard at" not in out


@pytest.mark.slow
@pytest.mark.mqtt
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_demo_serves_the_dashboard_until_ctrl_c_or_sigterm_and_leaves_no_broker_behind(
        shared_models: Path, tmp_path: Path, mosquitto_url: str, stop: str) -> None:
    port = free_port()
    proc = _demo(str(shared_models / MODEL), "--dir", str(tmp_path), "--broker", "mosquitto",
                 "--http", f"127.0.0.1:{port}", start_new_session=True)  # a group, as in a shell
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "demo ended early:\n" + "".join(lines)
            lines.append(line)
            found = re.search(r"dashboard at (http://\S+)/", line)
            url = found.group(1) if found else None
        assert url == f"http://127.0.0.1:{port}", "".join(lines)
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/api/runs", params={"device": "demo-device"}).json()["runs"]

            def simulated() -> set[str]:  # online, and each has a result on the fleet page
                devices = client.get("/api/devices", params={"q": "demo-sim-",
                                                             "status": "online"}).json()
                return {d["device_id"] for d in devices["devices"] if d["latest_run_id"]}

            deadline = time.monotonic() + 30
            while simulated() != {"demo-sim-0000", "demo-sim-0001"} and time.monotonic() < deadline:
                time.sleep(0.5)
            assert simulated() == {"demo-sim-0000", "demo-sim-0001"}
        children = psutil.Process(proc.pid).children(recursive=True)  # the private broker
        if stop == "ctrl-c":
            # Ctrl-C as a terminal sends it: to the whole foreground process group. The broker
            # the demo started must not die with it before the collector has handed it its last acks
            os.killpg(proc.pid, signal.SIGINT)
        else:  # `kill PID` or a service manager: the demo alone, whose broker runs in its own session
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(lines) + out
        assert "demo: stopping" in out
        assert "did not confirm" not in out, out
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], f"left running after the demo stopped: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
