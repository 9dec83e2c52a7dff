"""The app's frame: access rules, OpenAPI without a CDN page, /metrics text, live events."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.http.auth import AccessPolicy, is_loopback, split_listen
from tests.collector.conftest import wait_for
from tests.http.conftest import TOKEN, Api

JOB = {"devices": ["pi-01"], "model": {"sha256": "a" * 64, "name": "m.tflite"}}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("collector.lan", False),
])
def test_only_loopback_binds_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_listen_splits_ipv6_brackets() -> None:
    assert split_listen("[::1]:8080") == ("::1", 8080)
    assert split_listen("0.0.0.0:80") == ("0.0.0.0", 80)


def test_policy_compares_the_token_and_takes_it_from_the_query_for_events_only() -> None:
    policy = AccessPolicy(loopback=False, token=TOKEN)
    assert policy.refusal("GET", "/api/runs", f"Bearer {TOKEN}", None) is None
    assert policy.refusal("GET", "/api/runs", "Bearer nope", None) == (401, "wrong bearer token")
    assert policy.refusal("GET", "/api/events", None, TOKEN) is None
    assert policy.refusal("GET", "/api/runs", None, TOKEN) is not None


def test_reads_are_open_on_loopback(api: Api) -> None:
    assert api.client.get("/api/runs").status_code == 200
    assert api.client.get("/metrics").status_code == 200


def test_a_post_needs_the_token_even_on_loopback(make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    refused = api.client.post("/api/jobs", json=JOB)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in refused.json()["error"]
    assert api.published == []


def test_a_post_without_a_configured_token_says_how_to_set_one(api: Api) -> None:
    response = api.client.post("/api/jobs", json=JOB, headers={"Authorization": "Bearer x"})
    assert response.status_code == 403
    assert "token_file" in response.json()["error"]


def test_off_loopback_every_read_needs_the_token(make_api: Callable[..., Api]) -> None:
    api = make_api(listen="0.0.0.0:8080", token=TOKEN)
    for path in ("/api/runs", "/api/compare", "/metrics", "/openapi.json", "/api/jobs"):
        assert api.client.get(path).status_code == 401, path
        assert api.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = api.client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_off_loopback_without_a_token_refuses_reads(make_api: Callable[..., Api]) -> None:
    api = make_api(listen="0.0.0.0:8080")
    assert api.client.get("/api/runs").status_code == 403


def test_openapi_is_published_and_docs_need_no_cdn(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    for path in ("/api/devices", "/api/devices/{device_id}", "/api/runs", "/api/runs/{run_id}",
                 "/api/compare", "/api/jobs", "/api/models", "/models/{sha256}", "/api/events",
                 "/metrics"):
        assert path in schema["paths"], path
    assert api.client.get("/docs").status_code == 404
    assert api.client.get("/redoc").status_code == 404


def test_metrics_are_prometheus_text_from_the_services_registry(api: Api) -> None:
    api.metrics.stored.inc(3)
    api.metrics.devices_online.set(2)
    response = api.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = {s.name: s.value for family in text_string_to_metric_families(response.text)
               for s in family.samples}
    assert samples["edgemeter_collector_results_stored_total"] == 3
    assert samples["edgemeter_collector_devices_online"] == 2


def _read_events(url: str, want: int, got: list[str], subscribed: threading.Event) -> None:
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
        for line in response.iter_lines():
            got.append(line)
            subscribed.set()  # the stream subscribes to the bus before its first line
            if sum(1 for g in got if g.startswith("data:")) >= want:
                return


def test_a_published_event_arrives_as_server_sent_event(api: Api) -> None:
    got: list[str] = []
    subscribed = threading.Event()
    reader = threading.Thread(target=_read_events,
                              args=(f"{api.url}/api/events", 2, got, subscribed), daemon=True)
    reader.start()
    assert subscribed.wait(10)
    api.events.publish("result", {"run_id": "r1", "device_id": "pi-01", "p50_ms": 2.5})
    api.events.publish("status", {"device_id": "pi-01", "status": "online"})
    reader.join(10)
    assert got[0] == "retry: 2000"
    assert "event: result" in got
    assert 'data: {"run_id":"r1","device_id":"pi-01","p50_ms":2.5}' in got
    assert "event: status" in got
    ids = [int(line.split(": ")[1]) for line in got if line.startswith("id: ")]
    assert len(ids) == 2 and ids[1] == ids[0] + 1


def test_events_off_loopback_take_the_token_as_a_query_parameter(
        make_api: Callable[..., Api]) -> None:
    api = make_api(listen="0.0.0.0:8080", token=TOKEN)
    assert api.client.get("/api/events").status_code == 401
    with api.client.stream("GET", "/api/events", params={"token": TOKEN}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")


def test_index_without_dashboard_files_says_where_the_api_is(make_api: Callable[..., Api],
                                                            tmp_path: Path) -> None:
    api = make_api(static_dir=tmp_path)
    response = api.client.get("/")
    assert response.status_code == 404
    assert "/openapi.json" in response.json()["error"]


def test_dashboard_index_and_static_files_are_served(make_api: Callable[..., Api],
                                                     tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>fleet</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    api = make_api(listen="0.0.0.0:8080", token=TOKEN, static_dir=tmp_path)  # code, not data
    page = api.client.get("/")
    assert page.status_code == 200
    assert "<title>fleet</title>" in page.text
    script = api.client.get("/static/app.js")
    assert script.status_code == 200
    assert script.text == "console.log(1)"
    assert api.client.get("/static/missing.js").status_code == 404


def test_served_connections_have_nagle_off(make_api: Callable[..., Api]) -> None:
    # Nagle plus the client's delayed ACK made every keep-alive response wait ~40 ms
    api = make_api()
    server = api.server._server  # uvicorn's, for its open connections
    api.client.get("/api/runs")
    connections = list(server.server_state.connections)
    assert connections
    for connection in connections:
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# -- Host header, event stream cap, OpenAPI answers ------------------------------------------------


@pytest.mark.parametrize(("listen", "host", "allowed"), [
    ("127.0.0.1:8080", "127.0.0.1:8080", True),
    ("127.0.0.1:8080", "localhost:8080", True),
    ("127.0.0.1:8080", "[::1]:8080", True),
    ("127.0.0.1:8080", "evil.example:8080", False),
    ("127.0.0.1:8080", "rebind.attacker.test", False),
    ("127.0.0.1:8080", "collector.lab:8080", True),     # configured below
    ("0.0.0.0:8080", "192.168.1.5:8080", True),         # bound everywhere: any address
    ("0.0.0.0:8080", "evil.example", False),
    ("192.168.1.5:8080", "10.0.0.9:8080", False),
])
def test_host_check_allows_this_servers_names_only(listen: str, host: str, allowed: bool) -> None:
    from collector.http.auth import HostCheck

    check = HostCheck(split_listen(listen)[0], ["collector.lab"])
    assert check.allows(host) is allowed


def test_a_request_for_another_host_name_gets_a_400(make_api: Callable[..., Api]) -> None:
    api = make_api(allowed_hosts=["collector.lab"])
    refused = api.client.get("/api/devices", headers={"Host": "rebind.attacker.test"})
    assert refused.status_code == 400 and "allowed_hosts" in refused.json()["error"]
    assert api.client.get("/api/devices", headers={"Host": "collector.lab:8080"}).status_code == 200
    assert api.client.get("/api/devices").status_code == 200  # 127.0.0.1:PORT


def test_event_streams_past_the_cap_get_a_503_and_a_closed_one_frees_its_slot(
        make_api: Callable[..., Api]) -> None:
    api = make_api(max_event_readers=2)
    with api.client.stream("GET", "/api/events") as one, \
            api.client.stream("GET", "/api/events") as two:
        assert (one.status_code, two.status_code) == (200, 200)
        third = api.client.get("/api/events")
        assert third.status_code == 503 and third.headers["retry-after"].isdigit()
        assert "max_event_readers" in third.json()["error"]

    def frees() -> bool:
        with api.client.stream("GET", "/api/events") as again:
            return again.status_code == 200

    assert wait_for(frees)


def test_event_readers_take_no_thread_each(make_api: Callable[..., Api]) -> None:
    api = make_api(max_event_readers=40)
    before = threading.active_count()
    with contextlib.ExitStack() as streams:
        for _ in range(30):
            response = streams.enter_context(api.client.stream("GET", "/api/events"))
            assert response.status_code == 200
        api.events.publish("status", {"device_id": "pi-01"})
        assert threading.active_count() - before < 10


def test_openapi_lists_the_error_answers_of_every_route(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            listed = set(operation["responses"])
            assert {"400", "401", "404", "422", "503"} <= listed, (method, path, listed)
    error = document["components"]["schemas"]["ErrorAnswer"]
    assert error["required"] == ["error"]
