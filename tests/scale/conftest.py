"""Fixtures for scale tests: a private Mosquitto that takes a thousand clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemeter.demo.mosquitto import find_mosquitto
from shared.errors import BrokerError
from tests.conftest import unavailable
from tests.scale.services import RoomyMosquitto

BROKER_FDS = 8192


@pytest.fixture()
def roomy_broker(tmp_path: Path) -> Iterator[RoomyMosquitto]:
    """Mosquitto with ``max_connections -1`` and its descriptor limit raised to 8192."""
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    broker = RoomyMosquitto(tmp_path / "mosquitto", max_fds=BROKER_FDS)
    try:
        broker.start()
    except BrokerError as err:
        unavailable(f"mosquitto did not start: {err}")
    try:
        yield broker
    finally:
        broker.stop()
