"""A thousand simulated devices online at once, seen by ``fleet ls``.

The broker is a private Mosquitto with ``max_connections -1`` and its descriptor limit raised
(``roomy_broker``); the simulator drives every device from one thread (``FleetLoop``). Each device
publishes a retained birth; ``fleet ls --json`` reads them all back, and a collector on the same
broker keeps every one in its devices table (``Store.list_devices``). After the simulator stops,
every device has said ``offline`` itself, on the broker and in the table.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector.config import MqttSettings
from collector.service import CollectorService
from collector.stores.base import Store, open_store
from edgemeter.cli import main
from edgemeter.commands.simulate import simulate
from tests.collector.conftest import wait_for
from tests.scale.services import RoomyMosquitto

DEVICES = 1000


def fleet_ls(url: str, fleet: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    # Seen once in a full suite run: the broker, busy with a thousand births, closed the observer's
    # own new connection at once ("normal disconnection"); the observer tries again, the devices
    # are judged as before.
    for _attempt in range(3):
        capsys.readouterr()
        code = main(["fleet", "ls", "--mqtt", url, "--fleet", fleet, "--json", "--listen-s", "2"])
        if code == 0:
            break
    assert code == 0, capsys.readouterr().err
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def statuses(store: Store, fleet: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for device in store.list_devices(fleet=fleet):
        counts[device.status] = counts.get(device.status, 0) + 1
    return counts


@pytest.mark.slow
@pytest.mark.mqtt
def test_a_thousand_devices_connected_at_once_all_show_online_in_fleet_ls(
    roomy_broker: RoomyMosquitto, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    assert roomy_broker.fd_limit() > DEVICES + 100
    fleet = f"many{uuid.uuid4().hex[:6]}"
    store = open_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    collector = CollectorService(store, MqttSettings(url=roomy_broker.url, fleet=fleet,
                                                     client_id=f"edgemeter-collector-{fleet}"))
    collector.start()
    ready, stop = threading.Event(), threading.Event()
    summary: dict[str, Any] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            summary.update(simulate(roomy_broker.url, DEVICES, 0, fleet=fleet, hold_s=-1,
                                    stop=stop, ready=ready, telemetry_s=3600))
        except BaseException as err:  # reported by the test thread
            failure.append(err)
            ready.set()

    simulator = threading.Thread(target=run, daemon=True)
    simulator.start()
    try:
        assert ready.wait(60), "the simulated fleet did not connect within 60 s"
        assert not failure, failure
        online = fleet_ls(roomy_broker.url, fleet, capsys)
        assert wait_for(lambda: statuses(store, fleet) == {"online": DEVICES}, timeout_s=30), \
            statuses(store, fleet)
    finally:
        stop.set()
        simulator.join(60)
    try:
        assert wait_for(lambda: statuses(store, fleet) == {"offline": DEVICES}, timeout_s=30), \
            statuses(store, fleet)
    finally:
        collector.stop()
        store.close()
    assert not failure, failure
    assert summary["devices"] == DEVICES
    assert len(online) == DEVICES
    assert {r["device_id"] for r in online} == {f"sim-{i:04d}" for i in range(DEVICES)}
    assert all(r["status"] == "online" and r["board"] for r in online)
    assert all(r["status"] == "offline" for r in fleet_ls(roomy_broker.url, fleet, capsys))
