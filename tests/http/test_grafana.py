"""deploy/grafana: every SQL query of the dashboard runs on a real PostgreSQL filled with results."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.stores.base import open_store
from shared.messages import AgentManifest, Status, Telemetry
from shared.schema import DeviceManifest, EnergyReport, PowerScope
from tests.factories import make_result
from tests.factories_monitor import make_window

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "edgemeter-fleet.json"

# What Grafana puts in place of its macros and variables (a fixed, generous time range).
MACROS = [
    (re.compile(r"\$__timeFilter\((\w+)\)"),
     r"\1 BETWEEN now() - interval '30 days' AND now() + interval '1 day'"),
    (re.compile(r"\$__timeGroupAlias\((\w+),\s*('[^']*'|\$__interval)\)"),
     r"""to_timestamp(floor(extract(epoch FROM \1) / 60) * 60) AS "time\""""),
    (re.compile(r"\$__time\((\w+)\)"), r'\1 AS "time"'),
]


def _queries(dashboard: dict[str, Any]) -> dict[str, str]:
    found = {f"panel {p['id']} ({p['title']})": t["rawSql"]
             for p in dashboard["panels"] for t in p.get("targets", [])}
    found.update({f"variable {v['name']}": v["query"] for v in dashboard["templating"]["list"]})
    return found


def _as_run(sql: str, variables: dict[str, str]) -> str:
    for pattern, replacement in MACROS:
        sql = pattern.sub(replacement, sql)
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, f"a Grafana macro or variable the test does not know: {sql}"
    return sql


def test_dashboard_json_names_the_provisioned_data_source() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/edgemeter.yaml").read_text())
    (ds,) = source["datasources"]
    assert ds["secureJsonData"]["password"].startswith("${")  # from the environment only
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == ds["uid"]
        assert panel["datasource"]["type"] == ds["type"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/edgemeter.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


@pytest.mark.postgres
def test_every_dashboard_query_runs_on_postgresql_filled_with_results(postgres_url: str) -> None:
    import psycopg

    store = open_store(postgres_url)
    energy = EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False,
                          window_s=10.0, avg_power_w=4.0, energy_j=40.0,
                          joules_per_inference=0.008)
    estimate = energy.model_copy(update={"estimated": True, "source": "estimate",
                                         "scope": PowerScope.ESTIMATE})
    store.add_results([
        make_result(device_id="pi-01", fleet="lab", seq=1, energy=energy),
        make_result(device_id="pi-01", fleet="lab", seq=2, energy=estimate),
        make_result(device_id="pi-02", fleet="lab", seq=1, model_name="kws_int8.tflite"),
        make_result(device_id="xeon", fleet="dc", role="datacenter", seq=1, energy=energy),
    ])
    now = datetime.now(timezone.utc)
    for device_id, fleet in (("pi-01", "lab"), ("pi-02", "lab"), ("xeon", "dc")):
        manifest = AgentManifest(agent_version="1", device=DeviceManifest(hostname=device_id,
                                                                          board="Raspberry Pi 5"))
        store.record_status(Status(device_id=device_id, fleet=fleet, status="online", bd_seq=1,
                                   sent_at=now, manifest=manifest), now)
        store.record_telemetry(Telemetry(device_id=device_id, fleet=fleet, uptime_s=1,
                                         spool_depth=2, temps_c={"soc": 55.0}, power_w=3.0), now)
    history: Any = store  # telemetry history, monitor windows, alerts: collector.stores.history
    history.add_windows([make_window([2.0, 3.0], start=now - timedelta(seconds=10),
                                     device_id="pi-01", fleet="lab")])
    history.open_alert(rule="slow", device_id="pi-01", fleet="lab", severity="warning",
                       metric="p99_ms", op=">", threshold=1.0, value=3.0, at=now)
    store.close()
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {"fleet": "'lab', 'dc'", "device": "'pi-01', 'pi-02', 'xeon'"}
    queries = _queries(dashboard)
    assert len(queries) >= 8
    with psycopg.connect(postgres_url) as conn:
        for where, sql in queries.items():
            rows = conn.execute(_as_run(sql, variables)).fetchall()  # type: ignore[arg-type]
            assert rows, f"{where} returned no rows:\n{sql}"
        jpi = conn.execute(_as_run(
            next(sql for name, sql in queries.items() if "basis" in name), variables)).fetchall()  # type: ignore[arg-type]
    assert {(model, basis) for model, basis, _, _ in jpi} == {
        ("vww_96_int8.tflite", "measured"), ("vww_96_int8.tflite", "estimated")}
