"""Settings of the collector's monitoring side: ``[history]`` retention and ``[alerts]`` rules.

Both are tables of the collector's config file (:class:`collector.config.CollectorSettings`)::

    [history]
    telemetry_raw_h = 48        # every telemetry message
    telemetry_1m_days = 90      # 1-minute aggregates
    monitor_windows_days = 90
    alerts_days = 90            # resolved alerts

    [alerts]
    alertmanager_url = "http://127.0.0.1:9093"   # optional: also send alerts there (API v2)
    evaluate_every_s = 5

    [[alerts.rules]]
    name = "slow-vww"
    metric = "p99_ms"           # see METRICS
    op = ">"
    threshold = 25.0
    for_s = 30                  # holds this long before it fires
    devices = "fleet=lab"       # the selector of `edgemeter fleet run`; "*" is every device
    severity = "warning"

    [[alerts.rules]]
    name = "slower-than-usual"
    metric = "throughput_ratio_24h"   # newest window / that monitor's 24 h median throughput
    op = "<"
    threshold = 0.8                   # below 80 % of its own median

Retention is applied by ``edgemeter collector prune`` (its flags override the defaults here).
This module imports only pydantic, so the CLI can show the defaults cheaply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shared.settings import SettingsTable

__all__ = ["METRICS", "AlertRule", "AlertSettings", "HistoryRetention"]

METRICS: dict[str, str] = {
    "p99_ms": "p99 latency of the newest monitor window (ms)",
    "p50_ms": "p50 latency of the newest monitor window (ms)",
    "throughput_sps": "throughput of the newest monitor window (samples/s)",
    "temperature_c": "hottest sensor in the newest telemetry (deg C)",
    "throttled": "1 while the newest telemetry says throttled, else 0",
    "offline_s": "seconds since the device was last heard from",
    "spool_depth": "results waiting in the device's spool (newest telemetry)",
    "monitor_silent_s": "seconds since the newest window of any monitor of the device",
    "throughput_ratio_24h": "newest window's throughput / that monitor's 24 h median "
    "(< 0.8: below 80 % of its own median)",
}
"""What a rule can watch, per device."""


class HistoryRetention(SettingsTable):
    """``[history]``: how long telemetry, monitor windows and resolved alerts are kept."""

    telemetry_raw_h: float = Field(48.0, gt=0, description="raw telemetry (every message), hours")
    telemetry_1m_days: float = Field(90.0, gt=0, description="1-minute telemetry aggregates, days")
    monitor_windows_days: float = Field(90.0, gt=0, description="monitor windows, days")
    alerts_days: float = Field(90.0, gt=0, description="resolved alerts, days")


class AlertRule(SettingsTable):
    """One ``[[alerts.rules]]`` table: fire for a device while ``metric op threshold`` has held
    for ``for_s`` seconds; resolve when it stops holding."""

    name: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="the alert's name")
    metric: Literal["p99_ms", "p50_ms", "throughput_sps", "temperature_c", "throttled",
                    "offline_s", "spool_depth", "monitor_silent_s", "throughput_ratio_24h"]
    op: Literal[">", "<"]
    threshold: float
    for_s: float = Field(0.0, ge=0, description="the condition holds this long before firing")
    devices: str = Field("*", min_length=1,
                         description="device selector: ids or globs, fleet=NAME, board=TEXT")
    severity: str = Field("warning", pattern=r"^[a-z]{1,16}$")

    def holds(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value < self.threshold


class AlertSettings(SettingsTable):
    """``[alerts]``: the rules, how often they are evaluated, and where alerts go."""

    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL (http://host:9093); alerts go to its v2 API")
    evaluate_every_s: float = Field(5.0, gt=0, le=3600, description="evaluate the rules this often")
    rules: list[AlertRule] = Field(
        default_factory=list, description="the rules: [[alerts.rules]] tables with name, metric "
        "(p99_ms p50_ms throughput_sps temperature_c throttled offline_s spool_depth "
        "monitor_silent_s throughput_ratio_24h), op (> or <), threshold, for_s, devices, severity")

    @field_validator("alertmanager_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:9093")
        return value.rstrip("/") if value else value

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AlertRule]) -> list[AlertRule]:
        names = [r.name for r in rules]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"rule names must be unique: {', '.join(doubled)}")
        return rules
