"""/api/compare bounds the runs it pairs (each device's newest N per model) and says which N."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.factories import make_result
from tests.http.conftest import Api

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_compare_pairs_each_devices_newest_runs_and_echoes_the_bound(api: Api) -> None:
    edges = [make_result(device_id="pi", seq=i, created_at=T0 + timedelta(minutes=i))
             for i in range(3)]
    server = make_result(device_id="xeon", role="datacenter", seq=9, created_at=T0)
    api.writer.add_results([*edges, server])
    params = {"model": "vww_96", "role": "datacenter"}
    body = api.client.get("/api/compare", params={**params, "runs_per_series": 2}).json()
    assert [r["edge_run_id"] for r in body["rows"]] == [str(e.run_id) for e in edges[1:]]
    assert body["runs_per_series"] == 2
    every = api.client.get("/api/compare", params={**params, "runs_per_series": 0}).json()
    assert len(every["rows"]) == 3 and every["runs_per_series"] == 0
    assert api.client.get("/api/compare", params=params).json()["runs_per_series"] == 50
    assert api.client.get("/api/compare", params={"runs_per_series": -1}).status_code == 422
