"""The collector's side of the broker: its connection, its subscriptions, and what arrives.

::

    intake = Intake(mqtt_settings, "edgemeter-collector-host", inbox=inbox, metrics=metrics,
                    on_connected=announcer.publish_status, on_progress=announcer.progress)
    intake.connect(will)          # returns once the broker confirmed every subscription
    intake.ack(deliveries)        # committer thread, after the commit
    intake.close(flush_timeout_s=10)

Connection. One persistent session (``clean_start=False``, session expiry one day by default, a
stable client id, :func:`default_client_id`) through :func:`shared.mqtt.connect` (or an injected
function called the same way), with ``manual_ack=True`` and an MQTT v5 Receive Maximum of the
inbox's window. Subscriptions to ``result``, ``status``, ``telemetry``, ``progress``, ``ack`` and ``monitor`` of
``fleet`` (``+`` for every fleet) are made in ``on_connect``, so they survive reconnects. With
``group`` and an MQTT v5 broker they are shared subscriptions (``$share/<group>/...``): several
collectors split the streams. On a 3.1.1 broker, or a v5 one whose CONNACK says Shared
Subscription Available = 0, the group is ignored with one warning and every collector gets
everything (run_ids are unique in the store, so that is only wasteful).

What arrives (on the network thread, which only sorts and queues, so it keeps reading and sending
PUBACKs): a collector's own status (fleet ``_collector``) is acknowledged and ignored;
``progress`` goes to ``on_progress`` and is acknowledged at once (it is never stored); everything
else goes into the :class:`collector.inbox.Inbox` with the connection it came on, to be
acknowledged by :meth:`Intake.ack` once stored. Message ids belong to one connection: a message
received before a reconnect is not acknowledged after it (the broker redelivers it, and the store
keeps one copy).

Disconnects. Every disconnect is logged with its MQTT reason code: ours (``close``) at INFO, any
other at WARNING (paho reconnects by itself). A session taken over by another client with the same
client id is logged as an ERROR, at most every :data:`TAKEOVER_LOG_INTERVAL_S` (with a count of
those in between), and counted in ``edgemeter_collector_session_takeovers_total``: another
collector or a device is using this collector's client id, and the two will keep knocking each
other off. A takeover is what an MQTT v5 broker says with reason code 142 ("Session taken
over"); a broker that closes the old connection without a reason (Mosquitto before 2.0.15) is
taken to report one when it drops :data:`shared.mqtt.SHORT_DROPS_TAKEOVER` connections in a row,
each soon after it was made (:meth:`shared.mqtt.DisconnectWatch.takeover`, the daemon's rule too).
The intake chains its own callback onto the paho client of the connection
:func:`shared.mqtt.connect` returns (``connection.client.on_disconnect``) and quiets that
connection's own :class:`shared.mqtt.DisconnectWatch`, so each disconnect is logged once; a
connection without a paho client is not watched.

Ownership. The intake owns the current connection and its number, the set of subscriptions the
broker granted, and the disconnect bookkeeping, all behind one lock: written on the network thread
(connect, disconnect) and read from the committer (acks), the HTTP threads (jobs published) and
whoever stops the service.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from collector.config import MqttSettings
from collector.errors import SubscribeError
from collector.health import COLLECTOR_FLEET
from collector.inbox import Delivery, Inbox, Item
from collector.metrics import CollectorMetrics
from shared.errors import BrokerError
from shared.mqtt import SESSION_TAKEN_OVER, DisconnectWatch, SubscribeHandler, Will
from shared.mqtt import connect as mqtt_connect
from shared.redact import redact_url
from shared.topics import ROOT, TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = ["SESSION_TAKEN_OVER", "SUBSCRIBED_KINDS", "BrokerConnection", "ConnectFunction",
           "Intake", "default_client_id"]

SUBSCRIBED_KINDS = (TopicKind.RESULT, TopicKind.STATUS, TopicKind.TELEMETRY,
                    TopicKind.PROGRESS, TopicKind.ACK, TopicKind.MONITOR)
NORMAL_DISCONNECTION = 0
TAKEOVER_LOG_INTERVAL_S = 10.0
"""Takeovers are logged at most this often (two clients with one id fight about once a second)."""
_COLLECTOR_PREFIX = f"{ROOT}/{COLLECTOR_FLEET}/"


class BrokerConnection(Protocol):
    """What the collector uses of a broker connection (:class:`shared.mqtt.MqttConnection`)."""

    @property
    def protocol(self) -> str: ...

    def subscribe(self, topic: str, qos: int = 1,
                  on_granted: SubscribeHandler | None = None) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0, *,
                retain: bool = False, wait: bool = True) -> None: ...

    def ack(self, mid: int, qos: int) -> None: ...

    def flush(self, timeout_s: float = 10.0) -> bool: ...

    def close(self) -> None: ...


ConnectFunction = Callable[..., BrokerConnection]
"""Called like :func:`shared.mqtt.connect` (URL, client id, keyword options); calls its
``on_connect`` with the connection after every (re)connection and ``on_message_ack`` with each
message."""


def default_client_id(name: str | None = None) -> str:
    """``edgemeter-collector-<name>``, the host name by default: stable across restarts (so the
    broker keeps the session) and distinct between hosts (members of one ``group`` must differ,
    or the broker disconnects one when the other connects)."""
    raw = name or socket.gethostname() or "default"
    return "edgemeter-collector-" + re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:64]


def offers_shares(conn: BrokerConnection) -> bool:
    """``$share/`` works: the connection says so (``shared_subscriptions``, from the CONNACK's
    Shared Subscription Available), or, for a connection that does not say, it speaks MQTT v5."""
    return bool(getattr(conn, "shared_subscriptions", conn.protocol == "5"))


def reason_of(reason: Any) -> tuple[int | None, str]:
    """(code, name) of a paho reason code (``ReasonCode``, or a bare int from older callbacks)."""
    code = getattr(reason, "value", reason)
    return (code if isinstance(code, int) else None), str(reason)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Intake:
    """The collector's broker connection and subscriptions; see the module docstring."""

    def __init__(
        self,
        mqtt: MqttSettings,
        client_id: str,
        *,
        inbox: Inbox,
        metrics: CollectorMetrics,
        on_connected: Callable[[], None],
        on_progress: Callable[[str, bytes], None],
        connect: ConnectFunction = mqtt_connect,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``mqtt`` with its secrets already resolved; ``on_connected`` runs after every
        (re)connection, before the subscriptions are sent; ``on_progress`` gets each progress
        message (both on the network thread)."""
        self.settings = mqtt
        self.client_id = client_id
        self.group = mqtt.group
        self.fleet = mqtt.fleet
        self.broker = redact_url(mqtt.url)
        """The broker's URL as it may be shown: without its password."""
        self.metrics = metrics
        self._inbox = inbox
        self._on_connected = on_connected
        self._on_progress = on_progress
        self._connect = connect
        self._clock = clock
        self._received = {kind.value: metrics.received.labels(kind=kind.value)
                          for kind in SUBSCRIBED_KINDS}
        self._received_other = metrics.received.labels(kind="result")  # counted; rejected
        self._all_subscribed = threading.Event()
        self._lock = threading.Lock()
        self._conn: BrokerConnection | None = None
        self._connection = 0  # counts (re)connections; message ids are valid on one only
        self._subscribed: set[str] = set()
        self._warned_group = False
        self._closing = False
        self._takeover_logged_s: float | None = None
        self._takeovers_unlogged = 0
        self._watch = DisconnectWatch(clock=clock)  # tells a takeover from other disconnects

    # -- subscriptions -------------------------------------------------------------------------

    def subscription_for(self, kind: TopicKind) -> str:
        """The topic filter for one kind (shared when ``group`` is set and the broker can)."""
        return self._filter(kind, self.connection)

    @property
    def subscriptions(self) -> list[str]:
        conn = self.connection
        return [self._filter(kind, conn) for kind in SUBSCRIBED_KINDS]

    def _filter(self, kind: TopicKind, conn: BrokerConnection | None) -> str:
        if self.group and (conn is None or offers_shares(conn)):
            return Topics.shared_subscription(kind, self.group, self.fleet)
        return Topics.subscription(kind, self.fleet)

    @property
    def subscribed(self) -> bool:
        """True while connected with every subscription granted."""
        return self._all_subscribed.is_set()

    @property
    def connection(self) -> BrokerConnection | None:
        """The connection now; ``None`` before :meth:`connect` and after :meth:`close`."""
        with self._lock:
            return self._conn

    # -- any thread ----------------------------------------------------------------------------

    def connect(self, will: Will | None, connect_timeout_s: float) -> None:
        """Connect and subscribe; returns once the broker confirmed every subscription.

        Raises :class:`shared.errors.BrokerError` when the broker cannot be reached, and
        :class:`collector.errors.SubscribeError` when it does not confirm the subscriptions
        within ``connect_timeout_s``."""
        mqtt, tls = self.settings, self.settings.tls
        with self._lock:
            self._closing = False
        self._all_subscribed.clear()
        conn = self._connect(
            mqtt.url,
            self.client_id,
            username=mqtt.username,
            password=mqtt.password.get_secret_value() if mqtt.password else None,
            ca_file=tls.ca_file,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            keepalive_s=mqtt.keepalive_s,
            clean_start=False,
            session_expiry_s=mqtt.session_expiry_s,
            timeout_s=connect_timeout_s,
            manual_ack=True,
            receive_maximum=self._inbox.window,
            will=will,
            on_message_ack=self._on_message,
            on_connect=self._on_connect,
        )
        with self._lock:
            self._conn = conn  # on_connect has set it already, unless a fake did not call it
        self._watch_disconnects(conn)
        if not self._all_subscribed.wait(connect_timeout_s):
            wanted = set(self.subscriptions)
            with self._lock:
                missing = sorted(wanted - self._subscribed)
            raise SubscribeError(
                f"broker {self.broker} did not confirm the subscription to "
                f"{', '.join(missing)} within {connect_timeout_s:.0f} s"
            )

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge messages now safe in the store; those received on an earlier connection
        are skipped (the broker sends them again, and the store keeps one copy)."""
        with self._lock:  # so that no reconnection happens between the check and the acks
            conn, connection = self._conn, self._connection
            if conn is None:
                return
            for delivery in deliveries:
                if delivery.connection == connection:
                    conn.ack(delivery.mid, delivery.qos)

    def announce(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a QoS 1 message without waiting (paho sends it, again after a reconnect until
        the broker has it). Raises :class:`shared.errors.BrokerError` when it cannot."""
        conn = self.connection
        if conn is None:
            raise BrokerError(f"the collector is not connected to {self.broker}")
        conn.publish(topic, payload, qos=1, retain=retain, wait=False)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (jobs sent from the HTTP API).
        Raises :class:`shared.errors.BrokerError` when not connected or not acknowledged."""
        conn = self.connection
        if conn is None:
            raise BrokerError(f"the collector is not connected to {self.broker}")
        conn.publish(topic, payload, qos=1)

    def close(self, flush_timeout_s: float) -> None:
        """Have the broker confirm every ack sent (up to ``flush_timeout_s``), then disconnect."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._closing = True
        if conn is None:
            return
        try:
            if not conn.flush(flush_timeout_s):
                logger.warning("broker %s did not confirm within %.0f s that it has the acks; "
                               "it may deliver some stored results again (kept once)",
                               self.broker, flush_timeout_s)
            conn.close()
        except (BrokerError, OSError) as err:  # a dead connection: the broker redelivers
            logger.debug("MQTT disconnect from %s failed: %s", self.broker, err)

    # -- network thread ------------------------------------------------------------------------

    def _on_connect(self, conn: BrokerConnection) -> None:
        with self._lock:
            warn = bool(self.group) and not offers_shares(conn) and not self._warned_group
            self._warned_group = self._warned_group or warn
        if warn:
            logger.warning(
                "broker %s (MQTT %s) offers no shared subscriptions, so group %r is ignored "
                "and every collector receives every message", self.broker, conn.protocol,
                self.group,
            )
        with self._lock:
            reconnected = self._connection > 0
            self._watch.connected()
            self._conn = conn
            self._connection += 1
            self._subscribed.clear()
            self._all_subscribed.clear()
        if reconnected:
            logger.info("collector %s reconnected to %s", self.client_id, self.broker)
        self._on_connected()
        topics = self.subscriptions
        try:
            for topic in topics:
                conn.subscribe(topic, qos=1, on_granted=self._granted_handler(topic))
        except BrokerError as err:  # raised here it would end paho's network thread
            logger.error("could not subscribe to %s: %s", ", ".join(topics), err)

    def _granted_handler(self, topic: str) -> SubscribeHandler:
        def _on_granted(granted: bool, detail: str) -> None:
            if not granted:
                logger.error("broker %s refused the subscription to %s: %s", self.broker, topic,
                             detail)
                return
            with self._lock:
                self._subscribed.add(topic)
                wanted = {self._filter(kind, self._conn) for kind in SUBSCRIBED_KINDS}
                done = self._subscribed >= wanted
            if done:
                self._all_subscribed.set()
        return _on_granted

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Sort and queue; the writer parses and stores (module docstring)."""
        if topic.startswith(_COLLECTOR_PREFIX):  # a collector's own status: not a device's
            self._ack_now(mid, qos)
            return
        kind = topic.rpartition("/")[2]
        self._received.get(kind, self._received_other).inc()
        if kind == "progress":
            self._inbox.note_unqueued()
            self._on_progress(topic, payload)
            self._ack_now(mid, qos)
            return
        with self._lock:
            connection = self._connection
        self._inbox.put(Item(topic, bytes(payload), Delivery(connection, mid, qos), _utc_now()))

    def _ack_now(self, mid: int, qos: int) -> None:
        """Acknowledge a message that needs no storing."""
        conn = self.connection
        if conn is not None and qos > 0:
            conn.ack(mid, qos)

    def _watch_disconnects(self, conn: BrokerConnection) -> None:
        """Chain :meth:`disconnected` onto the paho client's ``on_disconnect`` (module
        docstring); a connection without a paho client is not watched."""
        client = getattr(conn, "client", None)
        if client is None or not hasattr(client, "on_disconnect"):
            logger.debug("connection to %s has no paho client: disconnects are not logged",
                         self.broker)
            return
        previous = client.on_disconnect
        shared_watch = getattr(conn, "disconnects", None)
        if isinstance(shared_watch, DisconnectWatch):
            shared_watch.quiet = True  # disconnected() logs them, once, with this collector's id

        def on_disconnect(*args: Any) -> None:  # paho: (client, userdata, flags, reason, props)
            if previous is not None:
                previous(*args)
            flags = args[2] if len(args) > 2 else None
            self.disconnected(args[3] if len(args) > 3 else None,
                              getattr(flags, "is_disconnect_packet_from_server", None))

        client.on_disconnect = on_disconnect

    def disconnected(self, reason: Any, from_server: bool | None = None) -> None:
        """Log a disconnect with its reason code; count and report a session takeover.

        ``from_server``: whether the broker sent a DISCONNECT packet (paho's
        ``DisconnectFlags.is_disconnect_packet_from_server``); ``None`` when unknown."""
        code, name = reason_of(reason)
        why = self._watch.takeover(reason, from_server=from_server)
        now_s = self._clock()
        with self._lock:
            closing = self._closing
            self._subscribed.clear()
            self._all_subscribed.clear()
        if closing and code in (NORMAL_DISCONNECTION, None):
            logger.info("collector %s disconnected from %s", self.client_id, self.broker)
            return
        self.metrics.broker_disconnects.inc()
        if why is None:
            logger.warning("broker %s dropped collector %s: %s (MQTT reason code %s); "
                           "reconnecting", self.broker, self.client_id, name, code)
            return
        self.metrics.session_takeovers.inc()
        with self._lock:
            last_s = self._takeover_logged_s
            if last_s is not None and now_s - last_s < TAKEOVER_LOG_INTERVAL_S:
                self._takeovers_unlogged += 1
                return
            self._takeover_logged_s = now_s
            unlogged, self._takeovers_unlogged = self._takeovers_unlogged, 0
        more = f" ({unlogged} more since the last report)" if unlogged else ""
        logger.error(
            "broker %s dropped collector %s because another client connected with the same "
            "client id (%s)%s: messages may be lost. Give every collector its own client id, "
            "and bind client ids to logins on the broker (deploy/mosquitto)",
            self.broker, self.client_id, why, more)
