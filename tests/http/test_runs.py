"""/api/runs (keyset pages, filters), /api/runs/{id} (histogram, CDF, power), /api/compare."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.schema import EnergyReport, PowerScope, PowerTrace
from tests.factories import make_result
from tests.http.conftest import Api

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _fill(api: Api, count: int, **kw: object) -> list[str]:
    results = [make_result(seq=i, created_at=T0 + timedelta(minutes=i), **kw) for i in range(count)]
    api.writer.add_results(results)
    return [str(r.run_id) for r in results]


def test_runs_pages_cover_every_run_once_newest_first(api: Api) -> None:
    ids = _fill(api, 23)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        body = api.client.get("/api/runs", params=params).json()
        seen += [run["run_id"] for run in body["runs"]]
        cursor = body["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 5
    assert seen == list(reversed(ids))


def test_a_result_stored_while_paging_does_not_shift_the_next_page(api: Api) -> None:
    ids = _fill(api, 6)
    first = api.client.get("/api/runs", params={"limit": 3}).json()
    api.writer.add_results([make_result(seq=99, created_at=T0 + timedelta(days=1))])
    second = api.client.get("/api/runs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [r["run_id"] for r in second["runs"]] == list(reversed(ids[:3]))
    assert second["next_cursor"] is None


def test_runs_with_equal_created_at_are_paged_by_id(api: Api) -> None:
    results = [make_result(seq=i, created_at=T0) for i in range(7)]
    api.writer.add_results(results)
    seen: list[str] = []
    body = api.client.get("/api/runs", params={"limit": 3}).json()
    seen += [r["run_id"] for r in body["runs"]]
    while body["next_cursor"]:
        body = api.client.get("/api/runs", params={"limit": 3, "cursor": body["next_cursor"]}).json()
        seen += [r["run_id"] for r in body["runs"]]
    # ties in created_at go by id (insertion order; PostgreSQL inserts a batch in run_id order to
    # avoid deadlocks between collectors): pages of 3 give exactly the one-page order
    whole = api.client.get("/api/runs", params={"limit": 100}).json()["runs"]
    assert seen == [r["run_id"] for r in whole]
    assert sorted(seen) == sorted(str(r.run_id) for r in results)


def test_run_summary_has_the_contract_fields(api: Api) -> None:
    _fill(api, 1, device_id="pi-07", fleet="lab")
    run = api.client.get("/api/runs").json()["runs"][0]
    assert set(run) == {"run_id", "device_id", "fleet", "role", "created_at", "model_name",
                        "network", "scenario", "p50_ms", "p99_ms", "throughput_sps",
                        "joules_per_inference", "avg_power_w", "energy_estimated", "valid"}
    assert (run["device_id"], run["fleet"], run["role"], run["scenario"]) == \
        ("pi-07", "lab", "edge", "single-stream")
    assert run["p50_ms"] > 0 and run["valid"] is True


def test_runs_filter_by_device_fleet_model_role_and_time(api: Api) -> None:
    api.writer.add_results([
        make_result(device_id="a", fleet="f1", created_at=T0),
        make_result(device_id="b", fleet="f2", created_at=T0 + timedelta(hours=1),
                    model_name="kws_int8.tflite", network="kws"),
        make_result(device_id="c", fleet="f2", role="datacenter",
                    created_at=T0 + timedelta(hours=2)),
    ])

    def devices(**params: str) -> list[str]:
        response = api.client.get("/api/runs", params=params)
        assert response.status_code == 200, response.text
        return sorted(r["device_id"] for r in response.json()["runs"])

    assert devices(device="a") == ["a"]
    assert devices(fleet="f2") == ["b", "c"]
    assert devices(model="kws") == ["b"]
    assert devices(model="kws_int8.tflite") == ["b"]
    assert devices(role="datacenter") == ["c"]
    assert devices(since=(T0 + timedelta(minutes=30)).isoformat()) == ["b", "c"]
    assert devices(until=(T0 + timedelta(minutes=30)).isoformat()) == ["a"]


def test_bad_cursor_limit_and_naive_time_are_one_line_errors(api: Api) -> None:
    for params, status in (({"cursor": "garbage"}, 400), ({"limit": 0}, 422),
                           ({"since": "2026-03-01T12:00:00"}, 422), ({"role": "boss"}, 422)):
        response = api.client.get("/api/runs", params=params)
        assert response.status_code == status
        assert "\n" not in response.json()["error"]


def test_unknown_run_is_a_404_with_an_error(api: Api) -> None:
    response = api.client.get("/api/runs/0b7f3c5e-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert "no run" in response.json()["error"]


@pytest.mark.parametrize("version", [1, 2])
def test_run_detail_decodes_histogram_and_cdf_from_the_raw_latencies(api: Api, version: int) -> None:
    result = make_result(seq=3, schema_version=version)
    api.writer.add_results([result])
    body = api.client.get(f"/api/runs/{result.run_id}").json()
    assert body["result"]["run_id"] == str(result.run_id)
    hist, cdf = body["histogram"], body["cdf"]
    assert len(hist["edges_ms"]) == len(hist["counts"]) + 1
    assert sum(hist["counts"]) == result.latency_ms.count
    assert hist["edges_ms"][0] <= result.latency_ms.min <= result.latency_ms.max <= hist["edges_ms"][-1]
    assert cdf["fraction"][-1] == 1.0
    assert cdf["latency_ms"] == sorted(cdf["latency_ms"])
    raw = result.latencies
    assert raw is not None
    median_ms = raw.quantile_ms(0.5)
    first_half = next(x for x, f in zip(cdf["latency_ms"], cdf["fraction"], strict=True) if f >= 0.5)
    assert first_half == median_ms
    assert body["power"] == {"trace": None, "window": None, "idle_power_w": None}


def test_run_detail_gives_power_trace_window_and_catalogue_peak(api: Api) -> None:
    energy = EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False, window_s=2.0,
                          avg_power_w=5.0, idle_power_w=3.0, energy_j=10.0,
                          trace=PowerTrace(t_s=[0.0, 1.0, 2.0], power_w=[4.0, 6.0, 5.0]))
    base = make_result()
    result = make_result(energy=energy,
                         device=base.device.model_copy(update={"hardware_key": "raspberry-pi-5"}))
    api.writer.add_results([result])
    body = api.client.get(f"/api/runs/{result.run_id}").json()
    assert body["power"] == {"trace": {"t_s": [0.0, 1.0, 2.0], "power_w": [4.0, 6.0, 5.0]},
                             "window": [0.0, 2.0], "idle_power_w": 3.0}
    assert body["catalogue"]["hardware_key"] == "raspberry-pi-5"
    assert body["catalogue"]["peak_gmacs_per_s"] > 0


def test_compare_serves_the_engine_rows_with_a_better_hint(api: Api) -> None:
    edge = make_result(device_id="pi", p50_ms=4.0, throughput_sps=250.0)
    server = make_result(device_id="xeon", role="datacenter", p50_ms=1.0, throughput_sps=1000.0)
    api.writer.add_results([edge, server])
    body = api.client.get("/api/compare", params={"model": "vww_96", "role": "datacenter"}).json()
    assert [(r["edge_run_id"], r["baseline"]["run_id"]) for r in body["rows"]] == \
        [(str(edge.run_id), str(server.run_id))]
    row = body["rows"][0]
    assert row["ratios"]["throughput"] == 0.25
    assert body["better"]["latency_p50_ms"] == "lower"
    assert body["better"]["throughput_sps"] == "higher"
    assert api.client.get("/api/compare", params={"role": "hpc"}).json()["rows"] == []
