"""The one Mosquitto launcher: config lines in, a broker on its ports out, failures in one line."""

from __future__ import annotations

import getpass
import os
import resource
import socket
from pathlib import Path

import pytest

import edgemeter.demo.broker as broker_module
from edgemeter.demo.broker import PrivateBroker
from edgemeter.demo.loopback import free_port, port_accepts
from edgemeter.demo.mosquitto import Mosquitto, anonymous_config, find_mosquitto
from shared.errors import BrokerError
from tests.conftest import unavailable

pytestmark = [pytest.mark.mqtt, pytest.mark.subprocess]


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")


def test_a_killed_broker_starts_again_on_its_port_with_what_it_had_saved(tmp_path: Path) -> None:
    port = free_port()
    conf = anonymous_config(port, persistence_dir=tmp_path / "data", autosave_interval_s=1)
    broker = Mosquitto(tmp_path, conf, ports=[port]).start()
    try:
        broker.stop()  # a clean stop saves mosquitto.db
        assert (tmp_path / "data" / "mosquitto.db").is_file()
        broker.start()
        broker.kill()
        assert not broker.running and not port_accepts(port)

        broker.start()

        assert broker.running and port_accepts(port)
    finally:
        broker.stop()


def test_a_port_the_config_does_not_open_fails_in_one_line_with_the_log(tmp_path: Path) -> None:
    opened, expected = free_port(), free_port()
    broker = Mosquitto(tmp_path, anonymous_config(opened), ports=[expected],
                       name="test broker", start_timeout_s=1)

    with pytest.raises(BrokerError) as info:
        broker.start()

    message = str(info.value)
    assert "\n" not in message
    assert f"the test broker did not start on 127.0.0.1:{expected}: port {expected} not open" in message
    assert "(log: " in message
    assert not broker.running


def test_a_root_caller_keeps_the_broker_as_its_own_user_unless_the_config_names_one(
    tmp_path: Path,
) -> None:
    port = free_port()
    with Mosquitto(tmp_path / "plain", anonymous_config(port), ports=[port]) as broker:
        users = [line for line in broker.conf_file.read_text().splitlines() if line.startswith("user ")]
    assert users == ([f"user {getpass.getuser()}"] if os.geteuid() == 0 else [])

    named = [*anonymous_config(port), f"user {getpass.getuser()}"]
    with Mosquitto(tmp_path / "named", named, ports=[port]) as broker:
        users = [line for line in broker.conf_file.read_text().splitlines() if line.startswith("user ")]
    assert users == [f"user {getpass.getuser()}"]


def test_the_fd_limit_is_raised_for_the_broker_alone(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves no room to raise")
    port = free_port()
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # what the broker would inherit
    try:
        with Mosquitto(tmp_path, anonymous_config(port), ports=[port], max_fds=2048) as broker:
            limits = Path(f"/proc/{broker.pid}/limits").read_text().splitlines()
        ours = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert next(int(line.split()[3]) for line in limits if line.startswith("Max open files")) == 2048
    assert ours == 1024


def test_the_private_broker_moves_to_a_fresh_port_when_another_process_took_its_pick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))  # bound, not listening: only mosquitto's bind fails
        taken = squatter.getsockname()[1]
        picks = iter([taken, free_port()])
        monkeypatch.setattr(broker_module, "free_port", lambda: next(picks))

        with PrivateBroker("mosquitto") as broker:
            assert broker.port != taken
            assert port_accepts(broker.port)
