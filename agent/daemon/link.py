"""The daemon's connection: persistent, re-registering its Last Will on every connect.

paho's own reconnect re-sends the CONNECT it was first given, so the Last Will would keep the
first ``bd_seq`` forever. :class:`Link` runs its own connect loop in a thread instead: before each
attempt it asks ``will()`` for the current Last Will (the daemon increments ``bd_seq`` there),
connects to the next broker of its list (fail-over), calls ``on_connect`` (birth, subscriptions),
and after a loss waits a capped exponential backoff with full jitter, so a thousand boards that
lost one broker do not all come back in the same second.

Message handlers run on a dispatcher thread of their own, in arrival order, never on the network
thread: a handler that publishes and waits for the PUBACK (a job's ack) would otherwise wait for a
packet only the blocked network thread can read, and the broker would drop the connection.

Sessions are persistent (MQTT v5 session expiry, or a 3.1.1 clean-session=false), so receipts
and commands sent while a board is away reach it when it returns. With MQTT v5 a PUBACK reason
code of 128 or more (135: not authorized, when the broker's ACL refuses the topic) is raised as
:class:`shared.errors.BrokerError`, never taken for success; over 3.1.1 a broker cannot say so.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BrokerError
from shared.mqtt import BrokerUrl, TlsFiles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkOptions:
    client_id: str
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    session_expiry_s: int = 7 * 24 * 3600
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    protocol: str = "auto"
    """``auto`` (v5, falling back to 3.1.1 when the broker refuses v5), ``5`` or ``3.1.1``"""


def backoff_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter: uniform in [min_s, min(max_s, min_s·2^n)]."""
    ceiling = min(max_s, min_s * (2 ** min(attempt, 30)))
    return rng.uniform(min_s, max(ceiling, min_s))


class Link:
    """A persistent MQTT connection for the daemon. Thread-safe publish and subscribe."""

    def __init__(
        self,
        urls: list[BrokerUrl],
        options: LinkOptions,
        *,
        will: Callable[[], tuple[str, bytes]],
        on_connect: Callable[[Link], None],
        on_message: Callable[[str, bytes], None],
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise BrokerError("no broker URL configured: set [mqtt] url")
        self.urls = urls
        self.options = options
        self._will = will
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._inbox: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._client: Any = None
        self._reasons: dict[int, Any] = {}
        self._reasons_lock = threading.Lock()
        self._subscriptions: dict[str, int] = {}
        self.url: BrokerUrl | None = None
        self.version: str | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgemeter-link", daemon=True)
        self._thread.start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="edgemeter-link-messages",
                                            daemon=True)
        self._dispatcher.start()

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0,
                retain: bool = False) -> None:
        """Publish; for QoS 1 wait for the PUBACK and raise BrokerError on a refusal."""
        client = self._client
        if client is None or not self.connected:
            raise BrokerError("not connected to the broker; the message waits for the next connection")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as err:
            raise BrokerError(f"broker {self.url} refused the publish on {topic}: {err}") from err
        if not info.is_published():
            raise BrokerError(f"broker {self.url} did not acknowledge a publish on {topic} "
                              f"within {timeout_s:.0f} s")
        with self._reasons_lock:
            reason = self._reasons.pop(info.mid, None)
        if reason is not None and getattr(reason, "is_failure", False):
            raise BrokerError(
                f"broker {self.url} refused the publish on {topic}: {reason} "
                f"(reason code {reason.value}); check this device's credentials and the ACL"
            )

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now and again after every reconnect."""
        self._subscriptions[topic] = qos
        client = self._client
        if client is not None and self.connected:
            client.subscribe(topic, qos=qos)

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 5.0) -> None:
        """Publish ``last`` (retained, QoS 1: the graceful death), then disconnect cleanly."""
        self._stop.set()
        client = self._client
        if client is not None and self.connected and last is not None:
            with contextlib.suppress(BrokerError):
                self.publish(last[0], last[1], qos=1, retain=True, timeout_s=timeout_s)
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._inbox.put(None)
        if self._dispatcher is not None:
            self._dispatcher.join(timeout_s)

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        index = 0
        while not self._stop.is_set():
            url = self.urls[index % len(self.urls)]
            ok = self._session(url)
            if self._stop.is_set():
                break
            attempt = 0 if ok else attempt + 1
            index += 1
            delay = backoff_s(attempt, self.options.backoff_min_s, self.options.backoff_max_s,
                              self._rng)
            logger.info("broker connection lost; reconnecting in %.1f s", delay)
            self._stop.wait(delay)

    def _session(self, url: BrokerUrl) -> bool:
        """One connection: connect, loop until it drops. True when it had connected."""
        versions = ["5", "3.1.1"] if self.options.protocol == "auto" else [self.options.protocol]
        for version in versions:
            client = self._make_client(url, version)
            try:
                self._connect(client, url, version)
            except OSError as err:
                logger.warning("cannot reach the broker at %s: %s", url, err.strerror or err)
                return False
            outcome = self._loop(client)
            if outcome == "refused-version" and version == "5":
                continue
            return outcome == "was-connected"
        return False

    def _make_client(self, url: BrokerUrl, version: str) -> Any:
        import paho.mqtt.client as mqtt

        v5 = version == "5"
        kwargs: dict[str, Any] = {
            "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
            "client_id": self.options.client_id,
            "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        }
        if not v5:
            kwargs["clean_session"] = False
        client = mqtt.Client(**kwargs)
        username = self.options.username or url.username
        password = self.options.password or url.password
        if username:
            client.username_pw_set(username, password)
        tls = self.options.tls
        if url.tls or tls:
            client.tls_set(ca_certs=_text(tls.ca_file), certfile=_text(tls.cert_file),
                           keyfile=_text(tls.key_file))
        topic, payload = self._will()
        client.will_set(topic, payload, qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.user_data_set({"state": "connecting", "version": version, "url": url})
        return client

    def _connect(self, client: Any, url: BrokerUrl, version: str) -> None:
        if version == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.options.session_expiry_s
            client.connect(url.host, url.port, keepalive=self.options.keepalive_s,
                           clean_start=False, properties=props)
        else:
            client.connect(url.host, url.port, keepalive=self.options.keepalive_s)
        self._client = client
        self.url = url
        self.version = version

    def _loop(self, client: Any) -> str:
        import paho.mqtt.client as mqtt

        state = client.user_data_get()
        while not self._stop.is_set():
            rc = client.loop(timeout=0.5)
            if rc != mqtt.MQTT_ERR_SUCCESS or state["state"] in ("lost", "refused", "refused-version"):
                break
        was = state.get("connected_once", False)
        self._connected.clear()
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop(timeout=0.1)
        if state["state"] == "refused-version":
            return "refused-version"
        return "was-connected" if was else "failed"

    # -- paho callbacks (on the loop thread) ----------------------------------------------------

    def _handle_connect(self, client: Any, state: dict[str, Any], _flags: Any, reason: Any,
                        _props: Any = None) -> None:
        if reason.is_failure:
            text = str(reason)
            state["state"] = "refused-version" if "protocol version" in text.lower() else "refused"
            logger.warning("broker %s refused the connection: %s", state["url"], text)
            return
        state["state"] = "connected"
        state["connected_once"] = True
        self.connects += 1
        self._connected.set()
        logger.info("connected to %s with MQTT %s", state["url"], state["version"])
        for topic, qos in self._subscriptions.items():
            client.subscribe(topic, qos=qos)
        # the callback publishes (birth) and waits for acks: run it off the loop thread
        threading.Thread(target=self._safe_on_connect, name="edgemeter-birth", daemon=True).start()

    def _safe_on_connect(self) -> None:
        try:
            self._on_connect_cb(self)
        except BrokerError as err:
            logger.warning("after connecting: %s", err)
        except Exception:
            logger.exception("the on-connect handler failed")

    def _handle_disconnect(self, _client: Any, state: dict[str, Any], _flags: Any, reason: Any,
                           _props: Any = None) -> None:
        if state.get("state") == "connected":
            state["state"] = "lost"
        self._connected.clear()

    def _handle_message(self, _client: Any, _state: Any, msg: Any) -> None:
        # Handlers publish and wait for PUBACKs (a job's ack), which only this network thread
        # reads: they run on the dispatcher thread, in arrival order, never here.
        self._inbox.put((msg.topic, msg.payload))

    def _dispatch(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            self._deliver(*item)

    def _deliver(self, topic: str, payload: bytes) -> None:
        try:
            self._on_message_cb(topic, payload)
        except Exception:  # a handler bug must never kill the dispatcher
            logger.exception("message handler failed on %s", topic)

    def _handle_publish(self, _client: Any, _state: Any, mid: int, reason: Any = None,
                        _props: Any = None) -> None:
        if reason is not None and getattr(reason, "is_failure", False):
            with self._reasons_lock:
                self._reasons[mid] = reason


def _text(path: object) -> str | None:
    return None if path is None else str(path)
