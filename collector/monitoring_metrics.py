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
edgemeter_alerts_firing{alertname}                 firing alerts per rule
edgemeter_device_series_omitted                    devices left out by the cardinality cap
=================================================  =========================================

Cardinality is bounded: at most ``max_devices`` devices (the first by device_id) and
``max_monitors`` monitor series get labels; the rest are counted in
``edgemeter_device_series_omitted``. A store that fails is reported once and the scrape goes on
without these series.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["DeviceMetrics", "register_device_metrics"]

logger = logging.getLogger(__name__)

MAX_DEVICES = 1000
MAX_MONITORS = 2000


class DeviceMetrics(Collector):
    """See the module docstring; ``store`` needs ``list_devices``, ``latest_window_figures`` and
    ``list_alerts``."""

    def __init__(self, store: Any, *, max_devices: int = MAX_DEVICES,
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
        return [*families.values(), p50, p99, sps, end, firing, omitted_family]


def register_device_metrics(registry: CollectorRegistry, store: Any, **kwargs: Any
                            ) -> DeviceMetrics:
    """Register a :class:`DeviceMetrics` over ``store`` on ``registry`` (once per registry)."""
    metrics = DeviceMetrics(store, **kwargs)
    try:
        registry.register(metrics)
    except ValueError:  # already there: a second app on the same registry (tests)
        logger.debug("device metrics already registered on this registry")
    return metrics
