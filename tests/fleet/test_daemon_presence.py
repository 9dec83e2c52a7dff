"""Real daemons on a real broker: presence in ``fleet ls``, Last Will on kill -9, ACL refusals.

Each daemon here is ``edgemeter agent run`` in its own process (so it can be killed with SIGKILL),
or an in-process :class:`AgentDaemon` on the product's real :class:`Link` where the test reads its
log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.daemon.config import AgentSettings
from agent.daemon.jobs import ChildProcessJobRunner
from agent.daemon.link import Link, LinkOptions
from agent.daemon.service import AgentDaemon
from agent.model_cache import ModelCache
from agent.spool import Spool
from edgemeter.cli import main
from shared.messages import AgentManifest
from shared.mqtt import TlsFiles, parse_broker_url
from shared.schema import DeviceManifest
from tests.factories import make_result
from tests.secure_broker import SecureBroker

REPO = Path(__file__).resolve().parents[2]
KEEPALIVE_S = 5


def start_daemon(url: str, fleet: str, device: str, state: Path) -> subprocess.Popen[bytes]:
    state.mkdir(parents=True, exist_ok=True)
    config = state / "agent.toml"
    config.write_text(
        f'device_id = "{device}"\nfleet = "{fleet}"\ntelemetry_s = 2\n'
        f'[mqtt]\nurl = "{url}"\nkeepalive_s = {KEEPALIVE_S}\n'
        f'[spool]\npath = "{state / "spool.db"}"\n[models]\ncache_dir = "{state / "models"}"\n'
    )
    return subprocess.Popen([sys.executable, "-m", "edgemeter.cli", "agent", "run", "--config",
                             str(config)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def fleet_ls(url: str, fleet: str, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["fleet", "ls", "--mqtt", url, "--fleet", fleet, "--listen-s", "0.5", "--json"]) == 0
    return {row["device_id"]: row for row in json.loads(capsys.readouterr().out)}


def eventually(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.mark.slow
def test_two_daemons_come_online_and_a_killed_one_goes_offline_then_returns_with_a_higher_bd_seq(
    mosquitto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    fleet = f"f{uuid.uuid4().hex[:8]}"
    processes.append(start_daemon(mosquitto_url, fleet, "board-a", tmp_path / "a"))
    processes.append(start_daemon(mosquitto_url, fleet, "board-b", tmp_path / "b"))
    rows: dict[str, dict[str, Any]] = {}

    def both_online() -> bool:
        nonlocal rows
        rows = fleet_ls(mosquitto_url, fleet, capsys)
        return all(rows.get(d, {}).get("status") == "online" for d in ("board-a", "board-b"))

    assert eventually(both_online, 60), rows
    first_bd_seq = rows["board-a"]["bd_seq"]
    assert rows["board-a"]["spool_depth"] == 0 or rows["board-a"]["spool_depth"] is None

    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(10)
    killed_at = time.monotonic()
    assert eventually(lambda: fleet_ls(mosquitto_url, fleet, capsys)["board-a"]["status"] == "offline",
                      30)
    # Mosquitto fires the Will once 1.5 x keepalive passes without a packet; fleet ls listens 0.5 s
    assert time.monotonic() - killed_at <= 1.5 * KEEPALIVE_S + 3.0
    assert fleet_ls(mosquitto_url, fleet, capsys)["board-b"]["status"] == "online"

    processes.append(start_daemon(mosquitto_url, fleet, "board-a", tmp_path / "a"))

    def back_online() -> bool:
        nonlocal rows
        rows = fleet_ls(mosquitto_url, fleet, capsys)
        return rows["board-a"]["status"] == "online"

    assert eventually(back_online, 60)
    assert rows["board-a"]["bd_seq"] > first_bd_seq


def test_a_graceful_stop_says_offline_at_once(
    mosquitto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    fleet = f"f{uuid.uuid4().hex[:8]}"
    processes.append(start_daemon(mosquitto_url, fleet, "board-c", tmp_path / "c"))
    assert eventually(
        lambda: fleet_ls(mosquitto_url, fleet, capsys).get("board-c", {}).get("status") == "online", 60)
    processes[0].send_signal(signal.SIGTERM)
    assert processes[0].wait(30) == 0
    assert fleet_ls(mosquitto_url, fleet, capsys)["board-c"]["status"] == "offline"


def test_a_device_publishing_under_another_devices_topic_is_refused_and_the_agent_says_so(
    secure_broker: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # dev-a's credentials, but configured as dev-b: every publish lands on dev-b's topics
    creds = secure_broker.user("dev-a")
    settings = AgentSettings(device_id="dev-b", fleet=secure_broker.fleet,
                             spool={"path": tmp_path / "spool.db"},
                             models={"cache_dir": tmp_path / "models"})
    url = parse_broker_url(secure_broker.tls_url)
    options = LinkOptions(client_id="edgemeter-agent-misconfigured", keepalive_s=KEEPALIVE_S,
                          username=creds.username, password=creds.password,
                          tls=TlsFiles(ca_file=secure_broker.ca_file), protocol="5")

    def link_factory(**callbacks: Any) -> Link:
        return Link([url], options, **callbacks)

    spool = Spool(settings.spool.path)
    daemon = AgentDaemon(settings, spool=spool, link_factory=link_factory,
                         job_runner=ChildProcessJobRunner(), model_cache=ModelCache(tmp_path / "m"),
                         manifest=lambda: AgentManifest(agent_version="t",
                                                        device=DeviceManifest(hostname="h")))
    spool.put(make_result(device_id="dev-b", fleet=secure_broker.fleet))
    caplog.set_level(logging.WARNING)
    daemon.start()
    try:
        assert daemon.link.wait_connected(30)  # type: ignore[attr-defined]
        daemon.tick()
        assert eventually(lambda: "not authorized" in caplog.text.lower(), 20), caplog.text
    finally:
        daemon.stop()
    assert "reason code 135" in caplog.text
    assert spool.depth() == 1, "a refused result stays in the spool"


def test_the_daemon_connects_with_its_own_credentials_over_tls(
    secure_broker: SecureBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    creds = secure_broker.user("dev-a")
    state = tmp_path / "dev-a"
    state.mkdir()
    (state / "agent.toml").write_text(
        f'device_id = "dev-a"\nfleet = "{secure_broker.fleet}"\n'
        f'[mqtt]\nurl = "{secure_broker.tls_url}"\nkeepalive_s = {KEEPALIVE_S}\n'
        f'password_file = "{creds.password_file}"\n'
        f'[mqtt.tls]\nca_file = "{secure_broker.ca_file}"\n'
        f'[spool]\npath = "{state / "spool.db"}"\n[models]\ncache_dir = "{state / "models"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
    processes.append(subprocess.Popen([sys.executable, "-m", "edgemeter.cli", "agent", "run",
                                     "--config", str(state / "agent.toml")], cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    collector = secure_broker.collector

    def listed() -> dict[str, Any]:
        capsys.readouterr()
        assert main(["fleet", "ls", "--mqtt", secure_broker.tls_url, "--fleet", secure_broker.fleet,
                     "--username", collector.username, "--password-file",
                     str(collector.password_file), "--ca-file", str(secure_broker.ca_file),
                     "--listen-s", "0.5", "--json"]) == 0
        return {row["device_id"]: row for row in json.loads(capsys.readouterr().out)}

    assert eventually(lambda: listed().get("dev-a", {}).get("status") == "online", 60)
