"""Per-device gauges on the collector's ``/metrics``: the newest telemetry and monitor windows.

:class:`DeviceMetrics` is a Prometheus collector registered on the service's registry
(:func:`register_device_metrics`, called by the HTTP app). On a scrape it reads the store (at
most every ``ttl_s``: a scraper polling fast costs one read per ``ttl_s``) and yields:

=================================================  =========================================
name                                               what
=================================================  =========================================
edgemeter_device_temperature_celsius{device_id,     hottest sensor, newest telemetry
fleet}
edgemeter_device_cpu_util_percent{...}             CPU use, newest telemetry
edgemeter_device_power_watts{...}                  power, newest telemetry
edgemeter_device_throttled{...}                    1 while throttled, else 0
edgemeter_device_spool_depth{...}                  results waiting in the device's spool
edgemeter_device_last_seen_timestamp_seconds{...}  when the device was last heard from
edgemeter_monitor_latency_p50_seconds{device_id,   newest window of each monitor
fleet,monitor}
edgemeter_monitor_latency_p99_seconds{...}         newest window of each monitor
edgemeter_monitor_throughput_sps{...}              newest window of each monitor
edgemeter_monitor_window_end_timestamp_seconds     end of each monitor's newest window
edgemeter_monitor_latency_seconds{device_id,       histogram of every query of every window
fleet,monitor,le}                                  stored since the collector started
edgemeter_alerts_firing{alertname}                 firing alerts per rule
edgemeter_device_series_omitted                    devices left out by the cardinality cap
=================================================  =========================================

The latency histogram is a Prometheus counter histogram (``_bucket``, ``_sum``, ``_count``) over
the fixed :data:`LATENCY_BUCKETS_S`: each scrape reads the windows stored since the last one
(:meth:`collector.stores.history.HistoryMixin.windows_after`) and adds their log-bucket histograms
in (each bucket counted at its value, within the windows' 1 %), so
``histogram_quantile(0.99, rate(edgemeter_monitor_latency_seconds_bucket[5m]))`` is any span's p99
across windows. It counts from the collector's start (a restart is a counter reset).

Cardinality is bounded: at most ``max_devices`` devices (the first by device_id) and
``max_monitors`` monitor series get labels, histograms included; the rest are counted in
``edgemeter_device_series_omitted``. A store that fails is reported once and the scrape goes on
without these series.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.stores.base import Store

__all__ = ["DeviceMetrics", "register_device_metrics"]

logger = logging.getLogger(__name__)

MAX_DEVICES = 1000
MAX_MONITORS = 2000
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the histogram's buckets (then +Inf): edge inference from 0.1 ms to 10 s."""
WINDOWS_PER_SCRAPE = 20_000
"""Windows read per scrape at most; a backlog is read on at the next ones."""

SeriesKey = tuple[str, str, str]


@dataclass
class _LatencyCounts:
    """One series' cumulative histogram: counts per bucket (the last is +Inf), sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def add(self, occupied_ns: list[tuple[float, int]]) -> None:
        for value_ns, count in occupied_ns:
            value_s = value_ns / 1e9
            self.buckets[bisect_left(LATENCY_BUCKETS_S, value_s)] += count
            self.sum_s += value_s * count

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), self.buckets, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class DeviceMetrics(Collector):
    """See the module docstring; ``store`` needs ``list_devices``, ``latest_window_figures``,
    ``windows_after`` and ``list_alerts``. The histograms' counts are this object's, kept under
    its lock by whichever scrape reads."""

    def __init__(self, store: Store, *, max_devices: int = MAX_DEVICES,
                 max_monitors: int = MAX_MONITORS, ttl_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.max_devices = max_devices
        self.max_monitors = max_monitors
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at: float | None = None
        self._failing = False
        self._latency: dict[SeriesKey, _LatencyCounts] = {}
        self._windows_read_to: int | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.ttl_s:
                try:
                    self._cached = self._read()
                    self._failing = False
                except Exception as err:  # a scrape never fails for the store's sake
                    if not self._failing:
                        logger.warning("/metrics: cannot read device figures (%s)", err)
                    self._failing = True
                    self._cached = []
                self._read_at = now
            yield from self._cached

    def _read(self) -> list[Metric]:
        devices = sorted(self._store.list_devices(), key=lambda d: d.device_id)
        omitted = max(0, len(devices) - self.max_devices)
        labels = ["device_id", "fleet"]
        families = {
            "temperature": GaugeMetricFamily("edgemeter_device_temperature_celsius",
                                             "Hottest sensor in the newest telemetry",
                                             labels=labels),
            "cpu": GaugeMetricFamily("edgemeter_device_cpu_util_percent",
                                     "CPU use in the newest telemetry", labels=labels),
            "power": GaugeMetricFamily("edgemeter_device_power_watts",
                                       "Power in the newest telemetry", labels=labels),
            "throttled": GaugeMetricFamily("edgemeter_device_throttled",
                                           "1 while the newest telemetry says throttled",
                                           labels=labels),
            "spool": GaugeMetricFamily("edgemeter_device_spool_depth",
                                       "Results waiting in the device's spool", labels=labels),
            "seen": GaugeMetricFamily("edgemeter_device_last_seen_timestamp_seconds",
                                      "When the device was last heard from (Unix time)",
                                      labels=labels),
        }
        for device in devices[:self.max_devices]:
            key = [device.device_id, device.fleet]
            families["seen"].add_metric(key, device.last_seen.timestamp())
            t = device.telemetry
            if t is None:
                continue
            if t.temps_c:
                families["temperature"].add_metric(key, max(t.temps_c.values()))
            if t.cpu_util_pct is not None:
                families["cpu"].add_metric(key, t.cpu_util_pct)
            if t.power_w is not None:
                families["power"].add_metric(key, t.power_w)
            if t.throttled is not None:
                families["throttled"].add_metric(key, float(t.throttled))
            families["spool"].add_metric(key, float(t.spool_depth))
        kept = {d.device_id for d in devices[:self.max_devices]}
        mlabels = ["device_id", "fleet", "monitor"]
        p50 = GaugeMetricFamily("edgemeter_monitor_latency_p50_seconds",
                                "p50 latency of each monitor's newest window", labels=mlabels)
        p99 = GaugeMetricFamily("edgemeter_monitor_latency_p99_seconds",
                                "p99 latency of each monitor's newest window", labels=mlabels)
        sps = GaugeMetricFamily("edgemeter_monitor_throughput_sps",
                                "Throughput of each monitor's newest window", labels=mlabels)
        end = GaugeMetricFamily("edgemeter_monitor_window_end_timestamp_seconds",
                                "End of each monitor's newest window (Unix time)", labels=mlabels)
        monitors = [w for w in self._store.latest_window_figures() if w["device_id"] in kept]
        for window in monitors[:self.max_monitors]:
            key = [window["device_id"], window["fleet"], window["name"]]
            end.add_metric(key, window["end_at"].timestamp())
            if window["p50_ms"] is not None:
                p50.add_metric(key, window["p50_ms"] / 1e3)
            if window["p99_ms"] is not None:
                p99.add_metric(key, window["p99_ms"] / 1e3)
            if window["throughput_sps"] is not None:
                sps.add_metric(key, window["throughput_sps"])
        kept_series = {(w["device_id"], w["fleet"], w["name"])
                       for w in monitors[:self.max_monitors]}
        histogram = self._latency_histogram(kept_series)
        firing = GaugeMetricFamily("edgemeter_alerts_firing", "Firing alerts per rule",
                                   labels=["alertname"])
        per_rule: dict[str, int] = {}
        for alert in self._store.list_alerts(state="firing", limit=100_000):
            per_rule[alert.rule] = per_rule.get(alert.rule, 0) + 1
        for rule, count in sorted(per_rule.items()):
            firing.add_metric([rule], count)
        omitted_family = GaugeMetricFamily(
            "edgemeter_device_series_omitted",
            "Devices and monitors left without series by the cardinality cap",
            value=omitted + max(0, len(monitors) - self.max_monitors))
        return [*families.values(), p50, p99, sps, end, histogram, firing, omitted_family]

    def _latency_histogram(self, kept: set[SeriesKey]) -> HistogramMetricFamily:
        """Add the windows stored since the last read into the kept series' counts."""
        self._windows_read_to, windows = self._store.windows_after(
            self._windows_read_to, limit=WINDOWS_PER_SCRAPE)
        for gone in set(self._latency) - kept:
            del self._latency[gone]
        for window in windows:
            key = (window.device_id, window.fleet, window.name)
            if key in kept and window.latencies is not None:
                self._latency.setdefault(key, _LatencyCounts()).add(
                    window.latencies.occupied_ns())
        family = HistogramMetricFamily(
            "edgemeter_monitor_latency_seconds",
            "Latency of every query in the monitor windows stored since the collector started",
            labels=["device_id", "fleet", "monitor"])
        for key, counts in sorted(self._latency.items()):
            family.add_metric(list(key), counts.cumulative(), counts.sum_s)
        return family


def register_device_metrics(registry: CollectorRegistry, store: Store, **kwargs: Any
                            ) -> DeviceMetrics:
    """Register a :class:`DeviceMetrics` over ``store`` on ``registry`` (once per registry)."""
    metrics = DeviceMetrics(store, **kwargs)
    try:
        registry.register(metrics)
    except ValueError:  # already there: a second app on the same registry (tests)
        logger.debug("device metrics already registered on this registry")
    return metrics
