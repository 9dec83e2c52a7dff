"""The collector service: MQTT in; results, presence, telemetry, job acks and dead letters out to a
store; receipts back to the agents.

Data path::

    paho network thread: on_message ─▶ queue ─▶ writer thread: read() (parse + validate once)
        ▲      progress ─▶ event bus (never stored)                             │ one batch:
        │                                                                       ▼ results in one
        └──── PUBACK ◀── receipt per (fleet, device) ◀── commit ◀── store ◀─────┘ transaction, then
                                                                                  status/telemetry/
                                                                                  acks/dead letters

Subscriptions: ``result``, ``status``, ``telemetry``, ``progress``, ``ack`` and ``monitor`` of
``fleet`` (``+`` for every fleet), on one persistent session (``clean_start=False``, session expiry one day by
default, a stable client id, ``edgemeter-collector-<hostname>`` by default), made in
``on_connect`` so they survive reconnects. With ``group`` and an MQTT v5 broker they are shared
subscriptions (``$share/<group>/...``): several collectors split the streams. On a 3.1.1 broker,
or a v5 one whose CONNACK says Shared Subscription Available = 0, the group is ignored with one
warning and every collector gets everything (run_ids are unique in the store, so that is only
wasteful).

The network thread only sorts and queues messages, so it keeps reading and sending PUBACKs; the
writer thread parses (:func:`collector.ingest.read`, one ``model_validate_json`` per message) and
stores. A batch is whatever is queued when the writer is free, up to ``batch_size``: no waiting to
fill it, so at a low rate each message is stored at once, and under load batches grow by
themselves (the queue fills while the writer works), which spreads each commit over more results.

What happens to each kind:

* ``result``: stored (each run_id once) with the payload text as received. After the commit, one
  :class:`shared.messages.Receipt` per (fleet, device_id) names every run_id of the batch now in the
  store, duplicates included (a re-sent result must be receipted, or the agent keeps re-sending
  it), on ``edgemeter/v1/<fleet>/<device>/receipt`` (QoS 1); then the messages are acknowledged.
* ``monitor``: monitor windows (:mod:`shared.monitoring`), stored once per ``window_id`` in one
  transaction per batch, then receipted like results (their window_ids among ``run_ids``) and
  acknowledged (:mod:`collector.windows`).
* ``telemetry``: every message of a batch in one transaction (``record_telemetry_batch``, which
  also keeps the telemetry history; a store without it gets ``record_telemetry`` per message).
* ``status`` (retained, so the broker re-sends every device's on each restart: harmless, as the
  store keeps the winner by :func:`shared.presence.status_wins`) and ``ack``: written through the
  store's ``record_status`` and ``record_ack``.
* ``progress``: relayed to the event bus only; an invalid one is counted and dropped.
* Anything that can never be stored (not JSON, not the schema, impossible values, topic and
  payload disagree: :mod:`collector.ingest`) is a dead letter. A valid message never is.
* Every kind is published on the :class:`collector.events.EventBus` (``result`` as a summary).
* Status messages of collectors (fleet ``_collector``, :mod:`collector.health`) are ignored.

Delivery: at least once into the store. Messages are acknowledged (PUBACK, ``manual_ack=True``)
only once committed. Until then the broker keeps them in the persistent session, so a crash, or a
store outage that outlasts the collector, loses nothing: the broker sends every unacknowledged
message again when the same client id reconnects (duplicates are dropped by run_id and
receipted). Message ids belong to one connection: a message received before a reconnect is not
acknowledged after it; the broker's redelivered copy is. ``stop()`` stops taking messages, drains
the queue, sends its acks, then has the broker confirm them (:meth:`shared.mqtt.MqttConnection.flush`)
before the DISCONNECT, so a collector restarted at once does not get them again.

Backpressure. The collector connects with an MQTT v5 Receive Maximum of ``receive_maximum``: a
broker then has at most that many messages unacknowledged with it, whatever its own in-flight
setting, and a backlog queued at the broker comes in that many at a time (the SUBACKs are never
stuck behind all of it). On MQTT 3.1.1 the broker's in-flight window (Mosquitto's
``max_inflight_messages``) is the broker's bound. Brokers do not always keep it (Mosquitto 2.0.11
sends its whole queue once acks flow, v5 or not), so the collector keeps it too: while it holds
``receive_maximum`` messages not yet acknowledged, the network thread reads no more (TCP pushes
back on the broker) until the writer has stored some. Memory stays bounded by the window at any
rate; during a store outage longer than 1.5 keepalives the broker may drop the connection, and
the session's messages come again after the reconnect (stored once).

Store outages. A store error is the store's problem, never the message's: the batch is kept, not
acknowledged, and retried after ``retry_interval_s``, doubling up to ``retry_max_interval_s``, for
as long as it takes. Meanwhile the writer takes no new messages, so the queue fills to the receive
window and the broker stops sending. The outage is reported once when it starts (ERROR) and once
when it ends (WARNING), in the metrics (``edgemeter_collector_store_outage``, ``..._store_retries``)
and in the collector's own retained status (:mod:`collector.health`, ``state: store-down``).

Settings and injection. The service takes its :class:`collector.config.MqttSettings` and
:class:`collector.config.IngestSettings`, the function that connects to the broker
(:func:`shared.mqtt.connect` by default; tests pass a fake that returns an object with the
:class:`BrokerConnection` methods), the clock (``time.monotonic`` by default) that times retries,
its :class:`collector.metrics.CollectorMetrics` and its :class:`collector.events.EventBus`. Every URL
it logs or puts in an error goes through :func:`shared.redact.redact_url`.

Garbage collection. Parsing a message allocates thousands of short-lived objects, nearly all
freed by reference counting; Python's cyclic collector still runs after every 700 allocations and,
every 100 of those, walks the whole process (SQLAlchemy, pydantic, paho). :meth:`start` therefore
freezes what is alive then (:func:`gc.freeze`: the imported libraries are never walked again) and
raises the first threshold to ``gc_threshold`` (``0`` leaves both alone). Measured with
``bench/ingest.py``-sized backlogs on the 2-core VM: about 1.3x the ingest rate; memory stays
bounded (the objects are freed by reference counting as before; only cycles wait longer).

Counters (:attr:`CollectorService.stats`): ``received``, ``stored``, ``duplicates``,
``dead_letters``, ``store_errors`` (failed store calls), and the gauges ``queued`` (received,
not yet acknowledged) and ``retry_pending`` (in a batch waiting for the store).
"""

from __future__ import annotations

import collections
import gc
import logging
import queue
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import FrameType
from typing import Any, Protocol, cast

from collector.config import IngestSettings, MqttSettings
from collector.errors import SubscribeError
from collector.events import EventBus
from collector.health import (
    COLLECTOR_FLEET,
    Backoff,
    CollectorState,
    CollectorStatus,
    status_topic,
)
from collector.ingest import Message, Rejection, read
from collector.metrics import CollectorMetrics
from collector.stores.base import Store
from collector.windows import store_windows, window_event
from shared.errors import BrokerError
from shared.messages import JobAck, Progress, Receipt, Status, Telemetry
from shared.monitoring import MonitorWindow
from shared.mqtt import SubscribeHandler, Will
from shared.mqtt import connect as mqtt_connect
from shared.payload import unpack
from shared.redact import redact_url
from shared.schema import BenchmarkResult
from shared.topics import ROOT, TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = ["SUBSCRIBED_KINDS", "BrokerConnection", "CollectorService", "ConnectFunction",
           "default_client_id"]

SUBSCRIBED_KINDS = (TopicKind.RESULT, TopicKind.STATUS, TopicKind.TELEMETRY,
                    TopicKind.PROGRESS, TopicKind.ACK, TopicKind.MONITOR)
DEVICES_ONLINE_TTL_S = 5.0
"""The devices-online gauge reads the store at most this often, however often it is scraped."""
RETRY_POLL_S = 0.1
"""How often the writer looks at the clock while a retry waits (a test's clock jumps)."""
_COLLECTOR_PREFIX = f"{ROOT}/{COLLECTOR_FLEET}/"

STAT_KEYS = ("received", "stored", "duplicates", "dead_letters", "store_errors")


class BrokerConnection(Protocol):
    """What the service uses of a broker connection (:class:`shared.mqtt.MqttConnection`)."""

    @property
    def protocol(self) -> str: ...

    def subscribe(self, topic: str, qos: int = 1,
                  on_granted: SubscribeHandler | None = None) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0, *,
                retain: bool = False, wait: bool = True) -> None: ...

    def ack(self, mid: int, qos: int) -> None: ...

    def flush(self, timeout_s: float = 10.0) -> bool: ...

    def close(self) -> None: ...


def _offers_shares(conn: BrokerConnection) -> bool:
    """``$share/`` works: the connection says so (:attr:`shared.mqtt.MqttConnection.
    shared_subscriptions`, from the CONNACK's Shared Subscription Available), or, for a
    connection that does not say, it speaks MQTT v5."""
    return bool(getattr(conn, "shared_subscriptions", conn.protocol == "5"))


ConnectFunction = Callable[..., BrokerConnection]
"""Called like :func:`shared.mqtt.connect` (URL, client id, keyword options); calls its
``on_connect`` with the connection after every (re)connection and ``on_message_ack`` with each
message."""
Clock = Callable[[], float]
StatsReport = Callable[[dict[str, int]], None]


def tune_gc(threshold: int) -> None:
    """Freeze what is alive and raise the first collection threshold to ``threshold`` (never
    lowered; see the module docstring). Process-wide: the collector owns its process."""
    if threshold <= 0:
        return
    first, *rest = gc.get_threshold()
    if first < threshold:
        gc.freeze()
        gc.set_threshold(threshold, *rest)


def default_client_id(name: str | None = None) -> str:
    """``edgemeter-collector-<name>``, the host name by default: stable across restarts (so the
    broker keeps the session) and distinct between hosts (members of one ``group`` must differ,
    or the broker disconnects one when the other connects)."""
    raw = name or socket.gethostname() or "default"
    return "edgemeter-collector-" + re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:64]


@dataclass(frozen=True)
class _Delivery:
    """What acknowledging a message takes: the connection it came on, its id and its QoS."""

    connection: int
    mid: int
    qos: int


@dataclass
class _Item:
    """One message on its way to the store: its model, or why it is a dead letter."""

    topic: str
    payload: bytes
    delivery: _Delivery
    outcome: Message | Rejection | None
    """``None`` until the writer has read it (:func:`collector.ingest.read`)."""
    received_at: datetime

    @property
    def label(self) -> str:
        out = self.outcome
        if isinstance(out, BenchmarkResult):
            return f"run_id {out.run_id}"
        return f"dead letter on {self.topic}" if isinstance(out, Rejection) else self.topic


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def result_summary(result: BenchmarkResult) -> dict[str, Any]:
    """The ``result`` event's data: what a live dashboard shows of a new result."""
    energy = result.energy
    return {
        "run_id": str(result.run_id),
        "fleet": result.fleet,
        "device_id": result.device_id,
        "model": result.model.name,
        "p50_ms": result.latency_ms.p50,
        "throughput_sps": result.throughput_sps,
        "watts": energy.avg_power_w if energy is not None else None,
        "created_at": result.created_at.isoformat(),
    }


class CollectorService:
    """Subscribe to the fleet's topics and store what arrives. See the module docstring."""

    def __init__(
        self,
        store: Store,
        mqtt: MqttSettings,
        ingest: IngestSettings | None = None,
        *,
        connect: ConnectFunction = mqtt_connect,
        clock: Clock = time.monotonic,
        metrics: CollectorMetrics | None = None,
        events: EventBus | None = None,
    ) -> None:
        """``mqtt`` with its secrets already resolved (:func:`collector.config.load_settings`)."""
        ingest = ingest or IngestSettings()
        self.store = store
        self.mqtt = mqtt
        self.ingest = ingest
        self.metrics = metrics if metrics is not None else CollectorMetrics()
        self.events = events if events is not None else EventBus()
        self.client_id = mqtt.client_id or default_client_id()
        self.group = mqtt.group
        self.fleet = mqtt.fleet
        self.broker = redact_url(mqtt.url)
        """The broker's URL as it may be shown: without its password."""
        self.connect_timeout_s = mqtt.connect_timeout_s
        self.batch_size = ingest.batch_size
        self.receive_maximum = ingest.receive_maximum
        self.status_topic = status_topic(self.client_id)
        self._connect = connect
        self._clock = clock

        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._queue: collections.deque[_Item] = collections.deque()
        self._in_flight = 0
        self._retry_pending = 0
        self._stopping = False
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._writer: threading.Thread | None = None
        self._conn: BrokerConnection | None = None
        self._connection = 0  # counts (re)connections; message ids are valid on one only
        self._subscribed: set[str] = set()
        self._all_subscribed = threading.Event()
        self._warned_group = False
        self._warned_window = False
        self._received_by_kind = {kind.value: self.metrics.received.labels(kind=kind.value)
                                  for kind in SUBSCRIBED_KINDS}
        self._received_other = self.metrics.received.labels(kind="result")  # counted; rejected
        self._shutdown = threading.Event()
        self._online_cache: tuple[float, float] | None = None  # (read at, devices online)
        self.metrics.devices_online.set_function(self._devices_online)
        # read when scraped, not set on every message (that cost the network thread a lock each)
        self.metrics.backlog.set_function(lambda: len(self._queue) + self._in_flight)
        self._outage_since: float | None = None
        self._outage_error = ""
        self._state_since = _utc_now()

    # -- public ------------------------------------------------------------------------------

    def subscription_for(self, kind: TopicKind) -> str:
        """The topic filter for one kind (shared when ``group`` is set and the broker speaks v5)."""
        if self.group and (self._conn is None or _offers_shares(self._conn)):
            return Topics.shared_subscription(kind, self.group, self.fleet)
        return Topics.subscription(kind, self.fleet)

    @property
    def subscription(self) -> str:
        """The result topic filter (see :meth:`subscription_for` for the others)."""
        return self.subscription_for(TopicKind.RESULT)

    @property
    def subscriptions(self) -> list[str]:
        return [self.subscription_for(kind) for kind in SUBSCRIBED_KINDS]

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the service was made, plus the current queue and retry depths."""
        with self._lock:
            out = dict(self._stats)
            out["queued"] = len(self._queue) + self._in_flight
            out["retry_pending"] = self._retry_pending
        return out

    @property
    def store_down(self) -> bool:
        """True while the store refuses writes (an outage in progress)."""
        return self._outage_since is not None

    def start(self) -> None:
        """Start the writer, connect, subscribe; returns once the broker confirmed the subscriptions.

        Raises :class:`shared.errors.BrokerError` when the broker cannot be reached
        (:class:`collector.errors.SubscribeError` when it does not confirm the subscriptions).
        """
        if self._writer is not None:
            return
        tune_gc(self.ingest.gc_threshold)
        with self._lock:
            self._stopping = False
        self._shutdown.clear()
        self._all_subscribed.clear()
        self._writer = threading.Thread(target=self._run_writer, name="collector-writer",
                                        daemon=True)
        self._writer.start()
        try:
            mqtt, tls = self.mqtt, self.mqtt.tls
            will = None
            if self.status_topic is not None:
                will = Will(self.status_topic, self._status_payload("offline", sent=False),
                            qos=1, retain=True)
            else:
                logger.warning("client id %r cannot be a topic level: the collector publishes no "
                               "status of its own", self.client_id)
            self._conn = self._connect(
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
                timeout_s=self.connect_timeout_s,
                manual_ack=True,
                receive_maximum=self.receive_maximum,
                will=will,
                on_message_ack=self._on_message,
                on_connect=self._on_connect,
            )
            if not self._all_subscribed.wait(self.connect_timeout_s):
                missing = sorted(set(self.subscriptions) - self._subscribed)
                raise SubscribeError(
                    f"broker {self.broker} did not confirm the subscription to "
                    f"{', '.join(missing) or self.subscription} within "
                    f"{self.connect_timeout_s:.0f} s"
                )
        except BaseException:
            self.stop()
            raise
        logger.info("collector %s listening on %s", self.client_id, ", ".join(self.subscriptions))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Store everything already received (drains the queue), acknowledge it, disconnect.

        Messages arriving while it drains are left unacknowledged for the next session. Before the
        DISCONNECT it publishes the collector's ``offline`` status and waits (up to
        ``connect_timeout_s``) until the broker has processed the acks.
        """
        writer, self._writer = self._writer, None
        with self._lock:
            self._stopping = True
            self._has_items.notify_all()
            self._space.notify_all()
        if writer is not None:
            writer.join(timeout_s)
            if writer.is_alive():
                logger.error("collector writer did not finish within %.0f s", timeout_s)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._publish_status(conn, "offline")
            try:
                if not conn.flush(self.connect_timeout_s):
                    logger.warning("broker %s did not confirm within %.0f s that it has the acks; "
                                   "it may deliver some stored results again (kept once)",
                                   self.broker, self.connect_timeout_s)
            except Exception:  # a dead connection: the broker will redeliver, the store dedups
                logger.debug("MQTT flush failed", exc_info=True)
            try:
                conn.close()
            except Exception:  # a dead connection needs no goodbye
                logger.debug("MQTT disconnect failed", exc_info=True)
        self._shutdown.set()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every message received so far has been processed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 on the collector's own connection and wait for the broker's PUBACK
        (jobs sent from the HTTP API). Raises :class:`shared.errors.BrokerError` when not
        connected or not acknowledged."""
        conn = self._conn
        if conn is None:
            raise BrokerError(f"the collector is not connected to {self.broker}")
        conn.publish(topic, payload, qos=1)

    def shutdown(self) -> None:
        """Ask :meth:`serve_forever` to return (from another thread or a signal handler)."""
        self._shutdown.set()

    def serve_forever(self, stats_interval_s: float | None = None,
                      report: StatsReport | None = None) -> None:
        """Run until SIGINT, SIGTERM or :meth:`shutdown`; then stop gracefully.

        Every ``stats_interval_s`` (default: the ingest settings') calls ``report`` with the
        counters (default: an INFO log line; ``collector serve`` prints them).
        """
        if stats_interval_s is None:
            stats_interval_s = self.ingest.stats_interval_s
        if report is None:
            def report(stats: dict[str, int]) -> None:
                logger.info("collector stats: %s", stats)
        previous: dict[signal.Signals, Any] = {}

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal %s: stopping the collector", signal.Signals(signum).name)
            self._shutdown.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, _on_signal)
        try:
            self.start()
            while not self._shutdown.wait(stats_interval_s):
                report(self.stats)
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            logger.info("collector stopped: %s", self.stats)

    def __enter__(self) -> CollectorService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- MQTT thread -------------------------------------------------------------------------

    def _on_connect(self, conn: BrokerConnection) -> None:
        try:
            if self.group and not _offers_shares(conn) and not self._warned_group:
                self._warned_group = True
                logger.warning(
                    "broker %s (MQTT %s) offers no shared subscriptions, so group %r is ignored "
                    "and every collector receives every message", self.broker, conn.protocol,
                    self.group,
                )
            with self._lock:
                self._conn = conn
                self._connection += 1
                self._subscribed.clear()
            self._publish_status(conn, "store-down" if self.store_down else "online")
            for topic in self.subscriptions:
                conn.subscribe(topic, qos=1, on_granted=self._granted_handler(topic))
        except Exception:  # an exception here would end paho's network thread
            logger.exception("could not subscribe to %s", ", ".join(self.subscriptions))

    def _granted_handler(self, topic: str) -> SubscribeHandler:
        def _on_granted(granted: bool, detail: str) -> None:
            if not granted:
                logger.error("broker refused the subscription to %s: %s", topic, detail)
                return
            with self._lock:
                self._subscribed.add(topic)
                done = self._subscribed >= set(self.subscriptions)
            if done:
                self._all_subscribed.set()
        return _on_granted

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Network thread: only sorts and queues (parsing is the writer's: module docstring)."""
        if topic.startswith(_COLLECTOR_PREFIX):  # a collector's own status: not a device's
            self._ack_now(mid, qos)
            return
        kind = topic.rpartition("/")[2]
        self._received_by_kind.get(kind, self._received_other).inc()
        if kind == "progress":
            self._on_progress(read(topic, payload))
            self._ack_now(mid, qos)
            with self._lock:
                self._stats["received"] += 1
            return
        received_at = _utc_now()
        with self._lock:
            if self._stopping:  # unacknowledged: the broker keeps it for the next session
                return
            item = _Item(topic, bytes(payload), _Delivery(self._connection, mid, qos), None,
                         received_at)
            self._queue.append(item)
            self._stats["received"] += 1
            self._has_items.notify()
            self._hold_back()

    def _hold_back(self) -> None:
        """With the lock held: while the collector holds ``receive_maximum`` messages, read no
        more. A conforming broker never sends past the window; Mosquitto 2.0.11 does once acks
        start flowing (it then sends its whole queue), so the collector keeps the bound itself:
        the socket is not read, and TCP pushes back on the broker, until the writer frees room."""
        if len(self._queue) + self._in_flight < self.receive_maximum:
            return
        if not self._warned_window:
            self._warned_window = True
            logger.info("broker %s sends more than the receive maximum (%d) unacknowledged "
                        "messages; reading no more until some are stored", self.broker,
                        self.receive_maximum)
        while len(self._queue) + self._in_flight >= self.receive_maximum and not self._stopping:
            self._space.wait(1.0)

    def _on_progress(self, outcome: Message | Rejection) -> None:
        if isinstance(outcome, Progress):
            if self.events.active:
                self.events.publish("progress", outcome.model_dump(mode="json"))
            return
        self.metrics.progress_rejected.inc()
        logger.debug("ignored a progress message: %s", outcome)

    def _ack_now(self, mid: int, qos: int) -> None:
        """Acknowledge a message that needs no storing (from the network thread)."""
        conn = self._conn
        if conn is not None and qos > 0:
            try:
                conn.ack(mid, qos)
            except Exception:  # an ack not sent only means a redelivery
                logger.debug("could not acknowledge message %d", mid, exc_info=True)

    def _devices_online(self) -> float:
        """Devices whose stored status is online, read from the store at most every
        :data:`DEVICES_ONLINE_TTL_S` (the gauge is evaluated on each scrape); NaN if it fails."""
        now = self._clock()
        cached = self._online_cache
        if cached is not None and now - cached[0] < DEVICES_ONLINE_TTL_S:
            return cached[1]
        try:
            devices = self.store.list_devices()
            online = float(sum(1 for d in devices if d.status == "online"))
        except Exception as err:  # a scrape must not fail because the store does
            logger.debug("could not count the devices online: %s", err)
            online = float("nan")
        self._online_cache = (now, online)
        return online

    # -- collector status --------------------------------------------------------------------

    def _status_payload(self, state: CollectorState, *, sent: bool = True) -> bytes:
        with self._lock:
            backlog = len(self._queue) + self._in_flight
        status = CollectorStatus(
            collector=self.client_id, state=state,
            since=self._state_since, sent_at=_utc_now() if sent else None,
            error=self._outage_error[:400] or None if state == "store-down" else None,
            backlog=backlog,
        )
        return status.model_dump_json().encode()

    def _publish_status(self, conn: BrokerConnection | None, state: CollectorState) -> None:
        if conn is None or self.status_topic is None:
            return
        try:
            conn.publish(self.status_topic, self._status_payload(state), qos=1, retain=True,
                         wait=False)
        except Exception as err:  # the status is informative; never let it stop ingest
            logger.debug("could not publish the collector status: %s", err)

    # -- writer thread -----------------------------------------------------------------------

    def _run_writer(self) -> None:
        """Takes and parses batches, and hands each to the committer thread, which stores it
        while the next one is parsed (the database's time overlaps the parsing's)."""
        handoff: queue.Queue[list[_Item] | None] = queue.Queue(maxsize=1)
        committer = threading.Thread(target=self._run_committer, args=(handoff,),
                                     name="collector-committer", daemon=True)
        committer.start()
        try:
            while True:
                batch = self._take()
                if batch is None:
                    break
                for item in batch:
                    item.outcome = read(item.topic, item.payload)
                handoff.put(batch)
        finally:
            handoff.put(None)
            committer.join()

    def _run_committer(self, handoff: queue.Queue[list[_Item] | None]) -> None:
        backoff = Backoff(self.ingest.retry_interval_s, self.ingest.retry_max_interval_s)
        while (batch := handoff.get()) is not None:
            try:
                self._write_until_done(batch, backoff)
            except Exception:  # a bug here must not stop the collector; the batch is logged
                logger.exception("collector writer failed on a batch of %d messages; left "
                                 "unacknowledged", len(batch))
            with self._lock:
                self._in_flight -= len(batch)
                self._retry_pending = 0
                self._idle.notify_all()
                self._space.notify_all()

    def _take(self) -> list[_Item] | None:
        """What is queued, up to ``batch_size``, at once; ``None`` when stopped and drained."""
        with self._lock:
            while not self._queue:
                if self._stopping:
                    return None
                self._has_items.wait(1.0)
            count = min(len(self._queue), self.batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight += count
            return batch

    def _write_until_done(self, batch: list[_Item], backoff: Backoff) -> None:
        """Write ``batch``; while the store fails, keep it and retry with backoff, for ever
        (until the service stops: then it is left unacknowledged for the next session)."""
        pending = self._write(batch)
        while pending:
            with self._lock:
                self._retry_pending = len(pending)
                stopping = self._stopping
            if stopping:
                pending = self._write(pending)  # one last try
                for item in pending:
                    logger.warning("collector stopping: %s is not stored; left unacknowledged, "
                                   "so the broker delivers it again to the next session",
                                   item.label)
                if not pending:
                    break
                return
            self._wait(backoff.next_s())
            self.metrics.store_retries.inc()
            pending = self._write(pending)
        backoff.reset()
        self._outage_over()

    def _wait(self, delay_s: float) -> None:
        """Wait ``delay_s`` on the injected clock; returns early when the service stops."""
        due = self._clock() + delay_s
        with self._lock:
            while not self._stopping:
                remaining = due - self._clock()
                if remaining <= 0:
                    return
                self._has_items.wait(min(remaining, RETRY_POLL_S))

    def _write(self, items: list[_Item]) -> list[_Item]:
        """Store what ``items`` hold; returns those not stored (the store failed), in order."""
        for item in items:
            if item.outcome is None:
                item.outcome = read(item.topic, item.payload)
        results = [i for i in items if isinstance(i.outcome, BenchmarkResult)]
        windows = [i for i in items if isinstance(i.outcome, MonitorWindow)]
        telemetry = [i for i in items if isinstance(i.outcome, Telemetry)]
        others = [i for i in items
                  if not isinstance(i.outcome, (BenchmarkResult, MonitorWindow, Telemetry))]
        if results and not self._store_results(results):
            return items
        if windows and not self._store_windows(windows):  # one transaction, as results
            return windows + telemetry + others
        if telemetry and not self._store_telemetry(telemetry):  # one transaction too
            return telemetry + others
        for n, item in enumerate(others):
            if not self._store_other(item):
                return others[n:]
        return []

    def _store_failed(self, what: str, err: Exception) -> None:
        with self._lock:
            self._stats["store_errors"] += 1
        self._outage_error = str(err)
        if self._outage_since is None:
            self._outage_since = self._clock()
            self._state_since = _utc_now()
            self.metrics.store_outage.set(1)
            logger.error("store %s failed (%s) while %s: keeping the messages unacknowledged and "
                         "retrying every %.0f-%.0f s until it works", redact_url(self.store.url),
                         err, what, self.ingest.retry_interval_s,
                         self.ingest.retry_max_interval_s)
            self._publish_status(self._conn, "store-down")
        else:
            logger.debug("store still failing (%s) while %s", err, what)

    def _outage_over(self) -> None:
        if self._outage_since is None:
            return
        lasted_s = self._clock() - self._outage_since
        self._outage_since = None
        self._outage_error = ""
        self._state_since = _utc_now()
        self.metrics.store_outage.set(0)
        logger.warning("store %s works again after %.0f s; storing the backlog",
                       redact_url(self.store.url), lasted_s)
        self._publish_status(self._conn, "online")

    def _store_results(self, items: list[_Item]) -> bool:
        """One transaction for every result of ``items``; then receipts, then acks."""
        results = [cast(BenchmarkResult, i.outcome) for i in items]
        started = time.perf_counter()
        try:
            new = self.store.add_results(results, topics=[i.topic for i in items],
                                         payloads=[unpack(i.payload) for i in items])  # JSON
        except Exception as err:  # any store failure: keep the messages, retry
            self._store_failed(f"storing {len(items)} results", err)
            return False
        commit_s = time.perf_counter() - started
        stored_at = _utc_now()
        metrics = self.metrics
        metrics.commit_seconds.observe(commit_s)
        metrics.batch_size.observe(len(items))
        metrics.stored.inc(new)
        metrics.duplicates.inc(len(results) - new)
        with self._lock:
            self._stats["stored"] += new
            self._stats["duplicates"] += len(results) - new
        for result in results:
            metrics.ingest_lag.observe(max((stored_at - result.created_at).total_seconds(), 0.0))
        self._send_receipts(results, stored_at)
        self._ack(items)
        if logger.isEnabledFor(logging.INFO):
            for result in results:
                logger.info("stored %s from %s/%s (%s)", result.run_id, result.fleet,
                            result.device_id, result.model.name)
        if self.events.active:
            for result in results:
                self.events.publish("result", result_summary(result))
        return True

    def _store_windows(self, items: list[_Item]) -> bool:
        """Monitor windows in one transaction (collector.windows); receipts, acks, events."""
        windows = [cast(MonitorWindow, i.outcome) for i in items]
        try:
            receipts = store_windows(self.store, windows, collector=self.client_id,  # type: ignore[arg-type]
                                     payloads=[unpack(i.payload) for i in items])
        except Exception as err:  # any store failure: keep the messages, retry
            self._store_failed(f"storing {len(items)} monitor windows", err)
            return False
        conn = self._conn
        for topic, receipt in receipts:
            if conn is None:
                break
            try:
                conn.publish(topic, receipt, qos=1, wait=False)
            except Exception as err:  # no receipt: the agent re-sends, the store dedups
                logger.warning("could not send a window receipt to %s: %s", topic, err)
        self._ack(items)
        if self.events.active:
            for window in windows:
                self.events.publish("monitor", window_event(window))
        return True

    def _store_telemetry(self, items: list[_Item]) -> bool:
        """Telemetry messages in one transaction (each also into the history); then acks."""
        batch = [(cast(Telemetry, i.outcome), i.received_at) for i in items]
        try:
            record_batch = getattr(self.store, "record_telemetry_batch", None)
            if record_batch is not None:  # SqlStore: one transaction
                record_batch(batch)
            else:  # a store with only the Store protocol's record_telemetry
                for message, received_at in batch:
                    self.store.record_telemetry(message, received_at)
        except Exception as err:  # any store failure: keep the messages, retry
            self._store_failed(f"storing {len(items)} telemetry messages", err)
            return False
        for message, _ in batch:
            self.metrics.agent_spool(message.fleet, message.device_id, message.spool_depth)
            if self.events.active:
                self.events.publish("telemetry", message.model_dump(mode="json"))
        self._ack(items)
        return True

    def _send_receipts(self, results: Sequence[BenchmarkResult], stored_at: datetime) -> None:
        by_device: dict[tuple[str, str], list[Any]] = {}
        for result in results:
            by_device.setdefault((result.fleet, result.device_id), []).append(result.run_id)
        conn = self._conn
        if conn is None:
            return
        for (fleet, device_id), run_ids in by_device.items():
            receipt = Receipt(run_ids=list(dict.fromkeys(run_ids)), stored_at=stored_at,
                              collector=self.client_id)
            try:
                conn.publish(Topics.build(fleet, device_id, TopicKind.RECEIPT),
                             receipt.model_dump_json().encode(), qos=1, wait=False)
            except Exception as err:  # no receipt: the agent re-sends, the store dedups
                logger.warning("could not send a receipt to %s/%s: %s", fleet, device_id, err)

    def _store_other(self, item: _Item) -> bool:
        """A status, telemetry, job ack or dead letter; acknowledged once stored."""
        out = item.outcome
        try:
            if isinstance(out, Rejection):
                address = Topics.parse(item.topic)
                self.store.add_dead_letter(
                    item.topic, out.reason, item.payload,
                    device_id=address.device_id if address is not None else None,
                    # agents publish status retained: the broker hands a bad one out again on
                    # every subscribe, which the store must not count as a new occurrence
                    retained=address is not None and address.kind is TopicKind.STATUS,
                )
            elif out is not None:
                self._record(out, item.received_at)
        except Exception as err:  # any store failure: keep the message, retry
            self._store_failed(f"storing {item.label}", err)
            return False
        if isinstance(out, Rejection):
            self.metrics.dead_letter(out.code)
            with self._lock:
                self._stats["dead_letters"] += 1
            logger.info("dead letter from %s: %s", item.topic, out.reason)
        self._ack([item])
        return True

    def _record(self, message: Message, received_at: datetime) -> None:
        """A status or job ack (telemetry goes in batches: :meth:`_store_telemetry`)."""
        store = self.store
        if isinstance(message, Status):
            store.record_status(message, received_at)
        elif isinstance(message, JobAck):
            store.record_ack(message, received_at)
        if self.events.active and isinstance(message, (Status, JobAck)):
            kind = "status" if isinstance(message, Status) else "ack"
            self.events.publish(kind, message.model_dump(mode="json"))

    def _ack(self, items: list[_Item]) -> None:
        """Acknowledge messages now committed to the store (or known duplicates)."""
        with self._lock:  # so that no reconnection happens between the check and the ack
            conn, connection = self._conn, self._connection
            if conn is None:
                return
            try:
                for item in items:
                    if item.delivery.connection == connection:
                        conn.ack(item.delivery.mid, item.delivery.qos)
            except Exception:  # an ack not sent only means a redelivery (a duplicate)
                logger.warning("could not acknowledge %d stored messages", len(items),
                               exc_info=True)
