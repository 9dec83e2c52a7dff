"""The monitoring routes: telemetry points, monitor windows (merged exactly), alerts."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from shared.schema import LatencyHistogram
from tests.factories_monitor import make_telemetry, make_window
from tests.http.conftest import Api


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def test_telemetry_comes_back_as_aligned_points(api: Api) -> None:
    now = _now()
    start = now - timedelta(minutes=2)
    writer = api.writer
    for n in range(6):
        writer.record_telemetry(make_telemetry(start + timedelta(seconds=10 * n),
                                               cpu_util_pct=float(n), power_w=2.0), now)
    answer = api.client.get("/api/devices/pi-01/telemetry",
                            params={"since": "3m", "step": 30}).json()
    points = answer["points"]
    assert answer["step_s"] == 30
    times = [datetime.fromisoformat(p["t"]) for p in points]
    assert all(int(t.timestamp()) % 30 == 0 for t in times)
    assert all(b - a == timedelta(seconds=30) for a, b in itertools.pairwise(times))
    assert sum(p["messages"] for p in points) == 6
    assert {p["power_w"] for p in points if p["messages"]} == {2.0}


def test_monitor_windows_are_served_with_histograms_and_merge_per_step(api: Api) -> None:
    now = _now().replace(second=0) - timedelta(minutes=2)
    writer = api.writer
    windows = [make_window([1.0 + n] * 10, start=now + timedelta(seconds=10 * n), job_id="j1")
               for n in range(12)]
    writer.add_windows(windows)
    answer = api.client.get("/api/devices/pi-01/monitor",
                            params={"since": "10m", "name": "vww"}).json()
    got = answer["windows"]
    assert len(got) == 12
    first = got[0]
    assert {"name", "job_id", "start", "end", "queries", "latency_ms",
            "throughput_sps"} <= set(first)
    assert first["latency_ms"]["p99"] == windows[0].latency_ms.p99  # type: ignore[union-attr]
    assert LatencyHistogram.model_validate(first["latencies"]).count == 10
    merged = api.client.get("/api/devices/pi-01/monitor",
                            params={"since": "10m", "step": 60}).json()["windows"]
    assert [w["queries"] for w in merged] == [60, 60]
    assert api.client.get("/api/devices/pi-01/monitor",
                          params={"since": "10m", "name": "nope"}).json()["windows"] == []


def test_alerts_are_listed_by_state(api: Api) -> None:
    writer = api.writer
    first = writer.open_alert(rule="hot", device_id="pi-01", fleet="default", severity="warning",
                              metric="temperature_c", op=">", threshold=80.0, value=85.0,
                              at=_now())
    writer.open_alert(rule="hot", device_id="pi-02", fleet="default", severity="warning",
                      metric="temperature_c", op=">", threshold=80.0, value=81.0, at=_now())
    writer.resolve_alert(first, at=_now())
    firing = api.client.get("/api/alerts", params={"state": "firing"}).json()["alerts"]
    assert [a["device_id"] for a in firing] == ["pi-02"]
    resolved = api.client.get("/api/alerts", params={"state": "resolved"}).json()["alerts"]
    assert [a["device_id"] for a in resolved] == ["pi-01"]


def test_a_bad_time_or_too_many_points_is_a_one_line_400(api: Api) -> None:
    bad = api.client.get("/api/devices/pi-01/telemetry", params={"since": "yesterday"})
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]
    many = api.client.get("/api/devices/pi-01/telemetry", params={"since": "30d", "step": 1})
    assert many.status_code == 400 and "longer step" in many.json()["error"]


def test_metrics_carry_device_and_monitor_gauges_with_a_cardinality_cap(api: Api) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from collector.monitoring_metrics import DeviceMetrics

    now = _now()
    writer = api.writer
    for device in ("pi-01", "pi-02"):
        writer.record_telemetry(make_telemetry(now, device_id=device, temps_c={"soc": 71.5},
                                               throttled=True), now)
    writer.add_windows([make_window([4.0] * 10, start=now - timedelta(seconds=10))])
    text = api.client.get("/metrics").text
    assert 'edgemeter_device_temperature_celsius{device_id="pi-01",fleet="default"} 71.5' in text
    assert 'edgemeter_device_throttled{device_id="pi-02",fleet="default"} 1.0' in text
    assert 'edgemeter_monitor_latency_p99_seconds{device_id="pi-01",fleet="default",' \
           'monitor="vww"}' in text
    capped = CollectorRegistry()
    capped.register(DeviceMetrics(api.reader, max_devices=1))
    out = generate_latest(capped).decode()
    assert 'device_id="pi-02"' not in out and "edgemeter_device_series_omitted 1.0" in out


def test_trends_draw_the_last_hour_and_flag_a_regressed_device(api: Api) -> None:
    now = _now()
    writer = api.writer
    windows = []
    for device, recent_ms in (("steady", 2.0), ("slower", 5.0)):
        for hours_ago in range(2, 20, 2):  # the 24 h baseline
            windows.append(make_window([2.0] * 20, device_id=device,
                                       start=now - timedelta(hours=hours_ago)))
        for minutes_ago in (9, 5, 1):  # the recent windows
            windows.append(make_window([recent_ms] * 20, device_id=device,
                                       start=now - timedelta(minutes=minutes_ago)))
    writer.add_windows(windows)
    body = api.client.get("/api/fleet/trends", params={"devices": "steady,slower,silent"}).json()
    trends = body["devices"]
    assert trends["slower"]["regressed"] is True and trends["steady"]["regressed"] is False
    assert trends["silent"]["regressed"] is False and set(trends["silent"]["p99_ms"]) == {None}
    line = trends["slower"]["p99_ms"]
    assert len(line) == 30 and line[-1] is not None and line[0] is None
    assert api.client.get("/api/fleet/trends",
                          params={"devices": ",".join(f"d{i}" for i in range(201))}
                          ).status_code == 400


def test_metrics_count_window_latencies_in_a_histogram_bounded_by_the_device_cap(
        api: Api) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from collector.monitoring_metrics import DeviceMetrics

    now = _now()
    writer = api.writer
    scrape_at = [0.0]
    registry = CollectorRegistry()
    registry.register(DeviceMetrics(api.reader, max_devices=1, clock=lambda: scrape_at[0]))
    writer.add_windows([make_window([9.0] * 5, start=now - timedelta(minutes=5))])
    generate_latest(registry)  # the first scrape starts counting: that window came before it
    for device in ("pi-01", "pi-02"):
        writer.record_telemetry(make_telemetry(now, device_id=device), now)
        writer.add_windows([make_window([0.2] * 10 + [3.0] * 10, device_id=device,
                                        start=now - timedelta(seconds=20)),
                            make_window([3.0] * 5, device_id=device,
                                        start=now - timedelta(seconds=10))])
    scrape_at[0] += 60
    text = generate_latest(registry).decode()
    labels = 'device_id="pi-01",fleet="default",le="{}",monitor="vww"'
    assert f'edgemeter_monitor_latency_seconds_bucket{{{labels.format("0.00025")}}} 10.0' in text
    assert f'edgemeter_monitor_latency_seconds_bucket{{{labels.format("0.005")}}} 25.0' in text
    assert f'edgemeter_monitor_latency_seconds_bucket{{{labels.format("+Inf")}}} 25.0' in text
    assert 'edgemeter_monitor_latency_seconds_count{device_id="pi-01",fleet="default",' \
           'monitor="vww"} 25.0' in text
    assert 'device_id="pi-02"' not in text  # past the device cap: no series at all
    writer.add_windows([make_window([3.0] * 5, start=now)])
    scrape_at[0] += 60
    again = generate_latest(registry).decode()
    assert f'edgemeter_monitor_latency_seconds_bucket{{{labels.format("+Inf")}}} 30.0' in again


def test_the_regressed_filter_of_the_device_list_covers_every_device_not_one_page(
        api: Api) -> None:
    now = _now()
    writer = api.writer
    windows = []
    devices = [f"d{i:02d}" for i in range(12)]
    for device in devices:
        writer.record_telemetry(make_telemetry(now, device_id=device), now)
        recent_ms = 5.0 if device in ("d03", "d11") else 2.0
        windows += [make_window([2.0] * 20, device_id=device, start=now - timedelta(hours=h))
                    for h in (3, 9)]
        windows.append(make_window([recent_ms] * 20, device_id=device,
                                   start=now - timedelta(minutes=3)))
    writer.add_windows(windows)
    first = api.client.get("/api/devices", params={"regressed": "true", "limit": 1}).json()
    assert [d["device_id"] for d in first["devices"]] == ["d03"] and first["total"] == 2
    second = api.client.get("/api/devices", params={"regressed": "true", "limit": 1,
                                                    "cursor": first["next_cursor"]}).json()
    assert [d["device_id"] for d in second["devices"]] == ["d11"]
    everyone = api.client.get("/api/devices", params={"limit": 1000}).json()
    assert everyone["total"] >= 12
    assert api.client.get("/api/devices", params={"regressed": "maybe"}).status_code in (400, 422)
