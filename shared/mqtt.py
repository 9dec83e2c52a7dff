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
20 by default; 0 there means no limit).

Receive Maximum. On MQTT v5 a subscriber states its own window on CONNECT
(``connect(receive_maximum=N)``): the broker then never has more than N QoS 1 messages
unacknowledged with it, whatever its own in-flight setting, so a subscriber that acknowledges only
what it has processed holds at most N messages in memory and stops receiving while they wait.
MQTT 3.1.1 has no such property: there the broker's in-flight window is the only bound.

Last Will. ``connect(will=Will(topic, payload, retain=True))`` registers a message the broker
publishes if the connection dies without a DISCONNECT.

Credentials and TLS. A user name and password may be given to :func:`connect` as arguments (from a
settings file, the environment or a credentials file) or, for compatibility, inside the URL; the
arguments win. ``ca_file``, ``cert_file`` and ``key_file`` configure TLS (``mqtts://`` only). No
message or log line here shows a password: URLs go through :func:`shared.redact.redact_url`, and
:class:`BrokerUrl` prints without one.

Flushing. A PUBACK handed to paho is written to the socket soon after, but the broker may not
have read it when a new connection with the same client id takes the session over (a quick
restart): Mosquitto then closes the old connection and drops what it had not read, and the
message comes again. :meth:`MqttConnection.flush` makes a round trip (an UNSUBSCRIBE of a topic
nobody uses, answered by UNSUBACK): the broker handles a connection's packets in order, so once
the answer is back every ack sent before it has been processed. A subscriber that acks manually
calls it before :meth:`MqttConnection.close`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from shared.errors import BrokerError, ConfigError
from shared.redact import redact_url
from shared.topics import ROOT as TOPIC_ROOT

logger = logging.getLogger(__name__)

MqttVersion = Literal["auto", "5", "3.1.1"]
"""Which MQTT version :func:`connect` speaks: ``auto`` tries 5, then 3.1.1."""
MessageHandler = Callable[[str, bytes], None]
AckingMessageHandler = Callable[[str, bytes, int, int], None]
"""``(topic, payload, mid, qos)``: pass ``mid`` and ``qos`` to :meth:`MqttConnection.ack`."""

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
V5_PROBE_TIMEOUT_S = 3.0
DEFAULT_KEEPALIVE_S = 30
FLUSH_TOPIC = f"{TOPIC_ROOT}/_flush"
"""Never subscribed to: :meth:`MqttConnection.flush` unsubscribes from it for the round trip."""
SubscribeHandler = Callable[[bool, str], None]
"""``(granted, detail)``: called from the network thread when the broker answers a SUBSCRIBE."""


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Will:
    """A Last Will: published by the broker when the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS: the CA that signed the broker's certificate, and this client's own pair
    for mutual TLS. All ``None``: the system's CAs and no client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __bool__(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``."""
    shown = repr(redact_url(url))
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise ConfigError(f"broker URL {shown} does not parse: use mqtt://HOST:PORT") from err
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"broker URL {shown} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"broker URL {shown} has no host: use mqtt://HOST:PORT")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    except ValueError as err:
        raise ConfigError(f"broker URL {shown} has a bad port: use mqtt://HOST:PORT") from err
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
        self.shared_subscriptions = protocol == "5"
        """Whether ``$share/`` subscriptions work: MQTT v5, unless the CONNACK said Shared
        Subscription Available = 0 (updated on every reconnection)."""
        self._lock = threading.Lock()
        self._on_subscribed: dict[int, SubscribeHandler] = {}
        self._unsubscribed: dict[int, threading.Event] = {}
        client.on_subscribe = self._handle_suback
        client.on_unsubscribe = self._handle_unsuback

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0, *,
                retain: bool = False, wait: bool = True) -> None:
        """Publish and, for QoS >= 1, wait until the broker acknowledges (PUBACK).

        ``wait=False`` only queues the message (safe from any thread, never blocks): paho sends
        it, and on a persistent session sends a QoS 1 message again after a reconnect until the
        broker acknowledges it. Raises :class:`BrokerError` when paho refuses to queue it.
        """
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if not wait:
            if info.rc not in (0, 4):  # 4: not connected now; queued for the next connection
                raise BrokerError(f"could not queue a publish on {topic} to {self.url} "
                                  f"(code {info.rc})")
            return
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as err:
            raise BrokerError(f"broker {self.url} refused the publish on {topic}: {err}") from err
        if qos > 0 and not info.is_published():
            raise BrokerError(
                f"broker {self.url} did not acknowledge within {timeout_s:.0f} s; "
                "check that it is running and reachable"
            )

    def subscribe(self, topic: str, qos: int = 1, on_granted: SubscribeHandler | None = None) -> None:
        """Send a SUBSCRIBE; ``on_granted(granted, detail)`` runs when the broker answers.

        Does not wait, so it may be called from ``on_connect`` (the network thread).
        """
        with self._lock:  # the answer cannot be handled before its handler is registered
            result, mid = self.client.subscribe(topic, qos=qos)
            if result != 0:
                raise BrokerError(f"could not subscribe to {topic} on {self.url} (code {result})")
            if on_granted is not None and mid is not None:
                self._on_subscribed[mid] = on_granted

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the broker has processed every packet sent so far (acks included).

        One round trip: an UNSUBSCRIBE from :data:`FLUSH_TOPIC`, which nothing subscribes to, and
        its UNSUBACK. Returns False when the broker did not answer within ``timeout_s`` (or the
        connection is gone); nothing else changes on the broker.
        """
        done = threading.Event()
        with self._lock:
            result, mid = self.client.unsubscribe(FLUSH_TOPIC)
            if result != 0 or mid is None:
                logger.debug("flush of %s not sent (code %s)", self.url, result)
                return False
            self._unsubscribed[mid] = done
        answered = done.wait(timeout_s)
        with self._lock:
            self._unsubscribed.pop(mid, None)
        return answered

    def _handle_suback(self, _c: Any, _u: Any, mid: int, codes: list[Any], _p: Any = None) -> None:
        with self._lock:
            handler = self._on_subscribed.pop(mid, None)
        if handler is None:
            return
        failed = [c for c in codes if getattr(c, "is_failure", False)]
        try:
            handler(not failed, ", ".join(str(c) for c in failed))
        except Exception:  # a handler bug must never kill the network thread
            logger.exception("subscribe handler failed on %s", self.url)

    def _handle_unsuback(self, _c: Any, _u: Any, mid: int, *_rest: Any) -> None:
        with self._lock:
            done = self._unsubscribed.pop(mid, None)
        if done is not None:
            done.set()

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
    tls_files: TlsFiles = TlsFiles(),
    keepalive_s: int = DEFAULT_KEEPALIVE_S,
    receive_maximum: int | None = None,
    will: Will | None = None,
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
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        files = tls_files
        try:
            client.tls_set(
                ca_certs=str(files.ca_file) if files.ca_file else None,
                certfile=str(files.cert_file) if files.cert_file else None,
                keyfile=str(files.key_file) if files.key_file else None,
            )
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"cannot set up TLS for the broker at {url}: {getattr(err, 'strerror', None) or err}; "
                "check the ca_file, cert_file and key_file settings"
            ) from err
    connected = threading.Event()
    outcome: dict[str, Any] = {}
    conn = MqttConnection(client, version, url)

    def _on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, connack: Any = None) -> None:
        outcome["reason"] = reason
        if v5 and connack is not None:  # an absent property means available
            conn.shared_subscriptions = bool(getattr(connack, "SharedSubscriptionAvailable", 1))
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
    if v5 and (session_expiry_s > 0 or receive_maximum is not None):
        # only when needed: a v3-only broker answers a bare v5 CONNECT with "unsupported
        # protocol version" at once, but amqtt never answers one that carries properties
        props = Properties(PacketTypes.CONNECT)
        if session_expiry_s > 0:
            props.SessionExpiryInterval = session_expiry_s
        if receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
    try:
        if v5:
            client.connect(url.host, url.port, keepalive=keepalive_s, clean_start=clean_start,
                           properties=props)
        else:
            client.connect(url.host, url.port, keepalive=keepalive_s)
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
    protocol: MqttVersion = "auto",
    clean_start: bool = True,
    session_expiry_s: int = 0,
    timeout_s: float = 10.0,
    on_message: MessageHandler | None = None,
    on_connect: Callable[[MqttConnection], None] | None = None,
    manual_ack: bool = False,
    on_message_ack: AckingMessageHandler | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
    keepalive_s: int = DEFAULT_KEEPALIVE_S,
    receive_maximum: int | None = None,
    will: Will | None = None,
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

    ``username`` and ``password`` override those in the URL (a password needs a user name).
    ``ca_file``, ``cert_file`` and ``key_file`` are PEM files for TLS and need an ``mqtts://`` URL.

    ``receive_maximum`` (1-65535, MQTT v5 only) caps the QoS 1 messages the broker sends before
    this client acknowledges some; ``will`` registers a Last Will (module docstring).
    """
    if receive_maximum is not None and not 1 <= receive_maximum <= 65_535:
        raise ConfigError(f"receive_maximum must be 1-65535, not {receive_maximum}")
    if on_message is not None and on_message_ack is not None:
        raise ConfigError("give on_message or on_message_ack, not both")
    if manual_ack and on_message is not None:
        raise ConfigError("manual_ack=True needs on_message_ack, which receives the id to ack")
    broker = url if isinstance(url, BrokerUrl) else parse_broker_url(url)
    if username is not None:
        broker = replace(broker, username=username)
    if password is not None:
        broker = replace(broker, password=password)
    if broker.password is not None and not broker.username:
        raise ConfigError(f"a password for the broker at {broker} needs a user name too")
    tls_files = TlsFiles(*(Path(f) if f else None for f in (ca_file, cert_file, key_file)))
    if tls_files and not broker.tls:
        raise ConfigError(f"TLS files are set but the broker URL {broker} is not TLS: "
                          "use mqtts://HOST:PORT")
    if tls_files.key_file and not tls_files.cert_file:
        raise ConfigError("a TLS key_file needs its cert_file (the client certificate)")
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
            tls_files=tls_files,
            keepalive_s=keepalive_s,
            receive_maximum=receive_maximum,
            will=will,
        )
        if conn is not None:
            logger.info("connected to %s with MQTT %s", broker, version)
            return conn
        errors.append(f"MQTT {version}: {why}")
        logger.info("MQTT %s connection to %s failed: %s", version, broker, why)
    raise BrokerError(f"broker {broker} refused the connection ({'; '.join(errors)})")
