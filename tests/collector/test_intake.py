"""The intake: what it subscribes to, how it sorts what arrives, which acks it sends, and how it
reports disconnects and session takeovers; with a fake connection and a fake clock."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from collector.config import MqttSettings
from collector.inbox import Delivery, Inbox
from collector.intake import TAKEOVER_LOG_INTERVAL_S, Intake, reason_of
from collector.metrics import CollectorMetrics
from shared.mqtt import SESSION_TAKEN_OVER, SHORT_LIVED_S
from shared.topics import TopicKind, Topics
from tests.collector.test_service import FakeBroker, FakeClock, FakeConnection


class ReasonCode:
    """Shaped like paho's ``ReasonCode``: a value and a name."""

    def __init__(self, value: int, name: str) -> None:
        self.value = value
        self.name = name

    def __str__(self) -> str:
        return self.name


class DisconnectFlags:
    def __init__(self, is_disconnect_packet_from_server: bool) -> None:
        self.is_disconnect_packet_from_server = is_disconnect_packet_from_server


class PahoClient:
    """Just the callback slot the intake chains onto."""

    def __init__(self) -> None:
        self.on_disconnect: Any = None


class WatchedBroker(FakeBroker):
    """A fake broker whose connections carry a paho-like client (``conn.client``)."""

    def __init__(self, protocol: str = "5", shares: bool | None = None) -> None:
        super().__init__()
        self.protocol = protocol
        self.shares = shares
        self.conn: FakeConnection | None = None
        self.earlier: list[str] = []

    def __call__(self, url: str, client_id: str, **options: Any) -> FakeConnection:
        conn = FakeConnection(self.calls)
        conn.protocol = self.protocol
        if self.shares is not None:
            conn.shared_subscriptions = self.shares  # type: ignore[attr-defined]
        client = PahoClient()
        client.on_disconnect = lambda *args: self.earlier.append("shared.mqtt's own")
        conn.client = client  # type: ignore[attr-defined]
        self.conn = conn
        self.options = {"url": url, "client_id": client_id, **options}
        self.deliver = options["on_message_ack"]
        self.on_connect = options["on_connect"]
        self.on_connect(conn)
        return conn

    def drop(self, code: int, name: str, *, packet: bool = False) -> None:
        """paho calls ``on_disconnect(client, userdata, flags, reason, properties)``; ``packet``:
        the broker sent a DISCONNECT (else it closed the socket)."""
        assert self.conn is not None
        flags = DisconnectFlags(is_disconnect_packet_from_server=packet)
        self.conn.client.on_disconnect(self.conn.client, None, flags,  # type: ignore[attr-defined]
                                       ReasonCode(code, name), None)


class Hooks:
    def __init__(self) -> None:
        self.connected = 0
        self.progress: list[str] = []

    def on_connected(self) -> None:
        self.connected += 1

    def on_progress(self, topic: str, payload: bytes) -> None:
        self.progress.append(topic)


def intake(broker: FakeBroker, inbox: Inbox | None = None, clock: FakeClock | None = None,
           hooks: Hooks | None = None, **mqtt: Any) -> Intake:
    hooks = hooks or Hooks()
    return Intake(MqttSettings(url="mqtt://broker.example:1883", client_id="c1", **mqtt), "c1",
                  inbox=inbox or Inbox(10), metrics=CollectorMetrics(),
                  on_connected=hooks.on_connected, on_progress=hooks.on_progress,
                  connect=broker, clock=clock or FakeClock())


def test_it_subscribes_on_every_connection_after_announcing_itself() -> None:
    broker, hooks = WatchedBroker(), Hooks()
    it = intake(broker, hooks=hooks)
    it.connect(None, 1.0)
    assert hooks.connected == 1
    broker.on_connect(broker.conn)  # paho reconnected
    subscribed = [c[1] for c in broker.calls if c[0] == "subscribe"]
    assert subscribed == 2 * [f"edgemeter/v1/+/+/{k}"
                              for k in ("result", "status", "telemetry", "progress", "ack", "monitor")]
    assert hooks.connected == 2
    assert broker.options["receive_maximum"] == 10 and broker.options["manual_ack"] is True


def test_a_group_is_shared_where_the_broker_offers_it_and_ignored_once_with_a_warning_elsewhere(
        caplog: pytest.LogCaptureFixture) -> None:
    shared = intake(WatchedBroker(), group="g1")
    shared.connect(None, 1.0)
    assert shared.subscription_for(TopicKind.RESULT) == "$share/g1/edgemeter/v1/+/+/result"
    broker = WatchedBroker(shares=False)
    plain = intake(broker, group="g1")
    plain.connect(None, 1.0)
    broker.on_connect(broker.conn)
    assert plain.subscription_for(TopicKind.RESULT) == "edgemeter/v1/+/+/result"
    assert caplog.text.count("offers no shared subscriptions") == 1


def test_messages_are_sorted_queued_with_their_connection_or_acknowledged_at_once() -> None:
    broker, inbox, hooks = WatchedBroker(), Inbox(10), Hooks()
    it = intake(broker, inbox, hooks=hooks)
    it.connect(None, 1.0)
    assert broker.deliver is not None
    broker.deliver(Topics.result("default", "pi-01"), b"{}", 1, 1)
    broker.deliver(Topics.build("default", "pi-01", TopicKind.PROGRESS), b"{}", 2, 1)
    broker.deliver("edgemeter/v1/_collector/c2/status", b"{}", 3, 1)
    assert broker.acks() == [2, 3]  # progress and another collector's status: never stored
    assert hooks.progress == [Topics.build("default", "pi-01", TopicKind.PROGRESS)]
    batch = inbox.take(10)
    assert batch is not None and [i.delivery for i in batch] == [Delivery(1, 1, 1)]
    assert inbox.received == 2
    assert it.metrics.received.labels(kind="result")._value.get() == 1


def test_acks_are_sent_only_on_the_connection_the_message_came_on() -> None:
    broker = WatchedBroker()
    it = intake(broker)
    it.connect(None, 1.0)
    broker.on_connect(broker.conn)  # now connection 2
    it.ack([Delivery(1, 10, 1), Delivery(2, 11, 1)])
    assert broker.acks() == [11]


def test_publishing_without_a_connection_is_a_broker_error() -> None:
    from shared.errors import BrokerError

    it = intake(WatchedBroker())
    with pytest.raises(BrokerError, match=re.escape("not connected to mqtt://broker.example:1883")):
        it.announce("t", b"x")
    with pytest.raises(BrokerError, match="not connected"):
        it.publish("t", b"x")


def test_close_flushes_then_disconnects_and_the_disconnect_is_only_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector.intake")
    broker = WatchedBroker()
    it = intake(broker)
    it.connect(None, 1.0)
    it.close(1.0)
    broker.drop(0, "Normal disconnection")
    assert [c[0] for c in broker.calls[-2:]] == ["flush", "close"]
    assert it.connection is None and it.metrics.broker_disconnects._value.get() == 0
    assert "disconnected from mqtt://broker.example:1883" in caplog.text


def test_a_lost_connection_is_logged_with_its_reason_code_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    broker = WatchedBroker()
    it = intake(broker)
    it.connect(None, 1.0)
    broker.drop(141, "Keep alive timeout")
    (record,) = [r for r in caplog.records
                 if r.name == "collector.intake" and r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert "Keep alive timeout (MQTT reason code 141)" in record.getMessage()
    assert broker.earlier == ["shared.mqtt's own"]  # chained, not replaced
    assert it.metrics.broker_disconnects._value.get() == 1
    assert it.metrics.session_takeovers._value.get() == 0


def test_a_session_takeover_is_an_error_counted_each_time_and_logged_at_most_every_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    broker, clock = WatchedBroker(), FakeClock()
    it = intake(broker, clock=clock)
    it.connect(None, 1.0)
    for _ in range(3):  # two clients with one id knock each other off about once a second
        broker.drop(SESSION_TAKEN_OVER, "Session taken over", packet=True)
        clock.now_s += 1.0
    clock.now_s += TAKEOVER_LOG_INTERVAL_S
    broker.drop(SESSION_TAKEN_OVER, "Session taken over", packet=True)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "same client id (MQTT reason code 142, Session taken over)" in errors[0]
    assert "(2 more since the last report)" in errors[1]
    assert it.metrics.session_takeovers._value.get() == 4
    assert it.metrics.registry.get_sample_value(
        "edgemeter_collector_session_takeovers_total") == 4


def test_a_broker_that_keeps_closing_fresh_connections_without_a_reason_reports_a_takeover(
        caplog: pytest.LogCaptureFixture) -> None:
    broker, clock = WatchedBroker(), FakeClock()
    it = intake(broker, clock=clock)
    it.connect(None, 1.0)
    clock.now_s += 60.0
    broker.drop(128, "Unspecified error")  # an established connection lost: not a takeover
    for _ in range(2):  # Mosquitto before 2.0.15 closes the old connection and says nothing
        broker.on_connect(broker.conn)
        clock.now_s += 1.0
        broker.drop(128, "Unspecified error")
    assert it.metrics.session_takeovers._value.get() == 1
    assert it.metrics.broker_disconnects._value.get() == 3
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "same client id" in error and "2 times in a row" in error
    broker.on_connect(broker.conn)
    clock.now_s += SHORT_LIVED_S
    broker.drop(128, "Unspecified error")  # lived long enough: the run of short drops ends
    assert it.metrics.session_takeovers._value.get() == 1


def test_a_connection_without_a_paho_client_is_not_watched() -> None:
    it = intake(FakeBroker())  # FakeConnection has no .client
    it.connect(None, 1.0)
    assert it.connection is not None


def test_reason_codes_are_read_from_paho_objects_and_bare_ints() -> None:
    assert reason_of(ReasonCode(142, "Session taken over")) == (142, "Session taken over")
    assert reason_of(7) == (7, "7")
    assert reason_of(None) == (None, "None")
