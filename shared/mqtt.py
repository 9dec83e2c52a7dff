"""One way to reach the broker, for the agent and the collector alike.

:func:`connect` speaks MQTT v5 where the broker does and falls back to 3.1.1 where it does not
(the embedded amqtt demo broker, for one). Nothing edgemeter sends depends on v5 properties: ids,
``seq`` and ``schema_version`` travel in the payload.

paho-mqtt errors are translated here, once, into :class:`shared.errors.BrokerError` or
:class:`shared.errors.ConfigError`.

Acknowledgements. By default paho acknowledges a QoS 1 message (PUBACK) as soon as the message
handler returns. A subscriber that must not lose what it has received but not yet processed
connects with ``manual_ack=True`` and an ``on_message_ack`` handler, which also gets the message
id and QoS, and calls :meth:`MqttConnection.ack` once the message is safe. Until then the broker
keeps the message and, on a persistent session, sends it again after a reconnect. It also sends
no more unacknowledged messages than its in-flight window (Mosquitto's ``max_inflight_messages``,
20 by default).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from shared.errors import BrokerError, ConfigError

logger = logging.getLogger(__name__)

Protocol = Literal["auto", "5", "3.1.1"]
MessageHandler = Callable[[str, bytes], None]
AckingMessageHandler = Callable[[str, bytes, int, int], None]
"""``(topic, payload, mid, qos)``: pass ``mid`` and ``qos`` to :meth:`MqttConnection.ack`."""

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
V5_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r} has no host: use mqtt://HOST:PORT")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    except ValueError as err:
        raise ConfigError(f"broker URL {url!r} has a bad port: use mqtt://HOST:PORT") from err
    return BrokerUrl(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class MqttConnection:
    """A connected paho client running its network loop in a background thread."""

    def __init__(self, client: Any, protocol: str, url: BrokerUrl) -> None:
        self.client = client
        self.protocol = protocol
        self.url = url

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Publish and, for QoS >= 1, wait until the broker acknowledges (PUBACK)."""
        info = self.client.publish(topic, payload, qos=qos)
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as err:
            raise BrokerError(f"broker {self.url} refused the publish on {topic}: {err}") from err
        if qos > 0 and not info.is_published():
            raise BrokerError(
                f"broker {self.url} did not acknowledge within {timeout_s:.0f} s; "
                "check that it is running and reachable"
            )

    def subscribe(self, topic: str, qos: int = 1) -> None:
        result, _mid = self.client.subscribe(topic, qos=qos)
        if result != 0:
            raise BrokerError(f"could not subscribe to {topic} on {self.url} (code {result})")

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with ``manual_ack=True`` (a no-op for QoS 0).

        Safe from any thread: paho queues the PUBACK and wakes its network thread, as it does for
        :meth:`publish`. Best effort: an ack for a connection that has since dropped is lost, and
        the broker sends the message again on the next connection of a persistent session.
        """
        rc = self.client.ack(mid, qos)
        if rc != 0:
            logger.debug("ack of message %d on %s not sent (code %s)", mid, self.url, rc)

    def close(self) -> None:
        """Disconnect cleanly; acks already given are sent before the DISCONNECT."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self) -> MqttConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attempt(
    url: BrokerUrl,
    client_id: str,
    version: str,
    *,
    clean_start: bool,
    session_expiry_s: int,
    timeout_s: float,
    on_message: MessageHandler | None,
    on_connect: Callable[[MqttConnection], None] | None,
    manual_ack: bool = False,
    on_message_ack: AckingMessageHandler | None = None,
) -> tuple[MqttConnection | None, str]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    v5 = version == "5"
    kwargs: dict[str, Any] = {
        "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        "manual_ack": manual_ack,
    }
    if not v5:
        kwargs["clean_session"] = clean_start
    client = mqtt.Client(**kwargs)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    connected = threading.Event()
    outcome: dict[str, Any] = {}
    conn = MqttConnection(client, version, url)

    def _on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        outcome["reason"] = reason
        if not reason.is_failure:
            if on_connect is not None:
                on_connect(conn)
            connected.set()
        else:
            connected.set()

    def _on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        outcome.setdefault("disconnect", reason)
        connected.set()

    def _on_message(_c: Any, _u: Any, msg: Any) -> None:
        try:
            if on_message_ack is not None:
                on_message_ack(msg.topic, msg.payload, msg.mid, msg.qos)
            elif on_message is not None:
                on_message(msg.topic, msg.payload)
        except Exception:  # a handler bug must never kill the network thread
            logger.exception("message handler failed on %s", msg.topic)

    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect

    def _on_connect_fail(_c: Any, _u: Any) -> None:
        # the broker closed the socket before any CONNACK (amqtt does this for MQTT v5)
        outcome.setdefault("disconnect", "connection closed before CONNACK")
        connected.set()

    client.on_connect_fail = _on_connect_fail
    client.on_message = _on_message
    props = None
    if v5 and session_expiry_s > 0:
        # only when needed: a v3-only broker answers a bare v5 CONNECT with "unsupported
        # protocol version" at once, but amqtt never answers one that carries properties
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
    try:
        if v5:
            client.connect(url.host, url.port, keepalive=30, clean_start=clean_start,
                           properties=props)
        else:
            client.connect(url.host, url.port, keepalive=30)
    except OSError as err:
        raise BrokerError(
            f"cannot reach the broker at {url}: {err.strerror or err}; is it running?"
        ) from err
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not connected.wait(0.05):
        if time.monotonic() > deadline:
            break
    reason = outcome.get("reason")
    if reason is not None and not reason.is_failure and "disconnect" not in outcome:
        return conn, ""
    client.loop_stop()
    with contextlib.suppress(Exception):  # best effort on a dead connection
        client.disconnect()
    if reason is None and "disconnect" not in outcome:
        return None, f"no CONNACK within {timeout_s:.0f} s"
    return None, str(reason if reason is not None else outcome.get("disconnect"))


def connect(
    url: str | BrokerUrl,
    client_id: str,
    *,
    protocol: Protocol = "auto",
    clean_start: bool = True,
    session_expiry_s: int = 0,
    timeout_s: float = 10.0,
    on_message: MessageHandler | None = None,
    on_connect: Callable[[MqttConnection], None] | None = None,
    manual_ack: bool = False,
    on_message_ack: AckingMessageHandler | None = None,
) -> MqttConnection:
    """Connect to the broker, trying MQTT v5 first when ``protocol`` is ``auto``.

    ``clean_start=False`` with ``session_expiry_s > 0`` asks for a persistent session, so QoS 1
    messages published while a collector is away are delivered when it returns. ``on_connect``
    runs after every (re)connection: subscribe there so subscriptions survive reconnects.

    ``manual_ack=True`` leaves acknowledging to the caller: give ``on_message_ack`` (instead of
    ``on_message``), which also receives each message's id and QoS, and call
    :meth:`MqttConnection.ack` with them once the message is safe. A message that is never acked
    stays with the broker, which sends it again on the next connection of a persistent session
    (message ids belong to one connection: do not ack after a reconnect what arrived before it).
    """
    if on_message is not None and on_message_ack is not None:
        raise ConfigError("give on_message or on_message_ack, not both")
    if manual_ack and on_message is not None:
        raise ConfigError("manual_ack=True needs on_message_ack, which receives the id to ack")
    broker = url if isinstance(url, BrokerUrl) else parse_broker_url(url)
    versions = ["5", "3.1.1"] if protocol == "auto" else [protocol]
    errors: list[str] = []
    for version in versions:
        # In auto mode the v5 try is a probe: a broker on a working link answers CONNACK in well
        # under V5_PROBE_TIMEOUT_S, and one that chokes on v5 (amqtt) then costs no more than that.
        attempt_timeout_s = min(timeout_s, V5_PROBE_TIMEOUT_S) if protocol == "auto" and version == "5" \
            else timeout_s
        conn, why = _attempt(
            broker,
            client_id,
            version,
            clean_start=clean_start,
            session_expiry_s=session_expiry_s,
            timeout_s=attempt_timeout_s,
            on_message=on_message,
            on_connect=on_connect,
            manual_ack=manual_ack,
            on_message_ack=on_message_ack,
        )
        if conn is not None:
            logger.info("connected to %s with MQTT %s", broker, version)
            return conn
        errors.append(f"MQTT {version}: {why}")
        logger.info("MQTT %s connection to %s failed: %s", version, broker, why)
    raise BrokerError(f"broker {broker} refused the connection ({'; '.join(errors)})")
