"""Alert rules evaluated on a real store with an injected clock: pending, firing, resolved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from collector.alerts import AlertEvaluator, AlertmanagerSink, Transition
from collector.monitoring_settings import AlertRule, AlertSettings
from collector.stores.sql import SqlStore
from tests.collector.conftest import NOW
from tests.factories_monitor import make_telemetry, make_window


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[list[Transition]] = []

    def send(self, alerts: Sequence[Transition]) -> None:
        self.sent.append(list(alerts))


def slow_rule(**extra: Any) -> AlertRule:
    return AlertRule.model_validate(dict(name="slow", metric="p99_ms", op=">", threshold=10.0,
                                         for_s=30, **extra))


def test_a_p99_alert_fires_after_for_s_and_resolves(clocked: SqlStore) -> None:
    clock, sink, events = Clock(), RecordingSink(), []
    evaluator = AlertEvaluator([slow_rule()], clocked, clock=clock, sink=sink,
                               publish=lambda kind, data: events.append((kind, data)))
    clocked.record_telemetry(make_telemetry(NOW), NOW)
    clocked.add_windows([make_window([20.0] * 100, start=NOW - timedelta(seconds=10))])
    assert evaluator.evaluate() == []  # holds, but not yet for 30 s
    clock.advance(20)
    assert evaluator.evaluate() == []
    clock.advance(10)
    (fired,) = evaluator.evaluate()
    assert (fired.state, fired.device_id, fired.rule.name) == ("firing", "pi-01", "slow")
    assert fired.value == pytest.approx(20.0, rel=0.01)
    assert [a.state for a in clocked.list_alerts(state="firing")] == ["firing"]
    clock.advance(5)
    assert evaluator.evaluate() == []  # still firing: not fired twice
    clocked.add_windows([make_window([2.0] * 100, start=clock.now - timedelta(seconds=5))])
    (resolved,) = evaluator.evaluate()
    assert resolved.state == "resolved" and resolved.resolved_at == clock.now
    assert clocked.list_alerts(state="firing") == []
    assert [e[1]["state"] for e in events] == ["firing", "resolved"]
    assert sink.sent[-1][0].resolved_at == clock.now  # the sink learns the end


def test_a_condition_that_stops_before_for_s_never_fires(clocked: SqlStore) -> None:
    clock = Clock()
    evaluator = AlertEvaluator([slow_rule()], clocked, clock=clock)
    clocked.record_telemetry(make_telemetry(NOW), NOW)
    clocked.add_windows([make_window([20.0], start=NOW - timedelta(seconds=10))])
    evaluator.evaluate()
    clock.advance(20)
    clocked.add_windows([make_window([1.0], start=clock.now - timedelta(seconds=10))])
    evaluator.evaluate()
    clock.advance(20)
    assert evaluator.evaluate() == []
    assert clocked.list_alerts() == []


def test_offline_and_telemetry_metrics_follow_the_selector(clocked: SqlStore) -> None:
    clock = Clock()
    rules = [AlertRule(name="gone", metric="offline_s", op=">", threshold=60, devices="pi-0*"),
             AlertRule(name="hot", metric="temperature_c", op=">", threshold=80,
                       devices="fleet=lab")]
    evaluator = AlertEvaluator(rules, clocked, clock=clock)
    clocked.record_telemetry(make_telemetry(NOW, temps_c={"soc": 85.0}, fleet="lab"), NOW)
    clocked.record_telemetry(make_telemetry(NOW, device_id="other", temps_c={"soc": 99.0}), NOW)
    fired = evaluator.evaluate()
    assert [(t.rule.name, t.device_id) for t in fired] == [("hot", "pi-01")]
    clock.advance(61)
    assert [(t.rule.name, t.device_id) for t in evaluator.evaluate()] == [("gone", "pi-01")]


def test_a_restarted_evaluator_takes_over_firing_alerts(clocked: SqlStore) -> None:
    clock = Clock()
    rule = AlertRule(name="gone", metric="offline_s", op=">", threshold=60)
    clocked.record_telemetry(make_telemetry(NOW), NOW)
    clock.advance(61)
    assert len(AlertEvaluator([rule], clocked, clock=clock).evaluate()) == 1
    again = AlertEvaluator([rule], clocked, clock=clock)
    assert again.evaluate() == [] and len(again.firing) == 1
    assert len(clocked.list_alerts()) == 1


def test_alertmanager_gets_v2_alerts_with_the_four_labels() -> None:
    posted: list[tuple[str, bytes]] = []
    sink = AlertmanagerSink("http://am:9093/", post=lambda url, body: posted.append((url, body)))
    fired = Transition(7, slow_rule(severity="critical"), "pi-01", "lab", "resolved", 3.0,
                       NOW, NOW + timedelta(minutes=1))
    sink.send([fired])
    url, body = posted[0]
    (alert,) = json.loads(body)
    assert url == "http://am:9093/api/v2/alerts"
    assert alert["labels"] == {"alertname": "slow", "device_id": "pi-01", "fleet": "lab",
                               "severity": "critical"}
    assert alert["endsAt"] == "2026-03-15T12:01:00Z"


def test_an_unreachable_alertmanager_never_raises() -> None:
    def refuse(url: str, body: bytes) -> None:
        raise ConnectionRefusedError("refused")

    AlertmanagerSink("http://am:9093", post=refuse).send([Transition(
        1, slow_rule(), "pi-01", "lab", "firing", 20.0, NOW)])


def test_rule_settings_refuse_mistakes() -> None:
    with pytest.raises(ValueError, match="unique"):
        AlertSettings.model_validate({"rules": [slow_rule().model_dump()] * 2})
    with pytest.raises(ValueError):
        AlertRule.model_validate(dict(name="x", metric="p42_ms", op=">", threshold=1))
    with pytest.raises(ValueError, match="http"):
        AlertSettings(alertmanager_url="am:9093")


def test_throughput_below_a_fraction_of_its_own_24h_median_fires_and_resolves(
        clocked: SqlStore) -> None:
    clock = Clock()
    rule = AlertRule(name="slower", metric="throughput_ratio_24h", op="<", threshold=0.8)
    evaluator = AlertEvaluator([rule], clocked, clock=clock)
    clocked.record_telemetry(make_telemetry(NOW), NOW)
    # older than 24 h: 30 windows at 4 samples/s, which would pull the median down to 4
    clocked.add_windows([make_window([1.0] * 40, start=NOW - timedelta(hours=25 + h))
                         for h in range(30)])
    # the last 24 h: one window an hour at 10 samples/s, then the newest at 5
    clocked.add_windows([make_window([1.0] * 100, start=NOW - timedelta(hours=h, seconds=30))
                         for h in range(1, 24)])
    clocked.add_windows([make_window([1.0] * 50, start=NOW - timedelta(seconds=10))])
    (fired,) = evaluator.evaluate()
    assert fired.state == "firing" and fired.value == pytest.approx(0.5)
    clock.advance(10)
    clocked.add_windows([make_window([1.0] * 100, start=clock.now - timedelta(seconds=10))])
    (resolved,) = evaluator.evaluate()
    assert resolved.state == "resolved" and resolved.value == pytest.approx(1.0)


def test_the_throughput_ratio_is_the_worst_monitor_s_against_its_own_median(
        clocked: SqlStore) -> None:
    clock = Clock()
    rule = AlertRule(name="slower", metric="throughput_ratio_24h", op="<", threshold=0.8)
    clocked.record_telemetry(make_telemetry(NOW), NOW)
    for name, day_queries, newest_queries in (("vww", 100, 100), ("kws", 20, 10)):
        clocked.add_windows([make_window([1.0] * day_queries, name=name,
                                         start=NOW - timedelta(hours=h, seconds=30))
                             for h in range(1, 6)])
        clocked.add_windows([make_window([1.0] * newest_queries, name=name,
                                         start=NOW - timedelta(seconds=10))])
    (fired,) = AlertEvaluator([rule], clocked, clock=clock).evaluate()
    assert fired.value == pytest.approx(0.5)  # kws at half its median; vww, faster, at 1.0
