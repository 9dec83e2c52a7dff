"""The collector service: MQTT in, results and dead letters out to a store.

Data path::

    paho network thread ──on_message──▶ bounded queue ──▶ writer thread ──▶ ingest() ──▶ Store
            ▲                           (never blocks)      (batches of up to 200 or 50 ms)   │
            └──────────────────── PUBACK once the result or dead letter is committed ◀────────┘

* The broker session is persistent (``clean_start=False``, session expiry one day by default, a
  stable client id, ``edgemeter-collector-<hostname>`` by default), so QoS 1 results published
  while the collector is away are delivered when it returns. The subscription is made in
  ``on_connect`` and so survives reconnects. With ``group`` and an MQTT v5 broker it is a shared
  subscription (``$share/<group>/...``): several collectors split the stream; on a 3.1.1 broker
  every collector gets everything (run_ids are unique in the store, so that is only wasteful).
* The network thread only appends to the queue. When the queue is full (``queue_limit``) the oldest
  message is dropped from memory (not acknowledged, so the broker sends it again after the next
  reconnect) and counted in ``stats["dropped"]``, so a dead database never stalls the broker
  connection. In practice the broker's in-flight window (Mosquitto's ``max_inflight_messages``)
  bounds what is received but unacknowledged long before ``queue_limit``.
* The writer thread turns each message into a result or a dead letter (:func:`collector.ingest`)
  and writes a batch in one transaction. Nothing it meets on the wire or in the store ends it.

Store failures. A failed batch is counted in ``store_errors`` and logged with its run_ids. The
writer then probes the store with a cheap read: if the store is down, the whole batch goes to an
in-memory retry queue (bounded by ``retry_limit``; overflow drops the oldest from memory, logged at
ERROR with its run_id and counted in ``dropped``), retried with the next batch or after
``retry_interval_s``. If the store is up, the batch is written one message at a time so one bad row
cannot block the rest; a message the store refuses ``max_attempts`` times becomes a dead letter.
Messages still waiting for a retry when the service stops are logged with their run_ids; they
are unacknowledged, so the broker delivers them again to the next session.

Counters (:attr:`CollectorService.stats`): ``received``, ``stored`` (new run_ids),
``duplicates`` (run_ids already stored), ``dead_letters``, ``store_errors`` (failed store calls),
``dropped`` (let go by a full queue or retry queue, unacknowledged), and the gauges ``queued`` and
``retry_pending``.

Delivery: at least once into the store. The connection uses manual acknowledgement
(``manual_ack=True``): a QoS 1 message is acknowledged (PUBACK) only after the transaction holding
its result or dead letter has committed, or the store reported its run_id as already stored.
Until then the broker keeps it in the persistent session, so a crash of the collector, or a store
outage that outlasts it, loses nothing: the broker delivers every unacknowledged message again when
the same client id reconnects. Redelivery makes duplicates, which the store drops by run_id
(``duplicates``); a message that becomes a dead letter may, after a crash, be kept twice. Message
ids belong to one connection, so a message received before a reconnect is not acknowledged after
it: the broker redelivers it and that copy is acknowledged instead. ``stop()`` stops taking new
messages (those arriving meanwhile stay with the broker), drains the queue and sends its acks,
then makes a round trip to the broker (:meth:`shared.mqtt.MqttConnection.flush`) so that the
broker has processed every ack before the DISCONNECT: a collector restarted at once connects with
the same client id, and Mosquitto, taking the session over, drops whatever it had not yet read from
the old connection, acks included, and sends those messages again. QoS 0 messages need no ack and
have no guarantee.

Settings and injection. The service takes its :class:`collector.config.MqttSettings` and
:class:`collector.config.IngestSettings` (batching, queue and retry knobs), the function that
connects to the broker (:func:`shared.mqtt.connect` by default; tests pass a fake that returns an
object with the :class:`BrokerConnection` methods) and the clock (``time.monotonic`` by default)
that times batches and retries. Waits on threads still sleep in real time. Every URL it logs or
puts in an error goes through :func:`shared.redact.redact_url`.
"""

from __future__ import annotations

import collections
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from collector.config import IngestSettings, MqttSettings
from collector.errors import SubscribeError
from collector.ingest import Rejection, ingest
from collector.stores.base import Store
from shared.mqtt import SubscribeHandler
from shared.mqtt import connect as mqtt_connect
from shared.redact import redact_url
from shared.schema import BenchmarkResult
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = ["BrokerConnection", "CollectorService", "ConnectFunction", "default_client_id"]


class BrokerConnection(Protocol):
    """What the service uses of a broker connection (:class:`shared.mqtt.MqttConnection`)."""

    @property
    def protocol(self) -> str: ...

    def subscribe(self, topic: str, qos: int = 1,
                  on_granted: SubscribeHandler | None = None) -> None: ...

    def ack(self, mid: int, qos: int) -> None: ...

    def flush(self, timeout_s: float = 10.0) -> bool: ...

    def close(self) -> None: ...


ConnectFunction = Callable[..., BrokerConnection]
"""Called like :func:`shared.mqtt.connect` (URL, client id, keyword options); calls its
``on_connect`` with the connection after every (re)connection and ``on_message_ack`` with each
message."""
Clock = Callable[[], float]

RETRY_POLL_S = 0.1
"""How often the writer looks at the clock while a retry waits."""

STAT_KEYS = (
    "received",
    "stored",
    "duplicates",
    "dead_letters",
    "store_errors",
    "dropped",
)


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
    """One message on its way to the store: a result, or a dead letter when ``result`` is None."""

    topic: str
    payload: bytes
    delivery: _Delivery
    result: BenchmarkResult | None
    reason: str | None = None
    attempts: int = 0
    logged: bool = False

    @property
    def label(self) -> str:
        return f"run_id {self.result.run_id}" if self.result else f"dead letter on {self.topic}"


class CollectorService:
    """Subscribe to every result topic and store what arrives. See the module docstring."""

    def __init__(
        self,
        store: Store,
        mqtt: MqttSettings,
        ingest: IngestSettings | None = None,
        *,
        connect: ConnectFunction = mqtt_connect,
        clock: Clock = time.monotonic,
    ) -> None:
        """``mqtt`` with its secrets already resolved (:func:`collector.config.load_settings`)."""
        ingest = ingest or IngestSettings()
        self.store = store
        self.mqtt = mqtt
        self.ingest = ingest
        self.client_id = mqtt.client_id or default_client_id()
        self.group = mqtt.group
        self.fleet = mqtt.fleet
        self.broker = redact_url(mqtt.url)
        """The broker's URL as it may be shown: without its password."""
        self.connect_timeout_s = mqtt.connect_timeout_s
        self.batch_size = ingest.batch_size
        self.batch_interval_s = ingest.batch_interval_s
        self.queue_limit = ingest.queue_limit
        self.retry_limit = ingest.retry_limit
        self.retry_interval_s = ingest.retry_interval_s
        self.max_attempts = ingest.max_attempts
        self._connect = connect
        self._clock = clock

        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[str, bytes, _Delivery]] = collections.deque()
        self._in_flight = 0
        self._stopping = False
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._retry: collections.deque[_Item] = collections.deque()  # writer thread only
        self._retry_due = 0.0
        self._writer: threading.Thread | None = None
        self._conn: BrokerConnection | None = None
        self._connection = 0  # counts (re)connections; message ids are valid on one only
        self._subscribed = threading.Event()
        self._warned_group = False
        self._shutdown = threading.Event()

    # -- public ------------------------------------------------------------------------------

    @property
    def subscription(self) -> str:
        """The topic filter this collector subscribes to (shared when ``group`` is set)."""
        if self.group and (self._conn is None or self._conn.protocol == "5"):
            return Topics.shared_subscription(TopicKind.RESULT, self.group, self.fleet)
        return Topics.subscription(TopicKind.RESULT, self.fleet)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the service was made, plus the current queue and retry depths."""
        with self._lock:
            out = dict(self._stats)
            out["queued"] = len(self._queue) + self._in_flight
        out["retry_pending"] = len(self._retry)
        return out

    def start(self) -> None:
        """Start the writer, connect, subscribe; returns once the broker confirmed the subscription.

        Raises :class:`shared.errors.BrokerError` when the broker cannot be reached
        (:class:`collector.errors.SubscribeError` when it does not confirm the subscription).
        """
        if self._writer is not None:
            return
        with self._lock:
            self._stopping = False
        self._shutdown.clear()
        self._subscribed.clear()
        self._writer = threading.Thread(target=self._run_writer, name="collector-writer",
                                        daemon=True)
        self._writer.start()
        try:
            mqtt, tls = self.mqtt, self.mqtt.tls
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
                on_message_ack=self._on_message,
                on_connect=self._on_connect,
            )
            if not self._subscribed.wait(self.connect_timeout_s):
                raise SubscribeError(
                    f"broker {self.broker} did not confirm the subscription to "
                    f"{self.subscription} within {self.connect_timeout_s:.0f} s"
                )
        except BaseException:
            self.stop()
            raise
        logger.info("collector %s listening on %s", self.client_id, self.subscription)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Store everything already received (drains the queue), acknowledge it, disconnect.

        Messages arriving while it drains are left unacknowledged for the next session. Before the
        DISCONNECT it waits (up to ``connect_timeout_s``) until the broker has processed the acks.
        """
        writer, self._writer = self._writer, None
        with self._lock:
            self._stopping = True
            self._has_items.notify_all()
        if writer is not None:
            writer.join(timeout_s)
            if writer.is_alive():
                logger.error("collector writer did not finish within %.0f s", timeout_s)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
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

    def shutdown(self) -> None:
        """Ask :meth:`serve_forever` to return (from another thread or a signal handler)."""
        self._shutdown.set()

    def serve_forever(self, stats_interval_s: float | None = None) -> None:
        """Run until SIGINT, SIGTERM or :meth:`shutdown`; then stop gracefully.

        Logs the counters every ``stats_interval_s`` (default: the ingest settings').
        """
        if stats_interval_s is None:
            stats_interval_s = self.ingest.stats_interval_s
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
                logger.info("collector stats: %s", self.stats)
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
            if self.group and conn.protocol != "5" and not self._warned_group:
                self._warned_group = True
                logger.warning(
                    "broker %s speaks MQTT %s: no shared subscriptions, so group %r is ignored "
                    "and every collector receives every result", self.broker, conn.protocol,
                    self.group,
                )
            with self._lock:
                self._conn = conn
                self._connection += 1
            conn.subscribe(self.subscription, qos=1, on_granted=self._on_subscribed)
        except Exception:  # an exception here would end paho's network thread
            logger.exception("could not subscribe to %s", self.subscription)

    def _on_subscribed(self, granted: bool, detail: str) -> None:
        if not granted:
            logger.error("broker refused the subscription to %s: %s", self.subscription, detail)
            return
        self._subscribed.set()

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self._lock:
            if self._stopping:  # unacknowledged: the broker keeps it for the next session
                return
            if len(self._queue) >= self.queue_limit:
                lost_topic, _, _ = self._queue.popleft()
                self._stats["dropped"] += 1
                logger.error("queue full (%d): dropped the oldest message, from %s, unacknowledged",
                             self.queue_limit, lost_topic)
            self._queue.append((topic, bytes(payload), _Delivery(self._connection, mid, qos)))
            self._stats["received"] += 1
            self._has_items.notify()

    # -- writer thread -----------------------------------------------------------------------

    def _run_writer(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                break
            try:
                self._process(batch)
            except Exception:  # a bug here must not stop the collector; the batch is logged
                logger.exception("collector writer failed on a batch of %d messages", len(batch))
            with self._lock:
                self._in_flight = 0
                self._idle.notify_all()
        if self._retry:
            try:
                self._process([])  # one last try before giving up
            except Exception:
                logger.exception("collector writer: last retry failed")
        for item in self._retry:
            logger.warning("collector stopping: %s is not stored; left unacknowledged, so the "
                           "broker delivers it again to the next session", item.label)
        self._retry.clear()

    def _take(self) -> list[tuple[str, bytes, _Delivery]] | None:
        """The next batch; ``[]`` when only a retry is due; ``None`` when stopped and drained."""
        with self._lock:
            while not self._queue:
                if self._stopping:
                    return None
                if self._retry and self._clock() >= self._retry_due:
                    return []
                # while a retry waits, look at the clock often: a test's clock jumps
                wait_s = min(max(self._retry_due - self._clock(), 0.0), RETRY_POLL_S) \
                    if self._retry else 1.0
                self._has_items.wait(wait_s)
            deadline = self._clock() + self.batch_interval_s
            while len(self._queue) < self.batch_size and not self._stopping:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._has_items.wait(remaining)
            count = min(len(self._queue), self.batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _ack(self, items: list[_Item]) -> None:
        """Acknowledge messages now committed to the store (or known duplicates)."""
        if not items:
            return
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

    def _process(self, batch: list[tuple[str, bytes, _Delivery]]) -> None:
        items = list(self._retry)
        self._retry.clear()
        for topic, payload, delivery in batch:
            outcome = ingest(topic, payload)
            if isinstance(outcome, Rejection):
                logger.info("dead letter from %s: %s", topic, outcome.reason)
                items.append(_Item(topic, payload, delivery, None, outcome.reason))
            else:
                items.append(_Item(topic, payload, delivery, outcome))
        if not items:
            return
        failed = self._write(items)
        for item in failed:
            if len(self._retry) >= self.retry_limit:
                lost = self._retry.popleft()
                self._count("dropped")
                logger.error("retry queue full (%d): dropped %s, unacknowledged",
                             self.retry_limit, lost.label)
            self._retry.append(item)
        self._retry_due = self._clock() + self.retry_interval_s

    def _write(self, items: list[_Item]) -> list[_Item]:
        """Store results and dead letters; returns the items to retry."""
        results = [i for i in items if i.result is not None]
        letters = [i for i in items if i.result is None]
        retry, refused = self._write_results(results)
        return retry + self._write_letters(refused + letters)

    def _add_results(self, items: list[_Item]) -> None:
        """Store the results of ``items`` in one transaction, then acknowledge them."""
        results = [i.result for i in items if i.result is not None]
        new = self.store.add_results(results, topics=[i.topic for i in items])
        self._count("stored", new)
        self._count("duplicates", len(results) - new)
        self._ack(items)

    def _write_results(self, items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        """Returns (to retry, refused by a working store and now dead letters)."""
        if not items:
            return [], []
        try:
            self._add_results(items)
            return [], []
        except Exception as err:  # any store failure: count, log, keep the messages
            self._count("store_errors")
            fresh = [i.label for i in items if not i.logged]
            logger.warning("could not store %d results (%s)%s", len(items), err,
                           f"; kept for retry: {', '.join(fresh)}" if fresh else "")
            for item in items:
                item.logged = True
            if not self._store_is_up():
                return items, []
        retry: list[_Item] = []
        refused: list[_Item] = []
        for item in items:  # the store works: find the rows it refuses, one at a time
            try:
                self._add_results([item])
                continue
            except Exception as err:  # counted and logged
                self._count("store_errors")
                item.attempts += 1
                if item.attempts < self.max_attempts:
                    logger.warning("store refused %s (%s); will retry", item.label, err)
                    retry.append(item)
                    continue
                logger.error("store refused %s %d times (%s): keeping it as a dead letter",
                             item.label, item.attempts, err)
                item.reason = f"store refused it {item.attempts} times: {err}"[:400]
                item.result = None
                item.attempts = 0
                refused.append(item)
        return retry, refused

    def _write_letters(self, letters: list[_Item]) -> list[_Item]:
        """Dead letters one by one; on the first failure the rest wait for the retry."""
        for n, letter in enumerate(letters):
            try:
                self.store.add_dead_letter(letter.topic, letter.reason or "rejected",
                                           letter.payload)
            except Exception as err:  # any store failure: count, log, keep the messages
                self._count("store_errors")
                logger.warning("could not store %d dead letters (%s); kept for retry",
                               len(letters) - n, err)
                return letters[n:]
            self._count("dead_letters")
            self._ack([letter])
        return []

    def _store_is_up(self) -> bool:
        try:
            self.store.list_dead_letters(limit=1)
        except Exception:  # the probe answers a yes/no question
            return False
        return True

