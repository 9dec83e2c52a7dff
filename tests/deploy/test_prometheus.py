"""deploy/prometheus against Debian's real Prometheus and Alertmanager.

``promtool`` checks the shipped config and rules; a real Prometheus scrapes a live collector's
``/metrics`` until a shipped rule fires; the collector's own alert reaches a real Alertmanager
(``amtool alert query`` shows it) and resolves. Needs the ``prometheus`` and
``prometheus-alertmanager`` packages (.ci/run installs them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.alerts import AlertEvaluator, AlertmanagerSink
from collector.config import HttpSettings
from collector.events import EventBus
from collector.http import HttpServer, create_app, open_read_store
from collector.metrics import CollectorMetrics
from collector.monitoring_settings import AlertRule
from collector.stores.base import open_store
from edgemeter.demo.broker import free_port, port_accepts, stop_process
from tests.conftest import REPO_ROOT, unavailable
from tests.factories_monitor import make_telemetry

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (apt-get install {package})")
    assert found is not None
    return found


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


@pytest.mark.subprocess
def test_promtool_accepts_the_shipped_config_and_rules() -> None:
    promtool = _tool("promtool", "prometheus")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "edgemeter.rules.yml"]):
        done = subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture()
def live_collector(tmp_path: Path) -> Iterator[str]:
    """A collector's HTTP side on a real SQLite store holding one throttled device."""
    url = f"sqlite:///{tmp_path}/results.db"
    writer = open_store(url)
    now = datetime.now(timezone.utc)
    writer.record_telemetry(make_telemetry(now, temps_c={"soc": 70.0}, throttled=True), now)
    reader = open_read_store(url)
    app = create_app(reader, events=EventBus(), metrics=CollectorMetrics(),
                     publisher=lambda topic, payload: None,
                     settings=HttpSettings(listen="127.0.0.1:8080"))
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()
    reader.close()
    writer.close()


@pytest.mark.slow
def test_prometheus_scrapes_a_live_collector_and_a_shipped_rule_fires(
        tmp_path: Path, live_collector: str) -> None:
    prometheus = _tool("prometheus", "prometheus")
    rules = (PROMETHEUS_DIR / "edgemeter.rules.yml").read_text()
    # the shipped expressions, with their waits shortened so the test need not wait minutes
    (tmp_path / "edgemeter.rules.yml").write_text(re.sub(r"for: \d+m", "for: 0s", rules))
    target = live_collector.removeprefix("http://")
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text() \
        .replace("scrape_interval: 15s", "scrape_interval: 1s") \
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s") \
        .replace('["127.0.0.1:8080"]', f'["{target}"]')
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    process = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        def throttled_firing() -> bool:
            alerts = _get_json(f"http://127.0.0.1:{port}/api/v1/alerts")["data"]["alerts"]
            return any(a["labels"]["alertname"] == "EdgemeterDeviceThrottled"
                       and a["labels"].get("device_id") == "pi-01" and a["state"] == "firing"
                       for a in alerts)

        assert _wait(throttled_firing, 60), (tmp_path / "prometheus.log").read_text()[-2000:]
    finally:
        stop_process(process)


@pytest.mark.slow
def test_the_collectors_own_alert_reaches_alertmanager_and_resolves(tmp_path: Path) -> None:
    alertmanager = _tool("prometheus-alertmanager", "prometheus-alertmanager")
    amtool = _tool("amtool", "prometheus-alertmanager")
    (tmp_path / "alertmanager.yml").write_text(
        "route:\n  receiver: nobody\n  group_wait: 0s\nreceivers:\n  - name: nobody\n")
    port = free_port()
    process = subprocess.Popen(
        [alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
         f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "alertmanager.log").open("w"))
    am_url = f"http://127.0.0.1:{port}"
    store = open_store(f"sqlite:///{tmp_path}/results.db")
    try:
        assert _wait(lambda: port_accepts(port), 30), (tmp_path / "alertmanager.log").read_text()
        # last heard from 61 s ago; the evaluator's clock is the real one, as Alertmanager's is
        then = datetime.now(timezone.utc) - timedelta(seconds=61)
        store.record_telemetry(make_telemetry(then), then)
        evaluator = AlertEvaluator(
            [AlertRule(name="EdgemeterOffline", metric="offline_s", op=">", threshold=60,
                       severity="critical")],
            store, clock=lambda: datetime.now(timezone.utc),  # type: ignore[arg-type]
            sink=AlertmanagerSink(am_url))
        assert len(evaluator.evaluate()) == 1

        def query() -> list[dict[str, Any]]:
            done = subprocess.run([amtool, "alert", "query", f"--alertmanager.url={am_url}",
                                   "-o", "json", "alertname=EdgemeterOffline"],
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            return list(json.loads(done.stdout or "[]"))

        assert _wait(lambda: len(query()) == 1, 30)
        (shown,) = query()
        assert shown["labels"] == {"alertname": "EdgemeterOffline", "device_id": "pi-01",
                                   "fleet": "default", "severity": "critical"}
        # the device is heard from again: the alert resolves, and Alertmanager lets it go
        heard = datetime.now(timezone.utc)
        store.record_telemetry(make_telemetry(heard), heard)
        (resolved,) = evaluator.evaluate()
        assert resolved.state == "resolved"
        assert _wait(lambda: query() == [], 30)
    finally:
        store.close()
        stop_process(process)
