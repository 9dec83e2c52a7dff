"""README's "A fleet on one machine", run as written: the shell block is read from README.md and
run by bash, with only its two settings lines given other values (this checkout's team model and
free ports), so the walkthrough a newcomer pastes cannot rot."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = "/usr/sbin/mosquitto"


def readme_block(heading: str) -> str:
    """The first ```sh block under a README heading."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, f"no sh block under {heading}"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_fleet_walkthrough_runs_as_written(tmp_path: Path, shared_models: Path) -> None:
    if not os.access(MOSQUITTO, os.X_OK):
        unavailable(f"no Mosquitto at {MOSQUITTO} (apt-get install mosquitto)")
    block = readme_block("## A fleet on one machine")
    broker_port, http_port = free_port(), free_port()
    settings = {
        "MODEL=": f"MODEL={shared_models / 'vww_96_int8.tflite'}",
        "BROKER_PORT=": f"BROKER_PORT={broker_port} HTTP_PORT={http_port}",
    }
    lines = block.splitlines()
    for prefix, replacement in settings.items():
        (index,) = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        lines[index] = replacement
    script = tmp_path / "walkthrough.sh"
    script.write_text("set -e\n" + "\n".join(lines) + "\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = tmp_path / "walkthrough.log"
    # a file, not a pipe: the background processes keep their copy of stdout open after bash ends
    with log.open("w") as sink:
        shell = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, start_new_session=True,
                                 stdout=sink, stderr=subprocess.STDOUT)
    try:
        shell.wait(timeout=240)
        out = log.read_text()
        assert shell.returncode == 0, out[-4000:]
        assert "board-1: done" in out and "board-2: done" in out, out[-4000:]
        assert out.count(", stored") >= 2
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/devices", timeout=10) as answer:
            devices = json.load(answer)["devices"]
        assert sorted(d["device_id"] for d in devices) == ["board-1", "board-2"]
        assert all(d["latest_run_id"] for d in devices)
    finally:
        # the block leaves the broker, the collector and both agents running in its session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)
        if shell.poll() is None:
            shell.kill()
