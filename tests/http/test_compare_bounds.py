"""/api/compare pairs representatives: each hardware group's newest run per model and scenario
(the dashboard's fleet compare), a device's newest N runs with ``device``, every run with 0."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.schema import BenchmarkResult, DeviceManifest
from tests.factories import make_result
from tests.http.conftest import Api

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_a_device_compare_pairs_its_newest_runs_and_echoes_the_bound(api: Api) -> None:
    edges = [make_result(device_id="pi", seq=i, created_at=T0 + timedelta(minutes=i))
             for i in range(3)]
    server = make_result(device_id="xeon", role="datacenter", seq=9, created_at=T0)
    api.writer.add_results([*edges, server])
    params = {"model": "vww_96", "role": "datacenter", "device": "pi"}
    body = api.client.get("/api/compare", params={**params, "runs_per_series": 2}).json()
    assert [r["edge_run_id"] for r in body["rows"]] == [str(e.run_id) for e in edges[1:]]
    assert body["runs_per_series"] == 2
    every = api.client.get("/api/compare", params={**params, "runs_per_series": 0}).json()
    assert len(every["rows"]) == 3 and every["runs_per_series"] == 0
    assert api.client.get("/api/compare", params=params).json()["runs_per_series"] == 50
    assert api.client.get("/api/compare", params={"runs_per_series": -1}).status_code == 422


def test_the_fleet_compare_pairs_each_hardware_groups_newest_run_and_names_baseline_roles(
        api: Api) -> None:
    def board(device: str, key: str, minute: int, role: str = "edge") -> BenchmarkResult:
        return make_result(device_id=device, role=role, seq=minute,
                           created_at=T0 + timedelta(minutes=minute),
                           device=DeviceManifest(hostname=device, cpu_model="x", cpu_cores=4,
                                                 hardware_key=key))

    pis = [board(f"pi-{i}", "raspberry-pi-5", i) for i in range(4)]
    gpus = [board(f"gpu-{i}", "nvidia-a100", 10 + i, role="datacenter") for i in range(3)]
    lumi = board("lumi-1", "lumi-g-node", 20, role="hpc")
    api.writer.add_results([*pis, *gpus, lumi])
    body = api.client.get("/api/compare", params={"model": "vww_96"}).json()
    measured = [(r["edge_run_id"], r["baseline"]["run_id"]) for r in body["rows"]
                if r["baseline"]["kind"] == "measured"]
    assert measured == [(str(pis[-1].run_id), str(gpus[-1].run_id)),
                        (str(pis[-1].run_id), str(lumi.run_id))]
    assert body["roles"] == {str(gpus[-1].run_id): "datacenter",
                             str(lumi.run_id): "hpc"}


def test_every_run_streams_in_chunks_the_same_answer_as_in_one_piece(api: Api) -> None:
    import json

    from collector.http.api import compare_stream
    from shared.catalogue import load_catalogue

    runs = [make_result(device_id=f"pi-{i % 3}", seq=i, created_at=T0 + timedelta(minutes=i))
            for i in range(7)]
    older = make_result(device_id="xeon", role="datacenter", seq=1, created_at=T0)
    newest = make_result(device_id="xeon", role="datacenter", seq=2,
                         created_at=T0 + timedelta(hours=1))
    api.writer.add_results([*runs, older, newest])
    catalogue = load_catalogue()
    pieces = list(compare_stream(api.reader, catalogue, chunk_runs=2))
    assert len(pieces) > 4  # the rows went out a chunk at a time
    whole = json.loads(b"".join(compare_stream(api.reader, catalogue, chunk_runs=10**6)))
    assert json.loads(b"".join(pieces)) == whole
    measured = [r for r in whole["rows"] if r["baseline"]["kind"] == "measured"]
    # every edge run, oldest first, against the baseline group's newest run
    assert [r["edge_run_id"] for r in measured] == [str(r.run_id) for r in runs]
    assert {r["baseline"]["run_id"] for r in measured} == {str(newest.run_id)}
    assert whole["runs_per_series"] == 0 and whole["roles"] == {str(newest.run_id): "datacenter"}
    served = api.client.get("/api/compare", params={"runs_per_series": 0}).json()
    assert served == whole
    one = json.loads(b"".join(compare_stream(api.reader, catalogue, device="pi-1",
                                             role="datacenter", chunk_runs=1)))
    assert [r["edge_run_id"] for r in one["rows"]] == [str(r.run_id) for r in runs
                                                        if r.device_id == "pi-1"]
