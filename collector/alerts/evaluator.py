"""Evaluating the alert rules: per device, a value per metric, a condition, a ``for_s``.

Each pass (:meth:`AlertEvaluator.evaluate`) reads what it needs from the store: the devices
(presence, ``last_seen`` and newest telemetry) and the monitor windows that ended since the last
pass (it keeps each monitor's newest window itself, so a pass reads only what is new). For each
rule and each device its ``devices`` selector picks, the metric's value is:

==================  ===============================================================================
``p99_ms``          the newest monitor window's p99 (with several monitors: the worst one for the
``p50_ms``          rule's direction); only windows that ended within :data:`FRESH_WINDOW_S`
``throughput_sps``  same, throughput
``temperature_c``   the hottest sensor of the newest telemetry
``throttled``       1 when the newest telemetry says throttled, else 0
``spool_depth``     the newest telemetry's spool depth
``offline_s``       seconds since the device was last heard from (``last_seen``)
``monitor_silent_s`` seconds since the newest window of any of the device's monitors (devices that
                    never sent one have no value)
``throughput_ratio_24h`` the newest window's throughput over the median throughput of that
                    monitor's windows that ended in the last 24 h (with several monitors: the
                    worst for the rule's direction); ``op = "<"``, ``threshold = 0.8`` is
                    "throughput below 80 % of its own 24 h median". The medians are read for the
                    devices such rules select, at most every :data:`MEDIAN_REFRESH_S`.
==================  ===============================================================================

No value (nothing measured) means the condition does not hold. A condition that holds is
*pending* until it has held ``for_s`` seconds (by the injected clock), then *firing*: the alert is
stored (:meth:`collector.stores.history.HistoryMixin.open_alert`), published as an ``alert``
event and handed to the sink. When it stops holding the alert is *resolved* the same way. Firing
alerts are handed to the sink on every pass as well (Alertmanager forgets an alert not re-sent
within its resolve timeout).

The evaluator owns its state (pending conditions, firing alerts, newest windows); one thread
calls it. Firing alerts found in the store at start are taken over, so a restart neither repeats
nor forgets them.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from collector.monitoring_settings import AlertRule
from collector.records import DeviceRecord

if TYPE_CHECKING:
    from collector.stores.history import AlertRecord

__all__ = ["FRESH_WINDOW_S", "MEDIAN_REFRESH_S", "AlertEvaluator", "AlertSink",
           "Transition"]

logger = logging.getLogger(__name__)

FRESH_WINDOW_S = 300.0
"""Window metrics come from windows that ended at most this long ago."""
_WINDOW_METRICS = {"p99_ms", "p50_ms", "throughput_sps"}
RATIO_METRIC = "throughput_ratio_24h"
MEDIAN_SPAN = timedelta(hours=24)
MEDIAN_REFRESH_S = 300.0
"""The 24 h medians move slowly: they are read again after this many seconds (or for a device
not read yet), not on every pass."""


@dataclass(frozen=True)
class Transition:
    """An alert that fired or resolved in a pass (or is still firing: ``state`` ``firing``)."""

    alert_id: int
    rule: AlertRule
    device_id: str
    fleet: str
    state: str
    """``firing`` or ``resolved``"""
    value: float | None
    started_at: datetime
    resolved_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.alert_id, "rule": self.rule.name, "device_id": self.device_id,
                "fleet": self.fleet, "state": self.state, "metric": self.rule.metric,
                "op": self.rule.op, "threshold": self.rule.threshold, "value": self.value,
                "severity": self.rule.severity, "started_at": self.started_at.isoformat(),
                "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None}


class AlertSink(Protocol):
    """Where alerts go besides the store and the event bus (Alertmanager)."""

    def send(self, alerts: Sequence[Transition]) -> None: ...


class AlertStore(Protocol):
    """What the evaluator reads and writes: a part of :class:`collector.stores.base.Store`."""

    def list_devices(self, *, fleet: str | None = None) -> list[DeviceRecord]: ...

    def window_figures(self, since: datetime) -> list[dict[str, Any]]: ...

    def newest_windows(self) -> dict[tuple[str, str], tuple[datetime, str]]: ...

    def window_throughputs(self, device_ids: Sequence[str], *, since: datetime,
                           until: datetime) -> dict[tuple[str, str], list[float]]: ...

    def open_alert(self, *, rule: str, device_id: str, fleet: str, severity: str, metric: str,
                   op: str, threshold: float, value: float | None, at: datetime) -> int: ...

    def resolve_alert(self, alert_id: int, *, at: datetime, value: float | None = None) -> None: ...

    def list_alerts(self, *, state: str | None = None, device_id: str | None = None,
                    limit: int = 500) -> Sequence[AlertRecord]: ...


Publish = Callable[[str, dict[str, Any]], None]


def _select(devices: list[DeviceRecord], selector: str) -> list[DeviceRecord]:
    if selector.strip() == "*":
        return devices
    # shared.selector's grammar, read off device rows as the API's job form reads them
    from collector.http.fleet import select_devices

    return select_devices(devices, selector)


class AlertEvaluator:
    """Evaluates ``rules`` against ``store`` at the time ``clock`` gives (see the module docs)."""

    def __init__(self, rules: Sequence[AlertRule], store: AlertStore, *,
                 clock: Callable[[], datetime], sink: AlertSink | None = None,
                 publish: Publish | None = None) -> None:
        self.rules = list(rules)
        self.store = store
        self._clock = clock
        self._sink = sink
        self._publish = publish
        self._pending: dict[tuple[str, str], datetime] = {}
        self._firing: dict[tuple[str, str], Transition] = {}
        #: (device_id, monitor name) -> newest window's figures
        self._windows: dict[tuple[str, str], dict[str, Any]] = {}
        self._windows_read_to: datetime | None = None
        self._silent_since: dict[str, datetime] = {}
        #: (device_id, monitor name) -> median window throughput over the last 24 h
        self._medians: dict[tuple[str, str], float] = {}
        self._medians_read_at: datetime | None = None
        self._medians_for: set[str] = set()
        self._took_over = False

    @property
    def firing(self) -> list[Transition]:
        return list(self._firing.values())

    def evaluate(self) -> list[Transition]:
        """One pass; returns the alerts that fired or resolved in it."""
        now = self._clock()
        if not self._took_over:
            self._take_over()
        self._read_windows(now)
        devices = self.store.list_devices()
        self._read_medians(devices, now)
        changed: list[Transition] = []
        for rule in self.rules:
            for device in _select(devices, rule.devices):
                value = self._value(rule, device, now)
                key = (rule.name, device.device_id)
                if value is not None and rule.holds(value):
                    since = self._pending.setdefault(key, now)
                    if key not in self._firing and (now - since).total_seconds() >= rule.for_s:
                        changed.append(self._fire(rule, device, value, now))
                else:
                    self._pending.pop(key, None)
                    if key in self._firing:
                        changed.append(self._resolve(key, value, now))
        if self._sink is not None and (changed or self._firing):
            resolved = [t for t in changed if t.state == "resolved"]
            try:
                self._sink.send([*self._firing.values(), *resolved])
            except Exception as err:  # the sink says why once; the next pass sends again
                logger.debug("alert sink failed: %s", err)
        return changed

    # -- values ----------------------------------------------------------------------------------

    def _value(self, rule: AlertRule, device: DeviceRecord, now: datetime) -> float | None:
        metric = rule.metric
        telemetry = device.telemetry
        if metric in _WINDOW_METRICS:
            fresh = now - timedelta(seconds=FRESH_WINDOW_S)
            values = [w[metric] for (dev, _), w in self._windows.items()
                      if dev == device.device_id and w["end_at"] >= fresh
                      and w[metric] is not None]
            if not values:
                return None
            return max(values) if rule.op == ">" else min(values)
        if metric == RATIO_METRIC:
            fresh = now - timedelta(seconds=FRESH_WINDOW_S)
            ratios = [w["throughput_sps"] / self._medians[key]
                      for key, w in self._windows.items()
                      if key[0] == device.device_id and w["end_at"] >= fresh
                      and w["throughput_sps"] is not None and self._medians.get(key)]
            if not ratios:
                return None
            return max(ratios) if rule.op == ">" else min(ratios)
        if metric == "offline_s":
            return max((now - device.last_seen).total_seconds(), 0.0)
        if metric == "monitor_silent_s":
            ends = [w["end_at"] for (dev, _), w in self._windows.items()
                    if dev == device.device_id]
            return max((now - max(ends)).total_seconds(), 0.0) if ends else None
        if telemetry is None:
            return None
        if metric == "temperature_c":
            return max(telemetry.temps_c.values()) if telemetry.temps_c else None
        if metric == "throttled":
            return None if telemetry.throttled is None else float(telemetry.throttled)
        if metric == "spool_depth":
            return float(telemetry.spool_depth)
        raise ValueError(f"unknown metric {metric!r}")

    def _read_medians(self, devices: list[DeviceRecord], now: datetime) -> None:
        """The 24 h median throughput of each monitor of the devices ratio rules select."""
        wanted = {d.device_id for rule in self.rules if rule.metric == RATIO_METRIC
                  for d in _select(devices, rule.devices)}
        if not wanted:
            return
        stale = (self._medians_read_at is None
                 or (now - self._medians_read_at).total_seconds() >= MEDIAN_REFRESH_S)
        missing = wanted - self._medians_for
        if not stale and not missing:
            return
        ids = wanted if stale else missing
        throughputs = self.store.window_throughputs(sorted(ids), since=now - MEDIAN_SPAN,
                                                    until=now)
        if stale:
            self._medians = {k: v for k, v in self._medians.items() if k[0] not in ids}
            self._medians_for = set()
            self._medians_read_at = now
        self._medians.update({key: statistics.median(values)
                              for key, values in throughputs.items() if values})
        self._medians_for |= ids

    def _read_windows(self, now: datetime) -> None:
        since = self._windows_read_to
        if since is None:
            newest = self.store.newest_windows()
            for (device_id, name), (end_at, fleet) in newest.items():
                self._windows[(device_id, name)] = {
                    "end_at": end_at, "fleet": fleet, "p50_ms": None, "p99_ms": None,
                    "throughput_sps": None}
            since = now - timedelta(seconds=FRESH_WINDOW_S)
        rows = self.store.window_figures(since)
        for row in rows:
            key = (row["device_id"], row["name"])
            known = self._windows.get(key)
            if known is None or row["end_at"] >= known["end_at"]:
                self._windows[key] = row
        if rows:
            self._windows_read_to = max(row["end_at"] for row in rows)
        elif self._windows_read_to is None:
            self._windows_read_to = since

    # -- transitions -----------------------------------------------------------------------------

    def _take_over(self) -> None:
        rules = {r.name: r for r in self.rules}
        for record in self.store.list_alerts(state="firing", limit=100_000):
            rule = rules.get(record.rule)
            if rule is None:  # a rule no longer configured: resolve it
                self.store.resolve_alert(record.id, at=self._clock())
                continue
            key = (record.rule, record.device_id)
            self._firing[key] = Transition(record.id, rule, record.device_id, record.fleet,
                                           "firing", record.value, record.started_at)
            self._pending[key] = record.started_at
        self._took_over = True

    def _fire(self, rule: AlertRule, device: DeviceRecord, value: float, now: datetime
              ) -> Transition:
        alert_id = self.store.open_alert(
            rule=rule.name, device_id=device.device_id, fleet=device.fleet,
            severity=rule.severity, metric=rule.metric, op=rule.op, threshold=rule.threshold,
            value=value, at=now)
        fired = Transition(alert_id, rule, device.device_id, device.fleet, "firing", value, now)
        self._firing[(rule.name, device.device_id)] = fired
        logger.warning("alert %s firing for %s: %s = %g %s %g", rule.name, device.device_id,
                       rule.metric, value, rule.op, rule.threshold)
        if self._publish is not None:
            self._publish("alert", fired.to_json())
        return fired

    def _resolve(self, key: tuple[str, str], value: float | None, now: datetime) -> Transition:
        fired = self._firing.pop(key)
        self.store.resolve_alert(fired.alert_id, at=now, value=value)
        resolved = Transition(fired.alert_id, fired.rule, fired.device_id, fired.fleet,
                              "resolved", value, fired.started_at, now)
        logger.warning("alert %s resolved for %s", fired.rule.name, fired.device_id)
        if self._publish is not None:
            self._publish("alert", resolved.to_json())
        return resolved
