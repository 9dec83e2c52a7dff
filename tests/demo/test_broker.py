"""The private broker: real mosquitto and real amqtt, exercised with paho-mqtt as the agent does."""

from __future__ import annotations

import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.client import Client, MQTTMessage, MQTTv5, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion

from edgemeter.demo.broker import PrivateBroker, find_mosquitto, free_port
from shared.errors import BrokerError, MissingExtraError
from tests.conftest import unavailable

TIMEOUT_S = 5.0


def _client(url: str, protocol: int) -> Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )
    client.connect(host, int(port), keepalive=10)
    client.loop_start()
    return client


def _publish_and_receive(url: str, protocol: int) -> tuple[bool, bytes]:
    """Subscribe at QoS 1, publish at QoS 1; return (PUBACK seen, payload the subscriber got)."""
    topic = f"edgemeter/test/{uuid.uuid4().hex}"
    got: list[bytes] = []
    received = threading.Event()
    subscribed = threading.Event()

    def on_message(_client: Client, _userdata: object, message: MQTTMessage) -> None:
        got.append(message.payload)
        received.set()

    subscriber = _client(url, protocol)
    publisher = _client(url, protocol)
    try:
        subscriber.on_message = on_message
        subscriber.on_subscribe = lambda *_args: subscribed.set()
        subscriber.subscribe(topic, qos=1)
        assert subscribed.wait(TIMEOUT_S), "no SUBACK"
        info = publisher.publish(topic, b"hello edgemeter", qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert received.wait(TIMEOUT_S), "the subscriber got nothing"
        return info.is_published(), got[0]
    finally:
        for client in (subscriber, publisher):
            client.disconnect()
            client.loop_stop()


@pytest.fixture(scope="module")
def mosquitto_broker() -> Iterator[PrivateBroker]:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    with PrivateBroker("mosquitto") as broker:
        yield broker


@pytest.fixture(scope="module")
def amqtt_broker() -> Iterator[PrivateBroker]:
    pytest.importorskip("amqtt")
    with PrivateBroker("amqtt") as broker:
        yield broker


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.mqtt
@pytest.mark.parametrize("protocol", [MQTTv5, MQTTv311], ids=["mqttv5", "mqttv311"])
def test_mosquitto_acknowledges_qos1_and_delivers_it(
    mosquitto_broker: PrivateBroker, protocol: int
) -> None:
    acked, payload = _publish_and_receive(mosquitto_broker.url, protocol)

    assert mosquitto_broker.kind == "mosquitto"
    assert mosquitto_broker.url == f"mqtt://127.0.0.1:{mosquitto_broker.port}"
    assert acked and payload == b"hello edgemeter"


def test_amqtt_acknowledges_qos1_and_delivers_it(amqtt_broker: PrivateBroker) -> None:
    acked, payload = _publish_and_receive(amqtt_broker.url, MQTTv311)

    assert amqtt_broker.kind == "amqtt"
    assert acked and payload == b"hello edgemeter"


def test_auto_prefers_mosquitto_when_installed() -> None:
    expected = "mosquitto" if find_mosquitto() is not None else "amqtt"

    assert PrivateBroker().kind == expected


@pytest.mark.subprocess
@pytest.mark.mqtt
@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_stopped_broker_frees_its_port_and_temp_files(kind: str) -> None:
    if kind == "mosquitto" and find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    if kind == "amqtt":
        pytest.importorskip("amqtt")
    broker = PrivateBroker(kind)  # type: ignore[arg-type]
    broker.start()
    port, workdir = broker.port, broker._workdir
    assert workdir is not None and workdir.is_dir()

    broker.stop()
    broker.stop()  # idempotent

    assert not broker.running
    assert not workdir.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.subprocess
@pytest.mark.mqtt
@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_on_a_taken_port_fails_with_one_line_naming_the_cause(kind: str) -> None:
    if kind == "mosquitto" and find_mosquitto() is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    if kind == "amqtt":
        pytest.importorskip("amqtt")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))  # bound but not listening: only the broker's bind fails
        port = squatter.getsockname()[1]
        broker = PrivateBroker(kind, port=port)  # type: ignore[arg-type]

        with pytest.raises(BrokerError) as excinfo:
            broker.start()

    message = str(excinfo.value)
    assert "\n" not in message
    assert f"private {kind} broker did not start on 127.0.0.1:{port}" in message
    assert "address already in use" in message.lower()
    assert not broker.running


def test_broker_on_a_port_someone_listens_on_fails_before_starting() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(BrokerError, match="already in use") as excinfo:
            PrivateBroker(port=port).start()

    assert "\n" not in str(excinfo.value)


def test_forced_mosquitto_without_the_binary_fails_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-mosquitto"

    with pytest.raises(BrokerError, match="no mosquitto executable") as excinfo:
        PrivateBroker("mosquitto", mosquitto=missing).start()

    assert str(missing) in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_auto_falls_back_to_amqtt_without_mosquitto(tmp_path: Path) -> None:
    assert PrivateBroker(mosquitto=tmp_path / "no-such-mosquitto").kind == "amqtt"


def test_missing_amqtt_is_reported_as_the_demo_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)

    with pytest.raises(MissingExtraError) as excinfo:
        PrivateBroker("amqtt").start()

    assert excinfo.value.extra == "demo" and excinfo.value.module == "amqtt"


def test_unknown_preference_is_rejected() -> None:
    with pytest.raises(ValueError, match="prefer"):
        PrivateBroker("rabbitmq")  # type: ignore[arg-type]
