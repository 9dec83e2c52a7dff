"""The daemon's connection: persistent, failing over across brokers, a fresh Last Will each time.

:class:`Link` runs one network thread of its own. Before each attempt it connects to the next
broker of its list (fail-over); the client comes from :func:`shared.mqtt.make_client`, which
registers the Will in ``on_pre_connect`` by calling ``will()`` (the daemon increments ``bd_seq``
there). After a loss it waits a capped exponential backoff with full jitter
(:class:`shared.mqtt.Backoff`). MQTT v5 first, 3.1.1 when the broker refuses v5.

Callbacks (``on_connect``, ``on_message``) run on one dispatcher thread of their own, in arrival
order, never on the network thread: a handler that publishes and waits for the PUBACK would
otherwise wait for a packet only the blocked network thread can read. The daemon's handlers only
put an event on its own queue (:mod:`agent.daemon.service`).

Sessions are persistent (MQTT v5 session expiry, or a 3.1.1 clean-session=false), so receipts
and commands sent while a board is away reach it when it returns. Publishing goes through
:func:`shared.mqtt.publish_checked`: a PUBACK reason code of 128 or more raises
:class:`shared.errors.PublishRefusedError`, and a connection lost before the PUBACK raises
:class:`shared.errors.BrokerError` at once instead of waiting for the timeout.

Errors never end the network thread silently: unusable TLS files are a
:class:`shared.errors.ConfigError` from :meth:`Link.start` (checked once up front), and anything
that fails later (a Will that cannot be built, a file gone) is logged as an error, kept in
:attr:`Link.last_error`, and retried after the backoff. Disconnects are logged with their reason
code; a session taken over by another connection with the same client id is an ERROR, counted in
:attr:`Link.takeovers` and passed to ``on_takeover``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections.abc import Callable
from typing import Any

from pydantic import Field, model_validator

from shared.errors import BrokerError, ConfigError
from shared.mqtt import (
    Backoff,
    BrokerUrl,
    Built,
    DisconnectWatch,
    MqttOptions,
    TlsFiles,
    Will,
    check_tls,
    connect_properties,
    load_tls_files,
    make_client,
    publish_checked,
)

logger = logging.getLogger(__name__)

SEVEN_DAYS_S = 7 * 24 * 3600


class LinkOptions(MqttOptions):
    """:class:`shared.mqtt.MqttOptions` with the daemon's defaults: a persistent session (seven
    days), and the broker URLs given to :class:`Link` itself. ``tls`` is the TLS files as one
    value (the same as ``ca_file``/``cert_file``/``key_file``)."""

    session_expiry_s: int = Field(SEVEN_DAYS_S, ge=0)
    clean_start: bool = False
    tls: TlsFiles = Field(default_factory=TlsFiles)

    @model_validator(mode="after")
    def _one_tls(self) -> LinkOptions:
        if self.tls and not self.tls_files():
            object.__setattr__(self, "ca_file", self.tls.ca_file)
            object.__setattr__(self, "cert_file", self.tls.cert_file)
            object.__setattr__(self, "key_file", self.tls.key_file)
        return self


class Link:
    """A persistent MQTT connection for the daemon. Thread-safe publish and subscribe."""

    def __init__(
        self,
        urls: list[BrokerUrl],
        options: MqttOptions,
        *,
        will: Callable[[], tuple[str, bytes]],
        on_connect: Callable[[Link], None],
        on_message: Callable[[str, bytes], None],
        rng: random.Random | None = None,
        on_takeover: Callable[[], None] | None = None,
    ) -> None:
        if not urls:
            raise BrokerError("no broker URL configured: set [mqtt] url")
        self.urls = urls
        self.options = options
        self._will = will
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._backoff = Backoff(options.backoff_min_s, options.backoff_max_s, rng or random.Random())
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._inbox: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._built: Built | None = None
        self._subscriptions: dict[str, int] = {}
        self._subscriptions_lock = threading.Lock()
        self.watch = DisconnectWatch(on_takeover)
        self.url: BrokerUrl | None = None
        self.version: str | None = None
        self.connects = 0
        self._password: str | None = None
        self.last_error: str | None = None
        """The last error that kept the link from connecting (``None`` once connected)."""

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def takeovers(self) -> int:
        """How often another connection with this client id took the session over."""
        return self.watch.takeovers

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def start(self) -> None:
        """Check the TLS files (ConfigError now, not a dead thread later), then connect."""
        files = self.options.tls_files()
        for url in self.urls:
            check_tls(url, files)
            if url.tls:
                load_tls_files(url, files)
        self._password = self.options.resolved_password()
        self._thread = threading.Thread(target=self._run, name="edgemeter-link", daemon=True)
        self._thread.start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="edgemeter-link-events",
                                            daemon=True)
        self._dispatcher.start()

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0,
                retain: bool = False) -> None:
        """Publish; for QoS 1 wait for the PUBACK and raise BrokerError on a refusal or a loss."""
        built = self._built
        if built is None or not self.connected:
            raise BrokerError("not connected to the broker; the message waits for the next connection")
        publish_checked(built, topic, payload, qos=qos, retain=retain, timeout_s=timeout_s,
                        connected=lambda: self.connected and self._built is built)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now and again after every reconnect."""
        with self._subscriptions_lock:
            self._subscriptions[topic] = qos
        built = self._built
        if built is not None and self.connected:
            built.client.subscribe(topic, qos=qos)

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 5.0) -> None:
        """Publish ``last`` (retained, QoS 1: the graceful death), then disconnect cleanly."""
        if last is not None and self.connected:
            try:
                self.publish(last[0], last[1], qos=1, retain=True, timeout_s=timeout_s)
            except BrokerError as err:
                logger.warning("the last status was not sent: %s", err)
        self._stop.set()
        built = self._built
        if built is not None:
            with contextlib.suppress(Exception):
                built.client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._inbox.put(None)
        if self._dispatcher is not None and self._dispatcher is not threading.current_thread():
            self._dispatcher.join(timeout_s)

    # -- the network thread ---------------------------------------------------------------------

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            url = self.urls[index % len(self.urls)]
            try:
                ok = self._session(url)
            except ConfigError as err:
                ok = False
                self._error(str(err))
            except Exception as err:  # never a silent dead thread: log it and try again
                ok = False
                logger.exception("the broker link failed on %s", url)
                self.last_error = str(err)
            if self._stop.is_set():
                break
            if ok:
                self._backoff.reset()
            index += 1
            delay = self._backoff.next_s()
            logger.info("broker connection lost; reconnecting in %.1f s", delay)
            self._stop.wait(delay)

    def _error(self, text: str) -> None:
        if text != self.last_error:
            logger.error("cannot connect to the broker: %s", text)
        self.last_error = text

    def _session(self, url: BrokerUrl) -> bool:
        """One connection: connect, loop until it drops. True when it had connected."""
        versions = ["5", "3.1.1"] if self.options.protocol == "auto" else [self.options.protocol]
        for version in versions:
            built = make_client(
                url, self.options.client_id, version, clean_start=self.options.clean_start,
                username=self.options.username, password=self._password,
                tls_files=self.options.tls_files(), will=self._current_will)
            client = built.client
            client.on_connect = self._handle_connect
            client.on_disconnect = self._handle_disconnect
            client.on_message = self._handle_message
            client.user_data_set({"state": "connecting", "version": version, "url": url})
            try:
                self._connect(built, url, version)
            except OSError as err:
                logger.warning("cannot reach the broker at %s: %s", url, err.strerror or err)
                return False
            outcome = self._loop(client)
            if outcome == "refused-version" and version == "5":
                continue
            return outcome == "was-connected"
        return False

    def _current_will(self) -> Will:
        topic, payload = self._will()
        return Will(topic, payload, qos=1, retain=True)

    def _connect(self, built: Built, url: BrokerUrl, version: str) -> None:
        props = connect_properties(version, session_expiry_s=self.options.session_expiry_s)
        if version == "5":
            built.client.connect(url.host, url.port, keepalive=self.options.keepalive_s,
                                 clean_start=self.options.clean_start, properties=props)
        else:
            built.client.connect(url.host, url.port, keepalive=self.options.keepalive_s)
        self._built = built
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
        if was and state["state"] != "lost":  # the socket died without a DISCONNECT callback
            self.watch.seen(state["url"], f"network error (code {rc})", expected=self._stop.is_set())
        self._connected.clear()
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop(timeout=0.1)
        if state["state"] == "refused-version":
            return "refused-version"
        return "was-connected" if was else "failed"

    # -- paho callbacks (on the network thread: they only record and enqueue) -------------------

    def _handle_connect(self, client: Any, state: dict[str, Any], _flags: Any, reason: Any,
                        _props: Any = None) -> None:
        if reason.is_failure:
            text = str(reason)
            state["state"] = "refused-version" if "protocol version" in text.lower() else "refused"
            if state["state"] == "refused":
                self._error(f"broker {state['url']} refused the connection: {text}")
            return
        state["state"] = "connected"
        state["connected_once"] = True
        self.connects += 1
        self.watch.connected()
        self.last_error = None
        self._connected.set()
        logger.info("connected to %s with MQTT %s", state["url"], state["version"])
        with self._subscriptions_lock:
            wanted = list(self._subscriptions.items())
        for topic, qos in wanted:
            client.subscribe(topic, qos=qos)
        self._inbox.put(("connect", None))

    def _handle_disconnect(self, _client: Any, state: dict[str, Any], flags: Any, reason: Any,
                           _props: Any = None) -> None:
        if state.get("state") == "connected":
            state["state"] = "lost"
            self.watch.seen(state["url"], reason, expected=self._stop.is_set(),
                            from_server=getattr(flags, "is_disconnect_packet_from_server", None))
        self._connected.clear()

    def _handle_message(self, _client: Any, _state: Any, msg: Any) -> None:
        self._inbox.put(("message", (msg.topic, msg.payload)))

    # -- the dispatcher thread ------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            kind, data = item
            try:
                if kind == "connect":
                    self._on_connect_cb(self)
                else:
                    self._on_message_cb(*data)
            except BrokerError as err:
                logger.warning("after %s: %s", kind, err)
            except Exception:  # a handler bug must never kill the dispatcher
                logger.exception("the %s handler failed", kind)
