"""The collector's own metrics, on a Prometheus registry the service owns (never the global one).

:class:`CollectorMetrics` is made by whoever runs the service and passed in, so each test makes
its own and the HTTP server serves ``metrics.registry`` at ``/metrics``. Names carry the
``edgemeter_collector_`` prefix, counters end in ``_total``, durations in ``_seconds``. No label
holds a run id, device id or anything else unbounded: ``kind`` is a topic kind the collector
reads and ``reason`` a :class:`collector.ingest.Rejection` code, both fixed sets.

========================================================  =========  ===========================
name                                                      type       what
========================================================  =========  ===========================
edgemeter_collector_messages_received_total{kind}         counter    MQTT messages received
edgemeter_collector_results_stored_total                  counter    results new to the store
edgemeter_collector_results_duplicate_total               counter    results the store had
edgemeter_collector_dead_letters_total{reason}            counter    payloads kept as dead letters
edgemeter_collector_progress_rejected_total               counter    invalid progress (not stored)
edgemeter_collector_store_retries_total                   counter    store writes retried
edgemeter_collector_store_outage                          gauge      1 while the store fails
edgemeter_collector_backlog_messages                      gauge      received, not yet acknowledged
edgemeter_collector_batch_messages                        histogram  messages per store batch
edgemeter_collector_commit_seconds                        histogram  time to commit one batch
edgemeter_collector_ingest_lag_seconds                    histogram  result ``created_at`` to stored
edgemeter_collector_devices_online                        gauge      devices whose status is online
edgemeter_collector_agent_spool_depth                     gauge      results waiting in agents'
                                                                     spools (latest telemetry, sum)
edgemeter_collector_broker_disconnects_total              counter    connections the broker
                                                                     dropped (not the collector's
                                                                     own stop)
edgemeter_collector_session_takeovers_total               counter    of those, by another client
                                                                     with the collector's client
                                                                     id (MQTT v5 reason code 142)
edgemeter_collector_untracked_devices_total               counter    telemetry of devices past
                                                                     ``max_devices`` (not summed)
========================================================  =========  ===========================

The spool gauge sums one figure per (fleet, device); at most ``max_devices`` of them are kept
(``[ingest] metrics_max_devices``), so devices (or fleets) invented by a board cannot grow the
collector's memory or the gauge without bound.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DEAD_LETTER_REASONS", "DEFAULT_MAX_DEVICES", "MESSAGE_KINDS", "CollectorMetrics"]

DEFAULT_MAX_DEVICES = 10_000
"""(fleet, device) pairs whose spool depth the gauge sums, at most."""

MESSAGE_KINDS = ("result", "status", "telemetry", "progress", "ack", "monitor")
DEAD_LETTER_REASONS = (
    "too-large", "topic", "not-utf8", "not-json", "not-object", "schema-version", "invalid",
    "unstorable", "mismatch", "duplicate-key", "error",
)
"""The codes of :class:`collector.ingest.Rejection`; any other is counted as ``error``."""

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                3600.0, 86_400.0)


class CollectorMetrics:
    """Every collector metric, registered on :attr:`registry` (a new one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 max_devices: int = DEFAULT_MAX_DEVICES) -> None:
        self.max_devices = max_devices
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = Counter("edgemeter_collector_messages_received_total",
                                "MQTT messages received, by topic kind", ["kind"], registry=r)
        self.stored = Counter("edgemeter_collector_results_stored_total",
                              "Results new to the store", registry=r)
        self.duplicates = Counter("edgemeter_collector_results_duplicate_total",
                                  "Results received again that the store already had", registry=r)
        self.dead_letters = Counter("edgemeter_collector_dead_letters_total",
                                    "Payloads that can never be stored, kept as dead letters",
                                    ["reason"], registry=r)
        self.progress_rejected = Counter("edgemeter_collector_progress_rejected_total",
                                         "Invalid progress messages (never stored)", registry=r)
        self.store_retries = Counter("edgemeter_collector_store_retries_total",
                                     "Store writes tried again after a failure", registry=r)
        self.store_outage = Gauge("edgemeter_collector_store_outage",
                                  "1 while the store refuses writes, else 0", registry=r)
        self.backlog = Gauge("edgemeter_collector_backlog_messages",
                             "Messages received and not yet acknowledged", registry=r)
        self.batch_size = Histogram("edgemeter_collector_batch_messages",
                                    "Messages written per store batch", buckets=_BATCH_BUCKETS,
                                    registry=r)
        self.commit_seconds = Histogram("edgemeter_collector_commit_seconds",
                                        "Seconds to commit one batch of results",
                                        buckets=_COMMIT_BUCKETS, registry=r)
        self.ingest_lag = Histogram("edgemeter_collector_ingest_lag_seconds",
                                    "Seconds from a result's created_at to its commit",
                                    buckets=_LAG_BUCKETS, registry=r)
        self.devices_online = Gauge("edgemeter_collector_devices_online",
                                    "Devices whose latest status is online", registry=r)
        self.spool_depth = Gauge("edgemeter_collector_agent_spool_depth",
                                 "Results waiting in agents' spools (sum of the latest telemetry)",
                                 registry=r)
        self.broker_disconnects = Counter(
            "edgemeter_collector_broker_disconnects_total",
            "Connections to the broker lost (not the collector's own stop)", registry=r)
        self.session_takeovers = Counter(
            "edgemeter_collector_session_takeovers_total",
            "Sessions taken over by another client with the collector's client id "
            "(MQTT v5 reason code 142)", registry=r)
        self.untracked = Counter("edgemeter_collector_untracked_devices_total",
                                 "Telemetry from devices past the tracked maximum (not summed)",
                                 registry=r)
        for kind in MESSAGE_KINDS:
            self.received.labels(kind=kind)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)
        self._lock = threading.Lock()
        self._spools: dict[tuple[str, str], int] = {}

    def dead_letter(self, reason: str) -> None:
        """Count one dead letter under its rejection code (an unknown code counts as ``error``)."""
        self.dead_letters.labels(reason=reason if reason in DEAD_LETTER_REASONS else "error").inc()

    def agent_spool(self, fleet: str, device_id: str, depth: int) -> None:
        """Record a device's latest spool depth; the gauge is the sum over devices."""
        key = (fleet, device_id)
        with self._lock:
            if key not in self._spools and len(self._spools) >= self.max_devices:
                untracked = True
            else:
                untracked = False
                self._spools[key] = depth
            total = sum(self._spools.values())
        if untracked:
            self.untracked.inc()
        self.spool_depth.set(total)
