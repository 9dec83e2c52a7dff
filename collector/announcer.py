"""What the collector tells the world about what it stored: receipts to agents, its own status, live
events for the dashboard, and its metrics.

::

    announcer = Announcer("c1", publisher=intake, metrics=metrics, events=bus, store=store,
                          backlog=inbox.depth, outage=writer.outage)
    announcer.committed(batch)      # committer thread: metrics, receipts, log lines, events
    announcer.publish_status()      # online or store-down, as the writer sees the store now

Receipts. After each commit, one :class:`shared.messages.Receipt` per (fleet, device_id) on
``edgemeter/v1/<fleet>/<device>/receipt`` (QoS 1, not waited for) names every run_id of the batch
now in the store, duplicates included (a re-sent result must be receipted, or the agent keeps
re-sending it), and every job whose final ack (``done``, ``failed``, ``cancelled``) is now in the
store, a re-announced one included (the agent keeps re-announcing it until a receipt names it).
A receipt that cannot be sent is logged: the agent sends again, the store keeps one copy.

Status. The collector's retained status on ``edgemeter/v1/_collector/<client_id>/status``
(:mod:`collector.health`): ``online`` or ``store-down`` (from :meth:`collector.writer.Writer.outage`)
on every (re)connection and at each outage's start and end, ``offline`` at a clean stop and as the
Last Will. Each status is read and published under one lock, so the last one sent is the newest.

Events (:class:`collector.events.EventBus`, built only while someone listens): ``result`` (a
summary, :func:`result_summary`), ``status``, ``telemetry``, ``ack`` and ``progress`` (each the
wire message as JSON). ``progress`` is never stored: :meth:`Announcer.progress` reads it on the
network thread and relays it; an invalid one is counted and dropped.

Metrics (:class:`collector.metrics.CollectorMetrics`): everything the writer and intake report,
and the ``devices_online`` gauge, which reads the store when scraped, at most every
:data:`DEVICES_ONLINE_TTL_S`.

Ownership. The announcer owns the status lock and the devices-online cache (behind its own
lock). It is called from the committer thread (:meth:`committed`, :meth:`recorded`, ...), the
network thread (:meth:`progress`, :meth:`publish_status` on connect), the stopping thread and
scrapes; the metrics and the event bus are thread-safe, and publishing only queues.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from collector.errors import StoreError
from collector.events import EventBus
from collector.health import CollectorState, CollectorStatus, status_topic
from collector.ingest import Rejection, read
from collector.metrics import CollectorMetrics
from collector.stores.base import Store
from collector.windows import window_event
from collector.writer import Committed, Outage, Record
from shared.errors import BrokerError
from shared.messages import JobAck, Progress, Receipt, Status, Telemetry
from shared.schema import BenchmarkResult
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)

__all__ = ["DEVICES_ONLINE_TTL_S", "Announcer", "Publisher", "result_summary"]

DEVICES_ONLINE_TTL_S = 5.0
"""The devices-online gauge reads the store at most this often, however often it is scraped."""
_EVENT_KINDS: dict[type, str] = {Status: "status", Telemetry: "telemetry", JobAck: "ack"}


class Publisher(Protocol):
    """Queues a QoS 1 message without waiting (:meth:`collector.intake.Intake.announce`);
    raises :class:`shared.errors.BrokerError` when it cannot."""

    def announce(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...


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


def receipts(batch: Committed, collector: str) -> dict[tuple[str, str], Receipt]:
    """One receipt per (fleet, device_id) naming the batch's run_ids and window_ids (as run_ids)
    and its final job acks."""
    run_ids: dict[tuple[str, str], list[Any]] = {}
    job_ids: dict[tuple[str, str], list[str]] = {}
    for result in batch.results:
        run_ids.setdefault((result.fleet, result.device_id), []).append(result.run_id)
    for window in batch.windows:  # a monitor window's id releases it from the agent's spool too
        run_ids.setdefault((window.fleet, window.device_id), []).append(window.window_id)
    for ack in batch.final_acks:
        job_ids.setdefault((ack.fleet, ack.device_id), []).append(ack.job_id)
    return {
        device: Receipt(run_ids=list(dict.fromkeys(run_ids.get(device, ()))),
                        job_ids=list(dict.fromkeys(job_ids.get(device, ()))),
                        stored_at=batch.stored_at, collector=collector)
        for device in dict.fromkeys([*run_ids, *job_ids])
    }


class Announcer:
    """Receipts, the collector's status, events and metrics; see the module docstring."""

    def __init__(
        self,
        client_id: str,
        *,
        publisher: Publisher,
        metrics: CollectorMetrics,
        events: EventBus,
        store: Store,
        backlog: Callable[[], int],
        outage: Callable[[], Outage],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``backlog`` says how many messages are held unacknowledged, ``outage`` how the store
        is; both are read when a status is published."""
        self.client_id = client_id
        self.status_topic = status_topic(client_id)
        """``None`` when the client id cannot be a topic level: then no status is published."""
        self.metrics = metrics
        self.events = events
        self._publisher = publisher
        self._store = store
        self._backlog = backlog
        self._outage = outage
        self._clock = clock
        self._status_lock = threading.Lock()
        self._online_lock = threading.Lock()
        self._online_cache: tuple[float, float] | None = None  # (read at, devices online)
        metrics.devices_online.set_function(self._devices_online)
        metrics.backlog.set_function(backlog)  # read when scraped, not set on every message

    # -- status --------------------------------------------------------------------------------

    def status_payload(self, state: CollectorState | None = None, *, sent: bool = True) -> bytes:
        """The status document for ``state`` (default: ``online`` or ``store-down``, as the
        store is now); ``sent=False`` leaves ``sent_at`` out (the Last Will)."""
        outage = self._outage()
        if state is None:
            state = "store-down" if outage.down else "online"
        status = CollectorStatus(
            collector=self.client_id, state=state, since=outage.since,
            sent_at=_utc_now() if sent else None,
            error=outage.error[:400] or None if state == "store-down" else None,
            backlog=self._backlog(),
        )
        return status.model_dump_json().encode()

    def publish_status(self, state: CollectorState | None = None) -> None:
        """Publish the collector's retained status (default: as the store is now)."""
        if self.status_topic is None:
            return
        with self._status_lock:  # read and queued together: the last one sent is the newest
            try:
                self._publisher.announce(self.status_topic, self.status_payload(state),
                                         retain=True)
            except BrokerError as err:  # informative only; never let it stop ingest
                logger.debug("could not publish the collector status: %s", err)

    def outage_changed(self) -> None:
        self.metrics.store_outage.set(1 if self._outage().down else 0)
        self.publish_status()

    # -- what the writer committed -------------------------------------------------------------

    def committed(self, batch: Committed) -> None:
        """Metrics, then receipts, then log lines and events for a committed batch."""
        results = batch.results
        metrics = self.metrics
        if results:
            metrics.commit_seconds.observe(batch.commit_s)
            metrics.batch_size.observe(len(results))
            metrics.stored.inc(batch.new)
            metrics.duplicates.inc(len(results) - batch.new)
            for result in results:
                lag_s = (batch.stored_at - result.created_at).total_seconds()
                metrics.ingest_lag.observe(max(lag_s, 0.0))
        self._send_receipts(batch)
        if logger.isEnabledFor(logging.INFO):
            for result in results:
                logger.info("stored %s from %s/%s (%s)", result.run_id, result.fleet,
                            result.device_id, result.model.name)
            for ack in batch.final_acks:
                logger.info("job %s of %s/%s is %s", ack.job_id, ack.fleet, ack.device_id,
                            ack.state)
        if self.events.active:
            for result in results:
                self.events.publish("result", result_summary(result))
            for window in batch.windows:
                self.events.publish("monitor", window_event(window))

    def _send_receipts(self, batch: Committed) -> None:
        for (fleet, device_id), receipt in receipts(batch, self.client_id).items():
            try:
                self._publisher.announce(Topics.build(fleet, device_id, TopicKind.RECEIPT),
                                         receipt.model_dump_json().encode())
            except BrokerError as err:  # no receipt: the agent re-sends, the store dedups
                logger.warning("could not send a receipt to %s/%s: %s", fleet, device_id, err)

    def recorded(self, message: Record) -> None:
        if isinstance(message, Telemetry):
            self.metrics.agent_spool(message.fleet, message.device_id, message.spool_depth)
        if self.events.active:
            self.events.publish(_EVENT_KINDS[type(message)], message.model_dump(mode="json"))

    def dead_lettered(self, topic: str, rejection: Rejection) -> None:
        self.metrics.dead_letter(rejection.code)
        logger.info("dead letter from %s: %s", topic, rejection.reason)

    def store_retried(self) -> None:
        self.metrics.store_retries.inc()

    # -- network thread ------------------------------------------------------------------------

    def progress(self, topic: str, payload: bytes) -> None:
        """Relay a progress message to the event bus (never stored); count an invalid one."""
        outcome = read(topic, payload)
        if isinstance(outcome, Progress):
            if self.events.active:
                self.events.publish("progress", outcome.model_dump(mode="json"))
            return
        self.metrics.progress_rejected.inc()
        logger.debug("ignored a progress message: %s", outcome)

    # -- scrapes -------------------------------------------------------------------------------

    def _devices_online(self) -> float:
        """Devices whose stored status is online, read from the store at most every
        :data:`DEVICES_ONLINE_TTL_S`; NaN while the store cannot say."""
        with self._online_lock:
            now_s = self._clock()
            cached = self._online_cache
            if cached is not None and now_s - cached[0] < DEVICES_ONLINE_TTL_S:
                return cached[1]
            try:
                devices = self._store.list_devices()
                online = float(sum(1 for d in devices if d.status == "online"))
            except StoreError as err:  # a scrape must not fail because the store does
                logger.debug("could not count the devices online: %s", err)
                online = float("nan")
            self._online_cache = (now_s, online)
            return online

