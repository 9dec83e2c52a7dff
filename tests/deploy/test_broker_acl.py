"""The deployed Mosquitto config and ACL, proven on a real broker started from them.

Every test talks to :class:`tests.secure_broker.SecureBroker` with paho directly (MQTT v5), so
what is checked is the broker's behaviour, not edgemeter's client code. Negative checks never wait
for time to pass: a forbidden message is published *before* an allowed one on the same path, and
QoS 1 delivery is in order, so once the allowed one arrives the forbidden one would have too.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import unavailable
from tests.secure_broker import (
    CONF_TEMPLATE,
    BrokerUser,
    ListenerPorts,
    SecureBroker,
    SecureBrokerError,
    missing_tools,
    render_mosquitto_conf,
)

pytestmark = pytest.mark.mqtt

WAIT_S = 10.0
NOT_AUTHORIZED = 135  # MQTT v5 reason code, in PUBACK for a denied publish and CONNACK for a bad login
SUCCESS = 0
NO_MATCHING_SUBSCRIBERS = 16  # a success code too: the broker took the message, nobody listened
ACCEPTED = {SUCCESS, NO_MATCHING_SUBSCRIBERS}


class Probe:
    """A paho MQTT v5 client driven step by step: connect, publish and get the PUBACK, read."""

    def __init__(
        self, port: int, user: BrokerUser | None = None, *, ca_file: Path | None = None,
        client_cert: BrokerUser | None = None, with_password: bool = True,
        client_id: str | None = None, persistent: bool = False,
    ) -> None:
        self.port = port
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:10]}"
        self.persistent = persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user.username, user.password if with_password else None)
        if ca_file is not None or client_cert is not None:
            self.client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(client_cert.cert_file) if client_cert else None,
                keyfile=str(client_cert.key_file) if client_cert else None,
            )
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack: int | None = None
        self._connected = threading.Event()
        self._disconnect_reason: int | None = None
        self._disconnected = threading.Event()
        self._acks: dict[int, int] = {}
        self._subacks: dict[int, list[int]] = {}
        self._changed = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))

    # paho callbacks (its network thread)
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connack = int(reason.value)
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._disconnect_reason = int(reason.value)
        self._disconnected.set()
        self._connected.set()
        self.client.loop_stop()  # from its own thread: no join, and no reconnect attempt

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        with self._changed:
            self._acks[mid] = int(reason.value)
            self._changed.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: Any, _props: Any) -> None:
        with self._changed:
            self._subacks[mid] = [int(r.value) for r in reasons]
            self._changed.notify_all()

    # steps
    def connect(self) -> int | None:
        """The CONNACK reason code, or ``None`` when the broker closed the connection instead."""
        props = None
        if self.persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.port, clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK and no disconnect"
        return self._connack

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        with self._changed:
            assert self._changed.wait_for(lambda: mid in self._acks, WAIT_S), f"no PUBACK for {topic}"
            return self._acks[mid]

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        with self._changed:
            assert self._changed.wait_for(lambda: mid in self._subacks, WAIT_S), f"no SUBACK for {topic}"
            return self._subacks[mid]

    def next_topic(self) -> str:
        return self.messages.get(timeout=WAIT_S)[0]

    def topics_until(self, last: str) -> list[str]:
        """Every topic received up to and including ``last``."""
        seen: list[str] = []
        while not seen or seen[-1] != last:
            seen.append(self.next_topic())
        return seen

    def wait_disconnect(self) -> int | None:
        assert self._disconnected.wait(WAIT_S), "still connected"
        return self._disconnect_reason

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture()
def probes() -> Any:
    opened: list[Probe] = []

    def open_probe(*args: Any, **kwargs: Any) -> Probe:
        probe = Probe(*args, **kwargs)
        opened.append(probe)
        return probe

    yield open_probe
    for probe in opened:
        probe.close()


def topic(device_id: str, kind: str, fleet: str = "lab") -> str:
    return f"edgemeter/v1/{fleet}/{device_id}/{kind}"


def connected(probe: Probe) -> Probe:
    assert probe.connect() == SUCCESS
    return probe


# -- accounts ------------------------------------------------------------------------------------

def test_wrong_password_is_refused(secure_broker: SecureBroker, probes: Any) -> None:
    wrong = replace(secure_broker.user("dev-a"), password="not-the-password")
    assert probes(secure_broker.ports.plain, wrong).connect() == NOT_AUTHORIZED


def test_anonymous_client_is_refused(secure_broker: SecureBroker, probes: Any) -> None:
    assert probes(secure_broker.ports.plain).connect() == NOT_AUTHORIZED


def test_add_device_gives_a_new_board_an_account_after_a_reload(
    secure_broker: SecureBroker, probes: Any
) -> None:
    new = secure_broker.add_device(f"dev-{uuid.uuid4().hex[:6]}")
    # SIGHUP is handled between the broker's network loops: retry until it has re-read the file.
    deadline = time.monotonic() + WAIT_S
    while True:
        probe = probes(secure_broker.ports.plain, new)
        reason = probe.connect()
        if reason == SUCCESS or time.monotonic() > deadline:
            break
        probe.close()
    assert reason == SUCCESS
    assert probe.publish(topic(new.username, "result")) in ACCEPTED
    assert probe.publish(topic("dev-a", "result")) == NOT_AUTHORIZED


# -- what a device may write ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["result", "status", "telemetry", "progress", "ack"])
def test_device_publishes_every_agent_kind_under_its_own_fleet_and_id_only(
    secure_broker: SecureBroker, probes: Any, kind: str
) -> None:
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-a")))
    assert dev.publish(topic("dev-a", kind)) in ACCEPTED
    assert dev.publish(topic("dev-a", kind, fleet="other-fleet")) == NOT_AUTHORIZED
    assert dev.publish(topic("dev-a", kind, fleet="_collector")) == NOT_AUTHORIZED


def test_device_publish_under_another_id_is_refused_with_135_and_never_delivered(
    secure_broker: SecureBroker, probes: Any
) -> None:
    collector = connected(probes(secure_broker.ports.plain, secure_broker.collector))
    collector.subscribe("edgemeter/v1/#")
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-a")))
    assert dev.publish(topic("dev-b", "result")) == NOT_AUTHORIZED
    assert dev.publish(topic("dev-a", "result")) in ACCEPTED
    assert collector.topics_until(topic("dev-a", "result")) == [topic("dev-a", "result")]


@pytest.mark.parametrize("kind", ["cmd", "receipt"])
def test_device_cannot_write_the_collectors_kinds_even_for_itself(
    secure_broker: SecureBroker, probes: Any, kind: str
) -> None:
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-a")))
    assert dev.publish(topic("dev-a", kind)) == NOT_AUTHORIZED


# -- what a device may read ----------------------------------------------------------------------

def test_device_reads_its_own_cmd_and_receipt_but_not_another_devices(
    secure_broker: SecureBroker, probes: Any
) -> None:
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-a")))
    # Mosquitto 2.0 grants the SUBACK and filters on delivery, so only delivery proves the ACL.
    dev.subscribe(topic("dev-b", "cmd"))
    dev.subscribe(topic("dev-b", "result"))
    dev.subscribe(topic("dev-a", "cmd"))
    dev.subscribe(topic("dev-a", "receipt"))
    collector = connected(probes(secure_broker.ports.plain, secure_broker.collector))
    other = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-b")))
    assert collector.publish(topic("dev-b", "cmd")) in ACCEPTED
    assert other.publish(topic("dev-b", "result")) in ACCEPTED
    assert collector.publish(topic("dev-a", "cmd")) in ACCEPTED
    assert collector.publish(topic("dev-a", "receipt")) in ACCEPTED
    assert dev.topics_until(topic("dev-a", "receipt")) == [topic("dev-a", "cmd"), topic("dev-a", "receipt")]


def test_collector_reads_everything_also_through_a_shared_subscription(
    secure_broker: SecureBroker, probes: Any
) -> None:
    collector = connected(probes(secure_broker.ports.plain, secure_broker.collector))
    collector.subscribe("$share/collectors/edgemeter/v1/+/+/+")
    sent = []
    for device_id in ("dev-a", "dev-b"):
        dev = connected(probes(secure_broker.ports.plain, secure_broker.user(device_id)))
        for kind in ("result", "status", "telemetry", "progress", "ack", "monitor"):
            assert dev.publish(topic(device_id, kind)) in ACCEPTED
            sent.append(topic(device_id, kind))
    assert collector.publish(topic("dev-a", "cmd")) in ACCEPTED
    sent.append(topic("dev-a", "cmd"))
    assert sorted(collector.topics_until(topic("dev-a", "cmd"))) == sorted(sent)


def test_add_device_moves_a_board_to_its_new_fleet(secure_broker: SecureBroker, probes: Any) -> None:
    name = f"dev-{uuid.uuid4().hex[:6]}"
    secure_broker.add_device(name, fleet="north")
    moved = secure_broker.add_device(name, fleet="south")  # again: a new password, a new fleet
    probe = retry_connect(secure_broker, probes, moved)
    assert probe.publish(topic(name, "result", fleet="south")) in ACCEPTED
    assert probe.publish(topic(name, "result", fleet="north")) == NOT_AUTHORIZED


def retry_connect(broker: SecureBroker, probes: Any, user: BrokerUser, **kwargs: Any) -> Probe:
    """Connect ``user`` once the broker has re-read its files after a reload (SIGHUP)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        probe = probes(broker.ports.plain, user, **kwargs)
        if probe.connect() == SUCCESS:
            return probe
        probe.close()
        assert time.monotonic() < deadline, f"{user.username} cannot connect after the reload"


# -- client ids ----------------------------------------------------------------------------------

def test_a_login_cannot_take_over_another_clients_session_by_its_client_id(
    secure_broker: SecureBroker, probes: Any
) -> None:
    collector = probes(secure_broker.ports.plain, secure_broker.collector,
                       client_id="edgemeter-collector-host")
    assert collector.connect() == SUCCESS
    collector.subscribe("edgemeter/v1/+/+/result")
    for stolen in ("edgemeter-collector-host", "collector", "edgemeter-agent-dev-b", "dev-b"):
        thief = probes(secure_broker.ports.plain, secure_broker.user("dev-a"), client_id=stolen)
        assert thief.connect() == SUCCESS  # connected, but as client "dev-a"
        thief.close()
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-b")))
    assert dev.publish(topic("dev-b", "result")) in ACCEPTED
    assert collector.next_topic() == topic("dev-b", "result")  # never disconnected
    assert not collector._disconnected.is_set()


def test_collector_publishes_its_presence_and_last_will(
    secure_broker: SecureBroker, probes: Any
) -> None:
    status = "edgemeter/v1/_collector/collector/status"
    collector = connected(probes(secure_broker.ports.plain, secure_broker.collector))
    assert collector.publish(status, b'{"status":"online"}') in ACCEPTED
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-a")))
    assert dev.publish(status, b'{"status":"offline"}') == NOT_AUTHORIZED


# -- TLS -----------------------------------------------------------------------------------------

def test_tls_with_the_fleet_ca_connects_and_publishes(secure_broker: SecureBroker, probes: Any) -> None:
    dev = probes(secure_broker.ports.tls, secure_broker.user("dev-a"), ca_file=secure_broker.ca_file)
    assert dev.connect() == SUCCESS
    assert dev.publish(topic("dev-a", "result")) in ACCEPTED


def test_tls_client_that_does_not_trust_the_fleet_ca_fails_verification(
    secure_broker: SecureBroker, probes: Any
) -> None:
    dev = probes(secure_broker.ports.tls, secure_broker.user("dev-a"), ca_file=None, client_cert=None)
    dev.client.tls_set()  # the system's CAs, which never signed the test broker's certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        dev.connect()


def test_mutual_tls_takes_the_certificate_cn_as_the_device_id(
    secure_broker: SecureBroker, probes: Any
) -> None:
    dev = probes(
        secure_broker.ports.mtls, secure_broker.user("dev-a"), with_password=False,
        ca_file=secure_broker.ca_file, client_cert=secure_broker.user("dev-a"),
    )
    assert dev.connect() == SUCCESS
    assert dev.publish(topic("dev-a", "result")) in ACCEPTED
    assert dev.publish(topic("dev-b", "result")) == NOT_AUTHORIZED


def test_mutual_tls_refuses_a_client_without_a_certificate(
    secure_broker: SecureBroker, probes: Any
) -> None:
    dev = probes(secure_broker.ports.mtls, secure_broker.user("dev-a"), ca_file=secure_broker.ca_file)
    try:
        reason = dev.connect()
    except (ssl.SSLError, OSError):
        return  # refused during the handshake (TLS 1.2)
    assert reason is None  # TLS 1.3: the broker's alert arrives after the handshake and closes it


# -- limits and persistence ----------------------------------------------------------------------

def test_packet_over_the_broker_limit_disconnects_its_sender(
    secure_broker: SecureBroker, probes: Any
) -> None:
    dev = connected(probes(secure_broker.ports.plain, secure_broker.user("dev-a")))
    dev.client.publish(topic("dev-a", "result"), b"x" * (2 * 1024 * 1024 + 1), qos=1)
    assert dev.wait_disconnect() is not None


def test_results_queued_for_an_absent_collector_survive_a_broker_restart(tmp_path: Path) -> None:
    if missing_tools():
        unavailable(f"the secured test broker needs {', '.join(missing_tools())}")
    with SecureBroker(tmp_path) as broker:
        collector_id = "collector-persistent"
        first = Probe(broker.ports.plain, broker.collector, client_id=collector_id, persistent=True)
        assert first.connect() == SUCCESS
        first.subscribe("edgemeter/v1/+/+/result")
        first.close()
        dev = connected(Probe(broker.ports.plain, broker.user("dev-a")))
        for _ in range(3):
            assert dev.publish(topic("dev-a", "result")) in ACCEPTED
        dev.close()
        broker.restart()  # a clean stop writes mosquitto.db; the start reads it back
        again = Probe(broker.ports.plain, broker.collector, client_id=collector_id, persistent=True)
        assert again.connect() == SUCCESS
        try:
            assert [again.next_topic() for _ in range(3)] == [topic("dev-a", "result")] * 3
        finally:
            again.close()


# -- rendering -----------------------------------------------------------------------------------

def test_rendered_config_keeps_every_deployed_setting_but_paths_ports_and_user(tmp_path: Path) -> None:
    template = CONF_TEMPLATE.read_text()
    rendered = render_mosquitto_conf(
        template, conf_dir=tmp_path, data_dir=tmp_path / "data", ports=ListenerPorts(1, 2, 3), user=None
    )
    moved = ("listener", "persistence_location")

    def settings(text: str) -> set[str]:
        lines = (line.strip() for line in text.splitlines())
        return {line for line in lines if line and not line.startswith("#") and not line.startswith(moved)}

    expected = {line.replace("/etc/mosquitto/", f"{tmp_path}/") for line in settings(template)}
    assert settings(rendered) == expected | {"require_certificate true", "use_identity_as_username true"}


def test_rendering_fails_loudly_when_the_deployed_listeners_change(tmp_path: Path) -> None:
    template = CONF_TEMPLATE.read_text().replace("listener 8883", "listener 8884")
    with pytest.raises(SecureBrokerError, match="listeners"):
        render_mosquitto_conf(template, conf_dir=tmp_path, data_dir=tmp_path, ports=ListenerPorts(1, 2, 3), user=None)
