"""The collector service: MQTT in; results, presence, telemetry, job acks and dead letters out to a
store; receipts back to the agents. This module only wires four objects together, each owning its
own state (its module docstring says which thread touches what):

::

    paho network thread ─▶ Intake ─▶ Inbox ─▶ Writer: parse ─▶ commit ─▶ Announcer ─▶ Intake.ack
         (collector.intake)  (.inbox)     (collector.writer)           (collector.announcer)

* :class:`collector.intake.Intake`: the broker connection, subscriptions (shared ones with a
  ``group``), disconnects and takeovers; sorts what arrives into the inbox.
* :class:`collector.inbox.Inbox`: the bounded queue and the receive window (backpressure).
* :class:`collector.writer.Writer`: parses and stores batches, retries while the store is down,
  then has what is committed receipted and acknowledged (never before the commit).
* :class:`collector.announcer.Announcer`: receipts (run_ids and final job acks), the collector's
  retained status, live events and metrics.

Threads: paho's network thread runs the intake's callbacks (they only sort and queue, and block
while the receive window is full); ``collector-writer`` parses and ``collector-committer`` stores,
announces and acknowledges; the caller's thread starts and stops the service; HTTP threads
publish jobs (:meth:`CollectorService.publish`) and read :attr:`CollectorService.stats` and the
metrics. Whatever two of them share sits behind its owner's lock or passes through a queue.

Delivery: at least once into the store. Messages are acknowledged (PUBACK, ``manual_ack=True``)
only once committed. Until then the broker keeps them in the persistent session, so a crash, or a
store outage that outlasts the collector, loses nothing: the broker sends every unacknowledged
message again when the same client id reconnects (duplicates are dropped by run_id and
receipted). :meth:`CollectorService.stop` stops taking messages, drains the inbox, sends its acks,
publishes ``offline``, then has the broker confirm the acks before the DISCONNECT, so a collector
restarted at once does not get them again.

Settings and injection. The service takes its :class:`collector.config.MqttSettings` (secrets
already resolved) and :class:`collector.config.IngestSettings`, the function that connects to the
broker (:func:`shared.mqtt.connect` by default; tests pass a fake returning an object with the
:class:`collector.intake.BrokerConnection` methods), the clock (``time.monotonic`` by default)
that times retries, its :class:`collector.metrics.CollectorMetrics` and its
:class:`collector.events.EventBus`. Every URL it logs or puts in an error is redacted.

Garbage collection. Parsing a message allocates thousands of short-lived objects, nearly all freed
by reference counting; Python's cyclic collector still runs after every 700 allocations and, every
100 of those, walks the whole process. :meth:`CollectorService.start` therefore freezes what is
alive then (:func:`gc.freeze`) and raises the first threshold to ``gc_threshold`` (``0`` leaves
both alone); cycles wait longer, memory stays bounded.

Counters (:attr:`CollectorService.stats`): ``received``, ``stored``, ``duplicates``,
``dead_letters``, ``store_errors`` (failed store calls), and the gauges ``queued`` (received, not
yet acknowledged) and ``retry_pending`` (in a batch waiting for the store).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from collector.announcer import Announcer, result_summary
from collector.config import IngestSettings, MqttSettings
from collector.events import EventBus
from collector.inbox import Inbox
from collector.intake import (
    SUBSCRIBED_KINDS,
    BrokerConnection,
    ConnectFunction,
    Intake,
    default_client_id,
)
from collector.metrics import CollectorMetrics
from collector.stores.base import Store
from collector.writer import Writer
from shared.mqtt import Will
from shared.mqtt import connect as mqtt_connect
from shared.redact import redact_url
from shared.topics import TopicKind

logger = logging.getLogger(__name__)

__all__ = ["SUBSCRIBED_KINDS", "BrokerConnection", "CollectorService", "ConnectFunction",
           "default_client_id", "result_summary", "tune_gc"]

Clock = Callable[[], float]
StatsReport = Callable[[dict[str, int]], None]


class ReportChanges:
    """Hands counters to ``report`` only when they differ from the last ones it was given: an
    idle collector does not log the same stats line every interval."""

    def __init__(self, report: StatsReport) -> None:
        self._report = report
        self._said: dict[str, int] | None = None

    def __call__(self, stats: dict[str, int]) -> None:
        if stats != self._said:
            self._report(stats)
            self._said = dict(stats)


def tune_gc(threshold: int) -> None:
    """Freeze what is alive and raise the first collection threshold to ``threshold`` (never
    lowered; see the module docstring). Process-wide: the collector owns its process."""
    if threshold <= 0:
        return
    first, *rest = gc.get_threshold()
    if first < threshold:
        gc.freeze()
        gc.set_threshold(threshold, *rest)


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
        ingest = ingest or IngestSettings()
        self.store = store
        self.mqtt = mqtt
        self.ingest = ingest
        self.metrics = metrics if metrics is not None else CollectorMetrics()
        self.events = events if events is not None else EventBus()
        self.client_id = mqtt.client_id or default_client_id()
        self.connect_timeout_s = mqtt.connect_timeout_s
        self.inbox = Inbox(ingest.receive_maximum, source=redact_url(mqtt.url))
        self.intake = Intake(mqtt, self.client_id, inbox=self.inbox, metrics=self.metrics,
                             on_connected=lambda: self.announcer.publish_status(),
                             on_progress=lambda t, p: self.announcer.progress(t, p),
                             connect=connect, clock=clock)
        self.announcer = Announcer(self.client_id, publisher=self.intake, metrics=self.metrics,
                                   events=self.events, store=store,
                                   backlog=lambda: self.inbox.depth,
                                   outage=lambda: self.writer.outage(), clock=clock)
        self.writer = Writer(store, self.inbox, acker=self.intake, listener=self.announcer,
                             batch_size=ingest.batch_size,
                             retry_interval_s=ingest.retry_interval_s,
                             retry_max_interval_s=ingest.retry_max_interval_s, clock=clock)
        self._running = False
        self._shutdown = threading.Event()

    # -- what callers read ---------------------------------------------------------------------

    @property
    def broker(self) -> str:
        """The broker's URL as it may be shown: without its password."""
        return self.intake.broker

    @property
    def status_topic(self) -> str | None:
        return self.announcer.status_topic

    def subscription_for(self, kind: TopicKind) -> str:
        """The topic filter for one kind (shared when ``group`` is set and the broker can)."""
        return self.intake.subscription_for(kind)

    @property
    def subscription(self) -> str:
        """The result topic filter (see :meth:`subscription_for` for the others)."""
        return self.subscription_for(TopicKind.RESULT)

    @property
    def subscriptions(self) -> list[str]:
        return self.intake.subscriptions

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the service was made, plus the current queue and retry depths."""
        return {"received": self.inbox.received, **self.writer.stats, "queued": self.inbox.depth}

    @property
    def store_down(self) -> bool:
        """True while the store refuses writes (an outage in progress)."""
        return self.writer.outage().down

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer, connect, subscribe; returns once the broker confirmed the subscriptions.

        Raises :class:`shared.errors.BrokerError` when the broker cannot be reached
        (:class:`collector.errors.SubscribeError` when it does not confirm the subscriptions).
        """
        if self._running:
            return
        self._running = True
        tune_gc(self.ingest.gc_threshold)
        self.inbox.open()
        self._shutdown.clear()
        self.writer.start()
        try:
            will = None
            if self.status_topic is not None:
                will = Will(self.status_topic, self.announcer.status_payload("offline", sent=False),
                            qos=1, retain=True)
            else:
                logger.warning("client id %r cannot be a topic level: the collector publishes no "
                               "status of its own", self.client_id)
            self.intake.connect(will, self.connect_timeout_s)
        except BaseException:
            self.stop()
            raise
        logger.info("collector %s listening on %s", self.client_id, ", ".join(self.subscriptions))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Store everything already received (drains the inbox), acknowledge it, disconnect.

        Messages arriving while it drains are left unacknowledged for the next session. Before the
        DISCONNECT it publishes the collector's ``offline`` status and waits (up to
        ``connect_timeout_s``) until the broker has processed the acks.
        """
        self._running = False
        self.inbox.close()
        self.writer.stop(timeout_s)
        if self.intake.connection is not None:
            self.announcer.publish_status("offline")
        self.intake.close(self.connect_timeout_s)
        self._shutdown.set()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every message received so far has been processed; False on timeout."""
        return self.inbox.wait_idle(timeout_s)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 on the collector's own connection and wait for the broker's PUBACK
        (jobs sent from the HTTP API). Raises :class:`shared.errors.BrokerError` when not
        connected or not acknowledged."""
        self.intake.publish(topic, payload)

    def shutdown(self) -> None:
        """Ask :meth:`serve_forever` to return (from another thread or a signal handler)."""
        self._shutdown.set()

    def serve_forever(self, stats_interval_s: float | None = None,
                      report: StatsReport | None = None) -> None:
        """Run until SIGINT, SIGTERM or :meth:`shutdown`; then stop gracefully.

        Every ``stats_interval_s`` (default: the ingest settings') calls ``report`` with the
        counters when they changed since the last report (default: an INFO log line;
        ``collector serve`` prints them).
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
            changed = ReportChanges(report)
            while not self._shutdown.wait(stats_interval_s):
                changed(self.stats)
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
