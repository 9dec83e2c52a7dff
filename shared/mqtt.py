"""One way to reach the broker, for the agent, the collector and the edgemeter commands alike.

Everything that talks MQTT goes through this module: the collector and ``bench --publish`` through
:func:`connect` (a connected :class:`MqttConnection`), the agent daemon's persistent link
(:mod:`agent.daemon.link`) and ``edgemeter simulate`` through :func:`make_client`, which is the only
place that constructs a ``paho.mqtt.client.Client``. What they share:

- :class:`MqttOptions`, one options model: broker URLs (the first, then the ones to fail over to),
  credentials (``password`` or ``password_file``), TLS files, keepalive, session expiry, client id,
  protocol (``auto``: MQTT v5, falling back to 3.1.1 where the broker refuses v5; the embedded
  amqtt demo broker, for one). Nothing edgemeter sends depends on v5 properties: ids, ``seq`` and
  ``schema_version`` travel in the payload.
- TLS only for ``mqtts://``: TLS files with an ``mqtt://`` URL are refused with the same one-line
  :class:`shared.errors.ConfigError` everywhere (:func:`check_tls`), and unreadable or invalid TLS
  files are a ConfigError at once (:func:`load_tls_files`), never a dead network thread.
- One publish (:func:`publish_checked`): for QoS 1 it waits for the PUBACK and raises
  :class:`shared.errors.PublishRefusedError` for an MQTT v5 reason code of 128 or more (135: not
  authorized, when the broker's ACL refuses the topic), never taking a refusal for success; over
  3.1.1 a broker cannot say so.
- One backoff (:class:`Backoff`): capped exponential with full jitter, so a thousand boards that
  lost one broker do not all come back in the same second.
- The Last Will is (re)registered in paho's ``on_pre_connect``, which paho >= 2 calls before every
  connection attempt: give :func:`make_client` a callable and each attempt gets a fresh Will (the
  daemon's ``bd_seq``).
- Disconnects are logged with their reason code (:class:`DisconnectWatch`); a disconnect because
  another connection took over the same client id (MQTT v5 reason code 142, "Session taken over")
  is logged as an ERROR and counted, and an ``on_takeover`` hook lets the owner count it too.

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

Credentials. A user name and password may be given as arguments (from a settings file, the
environment or a credentials file) or, for compatibility, inside the URL; the arguments win. No
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
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.errors import BrokerError, ConfigError, PublishRefusedError
from shared.redact import redact_url
from shared.topics import ROOT as TOPIC_ROOT

logger = logging.getLogger(__name__)

MqttVersion = Literal["auto", "5", "3.1.1"]
"""Which MQTT version to speak: ``auto`` tries 5, then 3.1.1."""
MessageHandler = Callable[[str, bytes], None]
AckingMessageHandler = Callable[[str, bytes, int, int], None]
"""``(topic, payload, mid, qos)``: pass ``mid`` and ``qos`` to :meth:`MqttConnection.ack`."""

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
V5_PROBE_TIMEOUT_S = 3.0
DEFAULT_KEEPALIVE_S = 30
SESSION_TAKEN_OVER = 142
"""MQTT v5 DISCONNECT reason code: another connection with the same client id took the session."""
REFUSED_FROM = 128
"""MQTT v5 reason codes from 128 up are failures."""
FLUSH_TOPIC = f"{TOPIC_ROOT}/_flush"
"""Never subscribed to: :meth:`MqttConnection.flush` unsubscribes from it for the round trip."""
SubscribeHandler = Callable[[bool, str], None]
"""``(granted, detail)``: called from the network thread when the broker answers a SUBSCRIBE."""
PUBLISH_POLL_S = 0.05


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


# -- the options model ----------------------------------------------------------------------------

class MqttOptions(BaseModel):
    """How to reach the broker; the same model for every client edgemeter runs.

    ``urls``: the broker first, then the ones to fail over to, in order. ``password`` wins over
    ``password_file``; both win over a password inside a URL. ``ca_file``, ``cert_file`` and
    ``key_file`` need ``mqtts://`` URLs. ``session_expiry_s > 0`` with ``clean_start=False`` asks
    for a persistent session (QoS 1 messages sent while the client is away wait for it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(default_factory=list)
    client_id: str = ""
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(DEFAULT_KEEPALIVE_S, ge=1, le=65_535)
    session_expiry_s: int = Field(0, ge=0)
    clean_start: bool = True
    protocol: MqttVersion = "auto"
    backoff_min_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)

    @field_validator("urls")
    @classmethod
    def _urls_parse(cls, value: list[str]) -> list[str]:
        for url in value:
            parse_broker_url(url)
        return value

    @model_validator(mode="after")
    def _tls_consistent(self) -> MqttOptions:
        files = self.tls_files()
        for url in self.urls:
            check_tls(parse_broker_url(url), files)
        return self

    def broker_urls(self) -> list[BrokerUrl]:
        return [parse_broker_url(u) for u in self.urls]

    def tls_files(self) -> TlsFiles:
        return TlsFiles(self.ca_file, self.cert_file, self.key_file)

    def resolved_password(self) -> str | None:
        """``password``, else the first line of ``password_file`` (empty: none); ConfigError when
        the file cannot be read."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip() or None
        except OSError as err:
            raise ConfigError(f"cannot read the broker password_file {self.password_file}: "
                              f"{err.strerror or err}") from err


def check_tls(url: BrokerUrl, files: TlsFiles) -> None:
    """TLS is for ``mqtts://`` URLs only: TLS files with an ``mqtt://`` URL are a ConfigError."""
    if files and not url.tls:
        raise ConfigError(f"TLS files are set but the broker URL {url} is not TLS: "
                          "use mqtts://HOST:PORT")
    if files.key_file and not files.cert_file:
        raise ConfigError("a TLS key_file needs its cert_file (the client certificate)")


def load_tls_files(url: BrokerUrl, files: TlsFiles) -> ssl.SSLContext:
    """An SSL context from ``files``; a ConfigError naming the setting when one is unusable."""
    check_tls(url, files)
    try:
        context = ssl.create_default_context(
            cafile=str(files.ca_file) if files.ca_file else None)
        if files.cert_file:
            context.load_cert_chain(str(files.cert_file),
                                    str(files.key_file) if files.key_file else None)
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"cannot set up TLS for the broker at {url}: {getattr(err, 'strerror', None) or err}; "
            "check the ca_file, cert_file and key_file settings"
        ) from err
    return context


# -- backoff --------------------------------------------------------------------------------------

def backoff_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter: uniform in [min_s, min(max_s, min_s·2^n)]."""
    ceiling = min(max_s, min_s * (2 ** min(attempt, 30)))
    return rng.uniform(min_s, max(ceiling, min_s))


@dataclass
class Backoff:
    """Successive waits of :func:`backoff_s`; :meth:`reset` after a success."""

    min_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_s(self) -> float:
        delay = backoff_s(self.attempt, self.min_s, self.max_s, self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


# -- disconnects ----------------------------------------------------------------------------------

SHORT_LIVED_S = 5.0
SHORT_DROPS_TAKEOVER = 2
"""A broker that gives no reason (Mosquitto before 2.0.15 just closes the old connection) is taken
to report a takeover when it closes this many connections in a row, each within
:data:`SHORT_LIVED_S` of its CONNACK and without a DISCONNECT packet: two clients with one id
knock each other off about once a second, while a network failure or a broker restart drops one
established connection."""


class DisconnectWatch:
    """Logs every disconnect with its reason code and counts them; a session taken over by another
    connection with the same client id is an ERROR, counted in ``takeovers`` and passed to
    ``on_takeover``. A takeover is reason code 142, or, from a broker that says nothing, a run of
    :data:`SHORT_DROPS_TAKEOVER` drops each soon after connecting (:meth:`takeover`).

    ``quiet``: count but do not log (an owner that logs disconnects itself, as the collector's
    intake does, sets it once, right after connecting; the network thread only reads it, and a
    disconnect in between is at worst logged twice). Ownership: the lock guards the counters and
    the run of short drops; the network thread calls :meth:`connected` and :meth:`seen`, anyone
    reads the counters. ``clock`` is injectable for tests."""

    def __init__(self, on_takeover: Callable[[], None] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.on_takeover = on_takeover
        self.disconnects = 0
        self.takeovers = 0
        self.quiet = False
        self._clock = clock
        self._lock = threading.Lock()
        self._connected_at_s: float | None = None
        self._short_drops = 0  # drops in a row, each soon after connecting, without a reason

    def connected(self) -> None:
        """Note a CONNACK: a drop soon after it may be a takeover."""
        with self._lock:
            self._connected_at_s = self._clock()

    def takeover(self, reason: Any, *, from_server: bool | None = None) -> str | None:
        """Why this disconnect counts as a session takeover, or ``None``. Call it once per
        disconnect: it keeps the run of short drops. ``from_server``: the broker sent a
        DISCONNECT packet (paho's ``is_disconnect_packet_from_server``; ``None`` when unknown)."""
        code = reason_code(reason)
        now_s = self._clock()
        with self._lock:
            since = self._connected_at_s
            self._connected_at_s = None
            short = from_server is not True and since is not None and now_s - since < SHORT_LIVED_S
            self._short_drops = self._short_drops + 1 if short else 0
            drops = self._short_drops
        if code == SESSION_TAKEN_OVER:
            return f"MQTT reason code {SESSION_TAKEN_OVER}, {reason}"
        if drops >= SHORT_DROPS_TAKEOVER:
            return (f"the broker closed it without a reason {drops} times in a row, each within "
                    f"{SHORT_LIVED_S:.0f} s of connecting (MQTT reason code {code}, {reason}), as "
                    "Mosquitto before 2.0.15 does on a takeover")
        return None

    def seen(self, url: BrokerUrl | str, reason: Any, *, expected: bool = False,
             from_server: bool | None = None) -> None:
        why = self.takeover(reason, from_server=from_server)
        with self._lock:
            self.disconnects += 1
            if why is not None:
                self.takeovers += 1
        if why is not None:
            if not self.quiet:
                logger.error("broker %s disconnected this client: session taken over (%s): "
                             "another connection uses the same client id", url, why)
            if self.on_takeover is not None:
                try:
                    self.on_takeover()
                except Exception:  # a hook bug must never kill the network thread
                    logger.exception("the takeover hook failed")
        elif self.quiet:
            return
        elif not expected:
            logger.warning("disconnected from %s: %s (reason code %s)", url, reason,
                           reason_code(reason))
        else:
            logger.debug("disconnected from %s: %s", url, reason)


def reason_code(reason: Any) -> int | None:
    """The numeric value of a paho ReasonCode (or an int); ``None`` when there is none."""
    if reason is None:
        return None
    value = getattr(reason, "value", reason)
    return value if isinstance(value, int) else None


# -- the one client builder, the one publish -----------------------------------------------------

class PublishTracker:
    """paho's ``on_publish``: keeps the failing PUBACK reason codes by message id, for
    :func:`publish_checked`. Installed by :func:`make_client`; thread-safe."""

    MAX_KEPT = 10_000

    def __init__(self, url: BrokerUrl | str) -> None:
        self.url = url
        self._refused: dict[int, Any] = {}
        self._lock = threading.Lock()

    def on_publish(self, _client: Any, _userdata: Any, mid: int, reason: Any = None,
                   _props: Any = None) -> None:
        code = reason_code(reason)
        if code is not None and code >= REFUSED_FROM:
            with self._lock:
                if len(self._refused) >= self.MAX_KEPT:
                    self._refused.pop(next(iter(self._refused)))
                self._refused[mid] = reason

    def refusal(self, mid: int) -> Any:
        with self._lock:
            return self._refused.pop(mid, None)


@dataclass
class Built:
    """What :func:`make_client` returns: the paho client and its publish tracker."""

    client: Any
    tracker: PublishTracker


def make_client(
    url: BrokerUrl,
    client_id: str,
    version: str,
    *,
    clean_start: bool = True,
    username: str | None = None,
    password: str | None = None,
    tls_files: TlsFiles = TlsFiles(),
    manual_ack: bool = False,
    will: Will | Callable[[], Will] | None = None,
) -> Built:
    """The one place that constructs a ``paho.mqtt.client.Client``.

    ``version`` is ``5`` or ``3.1.1``. TLS is set for ``mqtts://`` URLs only (ConfigError for TLS
    files with ``mqtt://``, or files that do not load). ``will`` (a :class:`Will`, or a callable
    returning one) is registered in ``on_pre_connect``, before every connection attempt: paho's
    own reconnects included. A callable that raises keeps the previous Will (logged as an error).
    ``username``/``password`` default to the URL's. The client's ``on_publish`` is the returned
    tracker's: use :func:`publish_checked` to publish.
    """
    import paho.mqtt.client as mqtt

    check_tls(url, tls_files)
    context = load_tls_files(url, tls_files) if url.tls else None
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
    user = username if username is not None else url.username
    secret = password if password is not None else url.password
    if user:
        client.username_pw_set(user, secret)
    if context is not None:
        client.tls_set_context(context)
    if will is not None:
        def _pre_connect(c: Any, _userdata: Any) -> None:
            try:
                current = will() if callable(will) else will
            except Exception:  # never a dead network thread: the previous Will stays
                logger.exception("cannot build the Last Will for %s; the previous one stays", url)
                return
            c.will_clear()
            c.will_set(current.topic, current.payload, qos=current.qos, retain=current.retain)

        client.on_pre_connect = _pre_connect
    tracker = PublishTracker(url)
    client.on_publish = tracker.on_publish
    return Built(client, tracker)


def connect_properties(version: str, *, session_expiry_s: int = 0,
                       receive_maximum: int | None = None) -> Any:
    """The CONNECT properties for MQTT v5 (``None`` for 3.1.1 or when none are needed: a v3-only
    broker answers a bare v5 CONNECT with "unsupported protocol version" at once, but amqtt never
    answers one that carries properties)."""
    if version != "5" or (session_expiry_s <= 0 and receive_maximum is None):
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    if session_expiry_s > 0:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def publish_checked(
    built: Built,
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    retain: bool = False,
    timeout_s: float = 10.0,
    wait: bool = True,
    connected: Callable[[], bool] | None = None,
) -> None:
    """The one publish: queue it and, for QoS >= 1 with ``wait``, wait for the PUBACK.

    Raises :class:`BrokerError` when paho refuses to queue it, when ``connected()`` turns false
    before the PUBACK (the connection was lost), or when no PUBACK comes within ``timeout_s``; and
    :class:`PublishRefusedError` when the PUBACK carries a reason code of 128 or more.
    ``wait=False`` only queues (safe from any thread, never blocks): paho sends it, and on a
    persistent session sends a QoS 1 message again after a reconnect.
    """
    client, url = built.client, built.tracker.url
    info = client.publish(topic, payload, qos=qos, retain=retain)
    if not wait or qos == 0:
        if info.rc not in (0, 4):  # 4: not connected now; queued for the next connection
            raise BrokerError(f"could not queue a publish on {topic} to {url} (code {info.rc})")
        return
    deadline = time.monotonic() + timeout_s
    try:
        while not info.is_published():
            if connected is not None and not connected():
                raise BrokerError(f"the connection to {url} was lost before the broker "
                                  f"acknowledged a publish on {topic}")
            if time.monotonic() > deadline:
                raise BrokerError(f"broker {url} did not acknowledge a publish on {topic} within "
                                  f"{timeout_s:.0f} s; check that it is running and reachable")
            info.wait_for_publish(timeout=PUBLISH_POLL_S)
    except (RuntimeError, ValueError) as err:
        raise BrokerError(f"broker {url} refused the publish on {topic}: {err}") from err
    refusal = built.tracker.refusal(info.mid)
    if refusal is not None:
        code = reason_code(refusal) or REFUSED_FROM
        raise PublishRefusedError(
            f"broker {url} refused the publish on {topic}: {refusal} (reason code {code}); "
            "check this client's credentials and the broker's ACL", code)


# -- a connected client with paho's own network thread ------------------------------------------

class MqttConnection:
    """A connected paho client running its network loop in a background thread."""

    def __init__(self, client: Any, protocol: str, url: BrokerUrl,
                 tracker: PublishTracker | None = None,
                 disconnects: DisconnectWatch | None = None) -> None:
        self.client = client
        self.protocol = protocol
        self.url = url
        self.built = Built(client, tracker or PublishTracker(url))
        self.disconnects = disconnects or DisconnectWatch()
        """Disconnects seen since connecting (``.takeovers``: sessions taken over)."""
        self.shared_subscriptions = protocol == "5"
        """Whether ``$share/`` subscriptions work: MQTT v5, unless the CONNACK said Shared
        Subscription Available = 0 (updated on every reconnection)."""
        self.closing = False
        self._lock = threading.Lock()
        self._on_subscribed: dict[int, SubscribeHandler] = {}
        self._unsubscribed: dict[int, threading.Event] = {}
        client.on_subscribe = self._handle_suback
        client.on_unsubscribe = self._handle_unsuback

    @property
    def takeovers(self) -> int:
        """How often another connection with this client id took the session over."""
        return self.disconnects.takeovers

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0, *,
                retain: bool = False, wait: bool = True) -> None:
        """Publish and, for QoS >= 1, wait until the broker acknowledges (PUBACK).

        Raises :class:`PublishRefusedError` for an MQTT v5 refusal (reason code >= 128) and
        :class:`BrokerError` when there is no PUBACK. ``wait=False`` only queues the message
        (safe from any thread, never blocks): see :func:`publish_checked`.
        """
        publish_checked(self.built, topic, payload, qos=qos, retain=retain, timeout_s=timeout_s,
                        wait=wait)

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
        self.closing = True  # the DISCONNECT that follows is ours, not a loss
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
    on_takeover: Callable[[], None] | None = None,
) -> tuple[MqttConnection | None, str]:
    built = make_client(url, client_id, version, clean_start=clean_start, username=url.username,
                        password=url.password, tls_files=tls_files, manual_ack=manual_ack,
                        will=will)
    client = built.client
    v5 = version == "5"
    connected = threading.Event()
    outcome: dict[str, Any] = {}
    conn = MqttConnection(client, version, url, built.tracker, DisconnectWatch(on_takeover))

    def _on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, connack: Any = None) -> None:
        outcome["reason"] = reason
        if v5 and connack is not None:  # an absent property means available
            conn.shared_subscriptions = bool(getattr(connack, "SharedSubscriptionAvailable", 1))
        if not reason.is_failure:
            if "up" in outcome:
                logger.info("reconnected to %s", url)
            outcome["up"] = True
            conn.disconnects.connected()
            if on_connect is not None:
                on_connect(conn)
        connected.set()

    def _on_disconnect(_c: Any, _u: Any, flags: Any, reason: Any, _props: Any = None) -> None:
        outcome.setdefault("disconnect", reason)
        if "up" in outcome:  # a connection that was up: paho reconnects by itself
            conn.disconnects.seen(url, reason, expected=conn.closing,
                                  from_server=getattr(flags, "is_disconnect_packet_from_server",
                                                      None))
        connected.set()

    def _on_message(_c: Any, _u: Any, msg: Any) -> None:
        try:
            if on_message_ack is not None:
                on_message_ack(msg.topic, msg.payload, msg.mid, msg.qos)
            elif on_message is not None:
                on_message(msg.topic, msg.payload)
        except Exception:  # a handler bug must never kill the network thread
            logger.exception("message handler failed on %s", msg.topic)

    def _on_connect_fail(_c: Any, _u: Any) -> None:
        # the broker closed the socket before any CONNACK (amqtt does this for MQTT v5)
        outcome.setdefault("disconnect", "connection closed before CONNACK")
        connected.set()

    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect
    client.on_connect_fail = _on_connect_fail
    client.on_message = _on_message
    props = connect_properties(version, session_expiry_s=session_expiry_s,
                               receive_maximum=receive_maximum)
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
    on_takeover: Callable[[], None] | None = None,
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
    this client acknowledges some; ``will`` registers a Last Will (module docstring);
    ``on_takeover`` is called (on the network thread) when another connection with the same client
    id takes the session over (also counted in :attr:`MqttConnection.takeovers`).
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
    check_tls(broker, tls_files)
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
            on_takeover=on_takeover,
        )
        if conn is not None:
            logger.info("connected to %s with MQTT %s", broker, version)
            return conn
        errors.append(f"MQTT {version}: {why}")
        logger.info("MQTT %s connection to %s failed: %s", version, broker, why)
    raise BrokerError(f"broker {broker} refused the connection ({'; '.join(errors)})")


def connect_with(options: MqttOptions, **callbacks: Any) -> MqttConnection:
    """:func:`connect` with an :class:`MqttOptions` (its first URL); ``callbacks`` are
    :func:`connect`'s keyword arguments (``on_message``, ``on_connect``, ``will``, ...)."""
    if not options.urls:
        raise ConfigError("no broker URL configured")
    files = options.tls_files()
    password = options.resolved_password()
    return connect(
        options.urls[0], options.client_id, protocol=options.protocol,
        clean_start=options.clean_start, session_expiry_s=options.session_expiry_s,
        username=options.username, password=password, ca_file=files.ca_file,
        cert_file=files.cert_file, key_file=files.key_file, keepalive_s=options.keepalive_s,
        **callbacks)
