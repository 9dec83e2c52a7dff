"""Telemetry history, monitor windows and alerts in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from collector.monitoring_settings import HistoryRetention
from collector.stores.sql import SqlStore
from collector.stores.tables import telemetry, telemetry_1m
from shared.monitoring import merge_windows
from tests.collector.conftest import NOW
from tests.factories_monitor import make_telemetry, make_window


def test_every_telemetry_message_is_kept_and_a_repeat_once(clocked: SqlStore) -> None:
    start = NOW - timedelta(minutes=5)
    for n in range(12):
        clocked.record_telemetry(make_telemetry(start + timedelta(seconds=10 * n),
                                                cpu_util_pct=10.0 + n), NOW)
    clocked.record_telemetry(make_telemetry(start, cpu_util_pct=10.0), NOW)  # QoS: again
    with clocked.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(telemetry)).scalar() == 12
        assert conn.execute(select(func.sum(telemetry_1m.c.messages))).scalar() == 12


def test_raw_points_average_each_bucket_and_leave_gaps_null(clocked: SqlStore) -> None:
    start = NOW - timedelta(minutes=10)
    for n, (cpu, temp) in enumerate([(10.0, 50.0), (30.0, 60.0), (50.0, 70.0)]):
        clocked.record_telemetry(make_telemetry(start + timedelta(seconds=10 * n),
                                                cpu_util_pct=cpu, temps_c={"soc": temp},
                                                throttled=n == 2, spool_depth=n), NOW)
    points = clocked.telemetry_points("pi-01", since=start, until=start + timedelta(seconds=59),
                                      step_s=30)
    assert [p["t"] for p in points] == [start.isoformat(),
                                        (start + timedelta(seconds=30)).isoformat()]
    first, second = points
    assert first["cpu_util_pct"] == pytest.approx(30.0)
    assert first["temperature_c"] == pytest.approx(60.0)
    assert first["temperature_c_max"] == pytest.approx(70.0)
    assert first["throttled"] is True and first["spool_depth"] == 2 and first["messages"] == 3
    assert second["cpu_util_pct"] is None and second["messages"] == 0


def test_minute_points_equal_the_raw_average(clocked: SqlStore) -> None:
    start = NOW - timedelta(hours=1)
    values = [float(v % 17) for v in range(360)]  # 1 h at 10 s
    for n, value in enumerate(values):
        clocked.record_telemetry(make_telemetry(start + timedelta(seconds=10 * n),
                                                power_w=value), NOW)
    by_minute = clocked.telemetry_points("pi-01", since=start, until=NOW - timedelta(seconds=1),
                                         step_s=600)
    assert len(by_minute) == 6
    for k, point in enumerate(by_minute):
        chunk = values[60 * k:60 * (k + 1)]
        assert point["power_w"] == pytest.approx(sum(chunk) / len(chunk))
        assert point["messages"] == 60


def test_minute_points_keep_the_highest_and_any_throttle_and_leave_gaps_null(
        clocked: SqlStore) -> None:
    start = NOW - timedelta(minutes=30)
    for n, (temp, throttled, spool) in enumerate([(50.0, False, 1), (72.0, True, 4),
                                                  (55.0, None, 2)]):
        clocked.record_telemetry(make_telemetry(start + timedelta(minutes=3 * n), temps_c={
            "soc": temp}, throttled=throttled, spool_depth=spool), NOW)
    points = clocked.telemetry_points("pi-01", since=start, until=NOW - timedelta(seconds=1),
                                      step_s=600)
    assert [p["messages"] for p in points] == [3, 0, 0]
    first = points[0]
    assert first["temperature_c_max"] == pytest.approx(72.0)
    assert first["temperature_c"] == pytest.approx(59.0)
    assert first["throttled"] is True and first["spool_depth"] == 4
    assert points[1]["temperature_c"] is None and points[1]["throttled"] is None


def test_too_many_points_are_refused(clocked: SqlStore) -> None:
    with pytest.raises(ValueError, match="longer step"):
        clocked.telemetry_points("pi-01", since=NOW - timedelta(days=7), until=NOW, step_s=1)


def test_a_window_is_stored_once_and_served_whole(clocked: SqlStore) -> None:
    windows = [make_window([1.0 + n, 2.0], start=NOW - timedelta(seconds=100 - 10 * n))
               for n in range(5)]
    assert clocked.add_windows(windows) == 5
    assert clocked.add_windows(windows[:2]) == 0
    back = clocked.list_windows("pi-01", since=NOW - timedelta(hours=1), until=NOW)
    assert back == windows
    assert merge_windows(back).queries == 10
    assert clocked.list_windows("pi-01", since=NOW - timedelta(hours=1), until=NOW,
                                name="other") == []


def test_prune_keeps_48_hours_raw_and_90_days_of_minutes(clocked: SqlStore) -> None:
    for age in (timedelta(days=100), timedelta(days=3), timedelta(hours=1)):
        clocked.record_telemetry(make_telemetry(NOW - age, cpu_util_pct=5.0), NOW)
    clocked.add_windows([make_window(start=NOW - timedelta(days=91)),
                         make_window(start=NOW - timedelta(days=1))])
    outcome = clocked.prune_history(HistoryRetention())
    assert (outcome.telemetry_deleted, outcome.telemetry_1m_deleted,
            outcome.windows_deleted) == (2, 1, 1)
    with clocked.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(telemetry)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(telemetry_1m)).scalar() == 2
    week = clocked.telemetry_points("pi-01", since=NOW - timedelta(days=7), until=NOW,
                                    step_s=3600)
    assert sum(p["messages"] for p in week) == 2  # the 3-day-old one lives on as a minute row


def test_an_alert_fires_and_resolves(clocked: SqlStore) -> None:
    alert_id = clocked.open_alert(rule="slow", device_id="pi-01", fleet="default",
                                  severity="warning", metric="p99_ms", op=">", threshold=5.0,
                                  value=9.0, at=NOW)
    assert [a.state for a in clocked.list_alerts(state="firing")] == ["firing"]
    clocked.resolve_alert(alert_id, at=NOW + timedelta(seconds=30), value=2.0)
    assert clocked.list_alerts(state="firing") == []
    (resolved,) = clocked.list_alerts(state="resolved")
    assert resolved.resolved_at == NOW + timedelta(seconds=30)


def test_collector_prune_applies_the_history_retention(sqlite_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timezone

    from edgemeter.cli import main

    store = SqlStore(sqlite_url)
    store.migrate()
    now = datetime.now(timezone.utc)
    for age in (timedelta(hours=72), timedelta(hours=1)):
        store.record_telemetry(make_telemetry(now - age), now)
    store.close()
    assert main(["collector", "prune", "--db", sqlite_url, "--telemetry-raw-hours", "24"]) == 0
    assert "pruned 1 raw telemetry rows" in capsys.readouterr().out
    assert main(["collector", "prune", "--db", sqlite_url, "--windows-days", "0"]) == 2
    assert "must be above 0" in capsys.readouterr().err
