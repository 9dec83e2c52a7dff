"""/api/devices, /api/devices/{id}, /api/jobs and /models on a real store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from shared.errors import BrokerError
from shared.messages import AgentManifest, JobCommand, Status, Telemetry
from shared.schema import DeviceManifest, EnergyReport, PowerScope
from tests.collector.conftest import wait_for
from tests.factories import make_result
from tests.http.conftest import TOKEN, Api

NOW = datetime.now(timezone.utc).replace(microsecond=0)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL_CONTENT = b"model"
MODEL = {"sha256": hashlib.sha256(MODEL_CONTENT).hexdigest(), "name": "m.tflite"}


def _online(api: Api, device_id: str, fleet: str = "lab", board: str = "Raspberry Pi 5",
            status: str = "online", spool_depth: int = 0, at: datetime = NOW) -> None:
    manifest = AgentManifest(agent_version="1", runtimes={"litert": "1.4.0"},
                             device=DeviceManifest(hostname=device_id, board=board))
    api.writer.record_status(Status(device_id=device_id, fleet=fleet, status=status, bd_seq=1,
                                    sent_at=at, manifest=manifest if status == "online" else None),
                             at)
    api.writer.record_telemetry(Telemetry(device_id=device_id, fleet=fleet, uptime_s=10,
                                          sent_at=at, spool_depth=spool_depth), at)


def test_devices_have_the_contract_fields_and_latest_result(api: Api) -> None:
    _online(api, "pi-01", spool_depth=4)
    energy = EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False,
                          avg_power_w=3.5, window_s=1.0)
    result = make_result(device_id="pi-01", fleet="lab", seq=1, p50_ms=2.0, energy=energy)
    api.writer.add_results([result])
    body = api.client.get("/api/devices").json()
    assert body["total"] == 1 and body["next_cursor"] is None
    (device,) = body["devices"]
    assert set(device) == {"device_id", "fleet", "status", "bd_seq", "first_seen", "last_seen",
                           "board", "runtime", "current_job", "progress", "latest_p50_ms",
                           "latest_power_w", "latest_model", "latest_run_id", "spool_depth"}
    assert (device["status"], device["board"], device["runtime"], device["spool_depth"]) == \
        ("online", "Raspberry Pi 5", "litert 1.4.0", 4)
    assert device["latest_run_id"] == str(result.run_id)
    assert device["latest_p50_ms"] == pytest.approx(result.latency_ms.p50)
    assert device["latest_power_w"] == 3.5
    assert device["latest_model"] == "vww_96_int8.tflite"


def test_devices_filter_sort_and_pages_with_a_total(api: Api) -> None:
    for i in range(7):
        _online(api, f"pi-{i:02d}", fleet="lab" if i < 5 else "field",
                status="offline" if i == 3 else "online",
                board="Jetson Orin" if i == 6 else "Raspberry Pi 5")
    get = lambda **p: api.client.get("/api/devices", params=p).json()  # noqa: E731
    ids = lambda body: [d["device_id"] for d in body["devices"]]  # noqa: E731
    first = get(limit=3)
    assert (ids(first), first["total"]) == (["pi-00", "pi-01", "pi-02"], 7)
    second = get(limit=3, cursor=first["next_cursor"])
    third = get(limit=3, cursor=second["next_cursor"])
    assert ids(second) + ids(third) == ["pi-03", "pi-04", "pi-05", "pi-06"]
    assert third["next_cursor"] is None
    assert ids(get(fleet="field")) == ["pi-05", "pi-06"]
    assert ids(get(status="offline")) == ["pi-03"]
    assert ids(get(q="orin")) == ["pi-06"]
    assert get(status="online")["total"] == 6
    assert ids(get(sort="-device_id", limit=2)) == ["pi-06", "pi-05"]
    bad = api.client.get("/api/devices", params={"sort": "password"})
    assert bad.status_code == 422 and "sort must be one of" in bad.json()["error"]
    assert api.client.get("/api/devices", params={"cursor": "junk"}).status_code == 400


def test_live_progress_shows_on_the_device_until_the_job_ends(api: Api) -> None:
    _online(api, "pi-01")
    progress = {"device_id": "pi-01", "fleet": "lab", "job_id": "j1", "phase": "measure",
                "iterations_done": 40, "running_p50_ms": 2.2, "power_w": 3.0}
    api.events.publish("progress", progress)
    (device,) = api.client.get("/api/devices").json()["devices"]
    assert device["progress"] == {k: progress[k] for k in ("job_id", "phase", "iterations_done",
                                                            "running_p50_ms", "power_w")}
    assert device["current_job"] == "j1"
    api.events.publish("ack", {"device_id": "pi-01", "fleet": "lab", "job_id": "j1",
                               "state": "done"})
    (device,) = api.client.get("/api/devices").json()["devices"]
    assert device["progress"] is None


def test_the_device_list_is_read_at_most_once_per_cache_period(
        make_api: Callable[..., Api]) -> None:
    cached = make_api(device_cache_s=3600)
    _online(cached, "pi-01")
    assert cached.client.get("/api/devices").json()["total"] == 1
    _online(cached, "pi-02")
    assert cached.client.get("/api/devices").json()["total"] == 1  # still the first read
    assert cached.client.get("/api/devices/pi-02").status_code == 200  # a new device is looked up
    assert cached.client.get("/api/devices").json()["total"] == 2


def test_device_detail_has_telemetry_runs_gaps_and_jobs(api: Api) -> None:
    _online(api, "pi-01", spool_depth=2)
    results = [make_result(device_id="pi-01", fleet="lab", seq=seq,
                           created_at=NOW - timedelta(minutes=60 - seq)) for seq in (1, 2, 5)]
    api.writer.add_results(results)
    job = JobCommand(model=MODEL)  # type: ignore[arg-type]
    api.writer.record_job(job, device_id="pi-01", fleet="lab")
    body = api.client.get("/api/devices/pi-01").json()
    assert body["device_id"] == "pi-01" and body["status"] == "online"
    assert body["telemetry"]["spool_depth"] == 2
    assert [r["run_id"] for r in body["runs"]] == [str(r.run_id) for r in reversed(results)]
    assert body["gaps"] == [{"first_missing": 3, "last_missing": 4}]
    assert [j["job_id"] for j in body["jobs"]] == [job.job_id]
    assert body["jobs"][0]["state"] == "sent"


def test_unknown_device_is_a_404(api: Api) -> None:
    response = api.client.get("/api/devices/ghost")
    assert response.status_code == 404
    assert "ghost" in response.json()["error"]


def test_post_job_publishes_a_job_command_to_each_device_and_records_it(
        make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    _online(api, "pi-01")
    _online(api, "pi-02", fleet="field")
    response = api.client.post("/api/jobs", headers=AUTH, json={
        "devices": ["pi-01", "pi-02"], "model": MODEL,
        "settings": {"profile": "quick", "threads": 2}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [j["device_id"] for j in body["jobs"]] == ["pi-01", "pi-02"]
    assert [topic for topic, _ in api.published] == ["edgemeter/v1/lab/pi-01/cmd",
                                                       "edgemeter/v1/field/pi-02/cmd"]
    commands = [JobCommand.model_validate_json(payload) for _, payload in api.published]
    assert [c.job_id for c in commands] == body["job_ids"]
    assert commands[0].model is not None and commands[0].model.sha256 == MODEL["sha256"]
    assert commands[0].settings.threads == 2
    listed = api.client.get("/api/jobs", params={"device": "pi-02"}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [body["job_ids"][1]]


def test_post_job_by_selector(make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    for device in ("pi-01", "pi-02", "jet-01"):
        _online(api, device)
    body = api.client.post("/api/jobs", headers=AUTH,
                           json={"selector": "pi-*", "model": MODEL}).json()
    assert sorted(j["device_id"] for j in body["jobs"]) == ["pi-01", "pi-02"]
    none = api.client.post("/api/jobs", headers=AUTH, json={"selector": "zz*", "model": MODEL})
    assert none.status_code == 404


def test_post_job_refuses_unknown_devices_and_bad_bodies_before_sending(
        make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    _online(api, "pi-01")
    unknown = api.client.post("/api/jobs", headers=AUTH,
                              json={"devices": ["pi-01", "ghost"], "model": MODEL})
    assert unknown.status_code == 404 and "ghost" in unknown.json()["error"]
    both = api.client.post("/api/jobs", headers=AUTH,
                           json={"devices": ["pi-01"], "selector": "pi-*", "model": MODEL})
    assert both.status_code == 422
    bad_model = api.client.post("/api/jobs", headers=AUTH,
                                json={"devices": ["pi-01"], "model": {"sha256": "x", "name": "m"}})
    assert bad_model.status_code == 422 and "\n" not in bad_model.json()["error"]
    assert api.published == []


def test_post_job_when_the_broker_refuses_is_a_503(make_api: Callable[..., Api]) -> None:
    def refuse(_topic: str, _payload: bytes) -> None:
        raise BrokerError("broker mqtt://b did not acknowledge within 10 s")

    api = make_api(token=TOKEN, publisher=refuse)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    _online(api, "pi-01")
    response = api.client.post("/api/jobs", headers=AUTH, json={"devices": ["pi-01"], "model": MODEL})
    assert response.status_code == 503
    assert "did not acknowledge" in response.json()["error"]
    assert api.client.get("/api/jobs").json()["jobs"] == []


def test_models_are_served_by_sha256_on_loopback_without_a_token(api: Api) -> None:
    content = b"TFL3" + bytes(range(256)) * 4
    sha = api.writer.add_model("kws.tflite", content)
    response = api.client.get(f"/models/{sha}")
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(content))
    listed = api.client.get("/api/models").json()["models"]
    assert [(m["sha256"], m["name"], m["size_bytes"]) for m in listed] == \
        [(sha, "kws.tflite", len(content))]
    missing = api.client.get(f"/models/{'0' * 64}")
    assert missing.status_code == 404
    assert "edgemeter models add" in missing.json()["error"]


def test_off_loopback_models_need_the_models_token_not_nothing(
        make_api: Callable[..., Api]) -> None:
    api = make_api(listen="0.0.0.0:8080", token=TOKEN, models_token="boards-secret")
    sha = api.writer.add_model("kws.tflite", b"TFL3" + bytes(64))
    url = f"/models/{sha}"
    assert api.client.get(url).status_code == 401
    wrong = api.client.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "\n" not in wrong.json()["error"]
    assert api.client.get(url, headers={"Authorization": "Bearer boards-secret"}).status_code == 200
    # the models token opens nothing else
    assert api.client.get("/api/devices",
                          headers={"Authorization": "Bearer boards-secret"}).status_code == 401
    without = make_api(listen="0.0.0.0:8080", token=None)
    refused = without.client.get(url)
    assert refused.status_code == 403 and "models_token_file" in refused.json()["error"]


def test_downloads_past_the_cap_get_a_503_with_retry_after(make_api: Callable[..., Api]) -> None:
    api = make_api(max_downloads=1)
    sha = api.writer.add_model("big.onnx", b"\x08\x07" + bytes(48 * 2**20))  # past socket buffers
    with api.client.stream("GET", f"/models/{sha}") as first:
        assert first.status_code == 200
        chunks = first.iter_bytes(4096)
        next(chunks)  # the first download is under way (keep the iterator: closing it hangs up)
        second = api.client.get(f"/models/{sha}")
        assert second.status_code == 503 and second.headers["retry-after"].isdigit()
    # the server sees the hang-up on its next write, then gives the slot back
    assert wait_for(lambda: api.client.get(f"/models/{sha}").status_code == 200)


def test_post_job_refuses_a_model_the_collector_does_not_keep(
        make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    _online(api, "pi-01")
    response = api.client.post("/api/jobs", headers=AUTH, json={"devices": ["pi-01"], "model": MODEL})
    assert response.status_code == 422 and "edgemeter models add" in response.json()["error"]
    assert api.published == []


def test_post_job_says_which_devices_are_offline(make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    _online(api, "pi-01")
    _online(api, "pi-02", status="offline")
    body = api.client.post("/api/jobs", headers=AUTH,
                           json={"devices": ["pi-01", "pi-02"], "model": MODEL}).json()
    assert body["offline"] == ["pi-02"]
    assert len(body["jobs"]) == 2


def test_an_unexpected_failure_is_a_500_with_a_json_error(make_api: Callable[..., Api]) -> None:
    def broken(_topic: str, _payload: bytes) -> None:
        raise RuntimeError("bug")

    api = make_api(token=TOKEN, publisher=broken)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    _online(api, "pi-01")
    response = api.client.post("/api/jobs", headers=AUTH, json={"devices": ["pi-01"], "model": MODEL})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (RuntimeError); the collector's log has "
                                        "the details"}


def _capable(api: Api, device_id: str, formats: list[str]) -> None:
    backends = {"onnx": "onnxruntime", "tflite": "litert"}
    manifest = AgentManifest(agent_version="1", device=DeviceManifest(hostname=device_id),
                             formats=formats, backends={backends[f]: "1.0" for f in formats},
                             execution_providers=["CPUExecutionProvider"] if "onnx" in formats else [])
    api.writer.record_status(Status(device_id=device_id, fleet="lab", status="online", bd_seq=1,
                                    sent_at=NOW, manifest=manifest), NOW)


def test_post_job_skips_devices_whose_birth_says_they_cannot_run_the_model(
        make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)  # the collector keeps it: only capability decides
    _capable(api, "pi-lite", ["tflite"])
    _capable(api, "pi-both", ["onnx", "tflite"])
    _online(api, "pi-old")  # an older agent's birth says nothing: it is given the job
    onnx = {"sha256": MODEL["sha256"], "name": "m.onnx"}
    body = api.client.post("/api/jobs", headers=AUTH, json={"selector": "pi-*", "model": onnx}).json()
    assert sorted(j["device_id"] for j in body["jobs"]) == ["pi-both", "pi-old"]
    (skipped,) = body["skipped"]
    assert skipped["device_id"] == "pi-lite" and "'onnx' extra" in skipped["reason"]
    assert len(api.published) == 2


def test_post_job_no_selected_device_can_run_is_a_422_naming_each(make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    api.writer.add_model(MODEL["name"], MODEL_CONTENT)
    _capable(api, "pi-1", ["tflite"])
    _capable(api, "pi-2", ["tflite"])
    response = api.client.post("/api/jobs", headers=AUTH, json={
        "devices": ["pi-1", "pi-2"], "model": {"sha256": MODEL["sha256"], "name": "m.onnx"}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert "no selected device can run m.onnx" in error and "pi-1: no onnxruntime" in error and "pi-2" in error
    assert api.published == []
