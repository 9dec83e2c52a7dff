"""The device page over time: monitor windows and telemetry history drawn, alerts listed."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.topics import TopicKind
from tests.browser.conftest import Dashboard, assert_clean, shoot
from tests.browser.test_dashboard import birth, expect
from tests.factories_monitor import make_telemetry, make_window


def test_the_device_page_draws_latency_and_telemetry_over_time(dashboard: Dashboard,
                                                                page: Any) -> None:
    birth(dashboard, "pi5-history")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for n in range(6):
        at = now - timedelta(seconds=60 - 10 * n)
        dashboard.publish(make_telemetry(at, device_id="pi5-history", fleet=dashboard.fleet,
                                         cpu_util_pct=20.0 + n, temps_c={"soc": 50.0 + n},
                                         power_w=3.0), TopicKind.TELEMETRY)
        dashboard.publish(make_window([2.0 + n, 3.0], start=at - timedelta(seconds=10),
                                      device_id="pi5-history", fleet=dashboard.fleet,
                                      name="canary"), TopicKind.MONITOR)
    deadline = time.monotonic() + 20
    while len(dashboard.get("/api/devices/pi5-history/monitor?since=1h")["windows"]) < 6:
        assert time.monotonic() < deadline, "the collector did not store the windows"
        time.sleep(0.2)
    page.goto(f"{dashboard.url}/#/device/pi5-history")
    expect(page.locator("main")).to_contain_text("6 monitor window(s)", timeout=10_000)
    for chart in ("latency", "throughput", "power", "heat"):
        expect(page.locator(f"#history-{chart} canvas")).to_have_count(1)
    expect(page.locator("main")).to_contain_text("No alerts for this device")
    page.get_by_role("button", name="24h").click()
    expect(page.locator("main")).to_contain_text("over the last 24h")
    shoot(page, "device-history")
    assert_clean(page)


def test_the_fleet_page_draws_sparklines_and_filters_regressed_devices(dashboard: Dashboard,
                                                                       page: Any) -> None:
    fleet = f"trend{dashboard.fleet[-6:]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for device, recent_ms in (("trend-steady", 2.0), ("trend-slower", 6.0)):
        birth(dashboard, device, fleet=fleet)
        for hours_ago in (3, 6, 12):
            dashboard.publish(make_window([2.0] * 10, start=now - timedelta(hours=hours_ago),
                                          device_id=device, fleet=fleet), TopicKind.MONITOR)
        for minutes_ago in (8, 4):
            dashboard.publish(make_window([recent_ms] * 10, device_id=device, fleet=fleet,
                                          start=now - timedelta(minutes=minutes_ago)),
                              TopicKind.MONITOR)
    deadline = time.monotonic() + 20
    while len(dashboard.get("/api/devices/trend-slower/monitor?since=1d")["windows"]) < 5:
        assert time.monotonic() < deadline, "the collector did not store the windows"
        time.sleep(0.2)
    dashboard.wait_devices(fleet, 2)  # the list may be up to DEVICE_CACHE_S old
    page.goto(f"{dashboard.url}/#/fleet?fleet={fleet}")
    table = page.locator("#fleet-table")
    expect(table.locator("tr[data-device='trend-slower'] .trend svg")).to_have_count(1, timeout=10_000)
    expect(table.locator("tr[data-device='trend-slower'] .trend")).to_contain_text("regressed")
    page.get_by_label("regressed only").check()
    expect(table.locator("tr[data-device='trend-steady']")).to_be_hidden()
    expect(table.locator("tr[data-device='trend-slower']")).to_be_visible()
    shoot(page, "fleet-trends")
    assert_clean(page)
