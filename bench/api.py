#!/usr/bin/env python3
"""What the collector's HTTP API costs at fleet scale, and what an open dashboard costs ingest.

Reads: a PostgreSQL schema of its own (dropped after) filled with ``--devices`` devices (a birth
and a telemetry message each, through the store's own methods) and ``--results`` results (the
store's ``add_results`` in batches of 5,000, the JSON built once per model and varied by
replacement), then the app on uvicorn on a free loopback port, and ``--calls`` timed requests of
each of the fleet page's calls (``/api/devices`` first page, a device's detail) and of
``/api/runs`` (first page, a deep page by cursor, one device's, one model's). The device list is
served from a cache read at most once a second; a second server without the cache shows what one
read of the store costs. Prints p50 and p99 in milliseconds (target for the fleet page: p99 under
100 ms).

Ingest: a private Mosquitto and the collector service on another fresh schema; ``--ingest``
results published at full speed, timed from the first publish until all are stored. Rounds
alternate the dashboard closed (no HTTP server) and open (the app serving from the same process,
one Server-Sent Events client reading every event, and a poller fetching ``/api/devices`` and
``/api/runs`` every second as the page does). Prints the median stored results/s of each and the
median of each round's open/closed ratio, with its range (target at least 0.9).

Idle readers: the same ingest (``--reader-results`` results per round) with no event stream open,
then with ``--readers`` (the ``[http] max_event_readers`` cap, 64) idle ``/api/events`` streams
open (raw sockets that never read), alternating over ``--rounds`` rounds; prints the median time
ratio with/without (target at most 1.2), ``/api/devices`` p50/p99 while they are open (target p99
under 100 ms), the process's RSS before they open and after they close (target: back within 32
MiB), its thread count with them open, and that one reader past the cap gets 503.

    .venv/bin/python bench/api.py [--db postgresql://postgres@127.0.0.1:5432/test]
        [--devices 1000] [--results 100000] [--calls 50] [--ingest 3000] [--rounds 5]
        [--readers 64] [--reader-results 1000] [--skip-reads] [--skip-ingest] [--skip-readers]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from collector.config import HttpSettings, MqttSettings
from collector.events import EventBus
from collector.http import HttpServer, create_app, open_read_store
from collector.metrics import CollectorMetrics
from collector.service import CollectorService
from collector.stores.base import open_store
from edgemeter.commands.simulate import MODELS, VirtualDevice, synthetic_result
from edgemeter.demo.broker import PrivateBroker
from shared.messages import Status, Telemetry
from shared.mqtt import connect
from shared.schema import BenchmarkResult
from shared.topics import Topics

BATCH = 5000
SENTINEL_RUN = "00000000-0000-4000-8000-000000000000"
SENTINEL_DEVICE = "DEVICE-SENTINEL"
SENTINEL_TIME = "2020-06-01T00:00:00Z"
FLEET = "bench"


@contextmanager
def schema(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new schema, dropped on exit."""
    import psycopg

    name = f"bench_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def templates() -> list[tuple[BenchmarkResult, str]]:
    """One result per demo model, with its JSON holding sentinels to replace."""
    rng = random.Random(7)
    out = []
    for index in range(len(MODELS)):
        result = synthetic_result(rng, SENTINEL_DEVICE, FLEET, 1, index)
        result = result.model_copy(update={
            "run_id": uuid.UUID(SENTINEL_RUN),
            "created_at": datetime.fromisoformat(SENTINEL_TIME.replace("Z", "+00:00"))})
        out.append((result, result.model_dump_json()))
    return out


def fill(url: str, devices: int, results: int) -> list[str]:
    """Devices (birth + telemetry) and results; returns the device ids."""
    store = open_store(url)
    ids = [f"dev-{i:05d}" for i in range(devices)]
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    for i, device_id in enumerate(ids):
        vd = VirtualDevice(device_id, FLEET, i)
        store.record_status(Status.model_validate_json(vd.status("online")), now)
        store.record_telemetry(Telemetry.model_validate_json(vd.telemetry(60.0, random.Random(i))),
                               now)
    print(f"filled {devices} devices in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    base = now - timedelta(seconds=results)
    kinds = templates()
    batch: list[BenchmarkResult] = []
    payloads: list[bytes] = []
    for n in range(results):
        template, text = kinds[n % len(kinds)]
        device_id = ids[n % devices]
        run_id = str(uuid.uuid4())
        created = base + timedelta(seconds=n)
        seq = n // devices + 1
        batch.append(template.model_copy(update={
            "run_id": uuid.UUID(run_id), "device_id": device_id, "created_at": created, "seq": seq}))
        payloads.append(text.replace(SENTINEL_RUN, run_id).replace(SENTINEL_DEVICE, device_id)
                        .replace(SENTINEL_TIME, created.isoformat().replace("+00:00", "Z"))
                        .replace('"seq":1,', f'"seq":{seq},', 1).encode())
        if len(batch) == BATCH:
            store.add_results(batch, payloads=payloads)
            batch, payloads = [], []
    if batch:
        store.add_results(batch, payloads=payloads)
    store.close()
    print(f"filled {results} results in {time.perf_counter() - started:.1f} s", flush=True)
    return ids


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    rank = lambda q: ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]  # noqa: E731
    return rank(0.5), rank(0.99)


def time_calls(client: httpx.Client, path: Callable[[int], str], calls: int) -> list[float]:
    for i in range(3):  # warm the pool and the planner
        client.get(path(i)).raise_for_status()
    out = []
    for i in range(calls):
        started = time.perf_counter()
        client.get(path(i)).raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return out


def serve(url: str, events: EventBus, metrics: CollectorMetrics,
          publisher: Callable[[str, bytes], None], device_cache_s: float = 1.0
          ) -> tuple[HttpServer, Any]:
    reader = open_read_store(url)
    app = create_app(reader, events=events, metrics=metrics, publisher=publisher,
                     settings=HttpSettings(), device_cache_s=device_cache_s)
    server = HttpServer(app, "127.0.0.1", 0, on_stop=reader.close)
    server.start()
    return server, reader


def bench_reads(base_url: str, devices: int, results: int, calls: int) -> None:
    with schema(base_url) as url:
        ids = fill(url, devices, results)
        server, _ = serve(url, EventBus(), CollectorMetrics(), lambda _t, _p: None)
        uncached, _ = serve(url, EventBus(), CollectorMetrics(), lambda _t, _p: None,
                            device_cache_s=0)
        rng = random.Random(1)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                deep = client.get("/api/runs", params={"limit": 50}).json()
                for _ in range(20):  # page 21
                    deep = client.get("/api/runs", params={"limit": 50,
                                                           "cursor": deep["next_cursor"]}).json()
                cursor = deep["next_cursor"]
                model = MODELS[0][0]
                cases: list[tuple[str, Callable[[int], str]]] = [
                    ("/api/devices (first page of 100)", lambda _i: "/api/devices?limit=100"),
                    ("/api/devices (first page, no cache: reads the store)",
                     lambda _i: f"{uncached.url}/api/devices?limit=100"),
                    ("/api/devices?status=online&sort=-latest_p50_ms",
                     lambda _i: "/api/devices?limit=100&status=online&sort=-latest_p50_ms"),
                    ("/api/devices/{id} (detail)", lambda _i: f"/api/devices/{rng.choice(ids)}"),
                    ("/api/runs (first page of 50)", lambda _i: "/api/runs?limit=50"),
                    ("/api/runs (page 22 by cursor)",
                     lambda _i: f"/api/runs?limit=50&cursor={cursor}"),
                    ("/api/runs?device=ID", lambda _i: f"/api/runs?limit=50&device={rng.choice(ids)}"),
                    ("/api/runs?model=NAME", lambda _i: f"/api/runs?limit=50&model={model}"),
                ]
                print(f"\nHTTP API on PostgreSQL, {devices} devices, {results} results, "
                      f"{calls} calls each (ms)")
                print(f"{'call':50s} {'p50':>8s} {'p99':>8s}")
                for name, path in cases:
                    p50, p99 = percentiles(time_calls(client, path, calls))
                    print(f"{name:50s} {p50:8.1f} {p99:8.1f}", flush=True)
        finally:
            server.stop()
            uncached.stop()


class Dashboard:
    """An open fleet page: one SSE reader and a poller every second."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.events = 0
        self.polls = 0
        self.threads = [threading.Thread(target=self._stream, daemon=True),
                        threading.Thread(target=self._poll, daemon=True)]

    def _stream(self) -> None:
        with httpx.Client(timeout=None) as client, \
                client.stream("GET", self.url + "/api/events") as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    self.events += 1
                if self.stop.is_set():
                    return

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.wait(1.0):
                client.get("/api/devices", params={"limit": 100}).raise_for_status()
                client.get("/api/runs", params={"limit": 50}).raise_for_status()
                self.polls += 1

    def __enter__(self) -> Dashboard:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


def ingest_round(broker_url: str, url: str, count: int, dashboard: bool) -> float:
    store = open_store(url)
    events, metrics = EventBus(), CollectorMetrics()
    service = CollectorService(store, MqttSettings(url=broker_url,
                                                   client_id=f"bench-api-{uuid.uuid4().hex[:6]}"),
                               metrics=metrics, events=events)
    service.start()
    server = None
    kinds = templates()
    payloads = []
    for n in range(count):
        _, text = kinds[n % len(kinds)]
        device = f"ing-{n % 50:03d}"
        payloads.append((Topics.result(FLEET, device),
                         text.replace(SENTINEL_RUN, str(uuid.uuid4())).replace(SENTINEL_DEVICE, device)
                         .replace(SENTINEL_TIME, datetime.now(timezone.utc).isoformat()
                                  .replace("+00:00", "Z")).encode()))
    before = service.stats["stored"]
    try:
        if dashboard:
            server, _ = serve(url, events, metrics, service.publish)
        with connect(broker_url, f"bench-pub-{uuid.uuid4().hex[:6]}") as pub, \
                (Dashboard(server.url) if server else _Null()) as open_page:
            time.sleep(1.5 if dashboard else 0)  # the page is open and streaming before we start
            started = time.perf_counter()
            for topic, payload in payloads:
                pub.publish(topic, payload, qos=1, wait=False)
            while service.stats["stored"] - before < count:
                time.sleep(0.01)
                if time.perf_counter() - started > 300:
                    raise SystemExit(f"ingest stalled at {service.stats}")
            elapsed = time.perf_counter() - started
            if dashboard and isinstance(open_page, Dashboard) and open_page.events == 0:
                raise SystemExit("the dashboard's event stream received nothing")
    finally:
        if server is not None:
            server.stop()
        service.stop()
        store.close()
    return count / elapsed


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def bench_ingest(base_url: str, count: int, rounds: int) -> None:
    closed, opened, ratios = [], [], []
    with PrivateBroker(prefer="mosquitto") as broker, schema(base_url) as url:
        open_store(url).close()  # migrate once
        ingest_round(broker.url, url, min(count, 500), False)  # warm-up
        for r in range(rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            pair = {}
            for dashboard in order:
                rate = ingest_round(broker.url, url, count, dashboard)
                pair[dashboard] = rate
                (opened if dashboard else closed).append(rate)
                print(f"round {r + 1}: dashboard {'open  ' if dashboard else 'closed'} "
                      f"{rate:7.0f} results/s", flush=True)
            ratios.append(pair[True] / pair[False])
    c, o = statistics.median(closed), statistics.median(opened)
    print(f"\ningest on PostgreSQL, {count} results per round, {rounds} rounds: dashboard closed "
          f"{c:.0f}/s, open and streaming {o:.0f}/s (medians); open/closed ratio per round: median "
          f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
          "(target >= 0.9)")


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_idle_readers(port: int, count: int) -> list[socket.socket]:
    """``count`` event streams that never read: sockets that sent the request and sit."""
    readers = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        readers.append(sock)
    return readers


def stored_in(service: CollectorService, publisher: Any, payloads: list[tuple[str, bytes]]) -> float:
    before = service.stats["stored"]
    started = time.perf_counter()
    for topic, payload in payloads:
        publisher.publish(topic, payload, qos=1, wait=False)
    while service.stats["stored"] - before < len(payloads):
        time.sleep(0.005)
        if time.perf_counter() - started > 300:
            raise SystemExit(f"ingest stalled at {service.stats}")
    return time.perf_counter() - started


def bench_readers(base_url: str, readers: int, count: int, rounds: int, calls: int) -> None:
    kinds = templates()

    def batch() -> list[tuple[str, bytes]]:
        out = []
        for n in range(count):
            _, text = kinds[n % len(kinds)]
            device = f"idle-{n % 50:03d}"
            out.append((Topics.result(FLEET, device), text.replace(SENTINEL_RUN, str(uuid.uuid4()))
                        .replace(SENTINEL_DEVICE, device).replace(SENTINEL_TIME, datetime.now(
                            timezone.utc).isoformat().replace("+00:00", "Z")).encode()))
        return out

    with PrivateBroker(prefer="mosquitto") as broker, schema(base_url) as url:
        store = open_store(url)
        events, metrics = EventBus(), CollectorMetrics()
        service = CollectorService(store, MqttSettings(url=broker.url, client_id="bench-idle"),
                                   metrics=metrics, events=events)
        service.start()
        reader = open_read_store(url)
        app = create_app(reader, events=events, metrics=metrics, publisher=service.publish,
                         settings=HttpSettings(max_event_readers=readers), device_cache_s=1.0)
        server = HttpServer(app, "127.0.0.1", 0, on_stop=reader.close)
        server.start()
        port = server.port
        without: list[float] = []
        with_readers: list[float] = []
        try:
            with connect(broker.url, "bench-idle-pub") as pub, \
                    httpx.Client(base_url=server.url, timeout=30) as client:
                stored_in(service, pub, batch())  # warm-up: the store, the app, the pool
                client.get("/api/devices").raise_for_status()
                rss_before = rss_mib()
                threads_before = threading.active_count()
                for r in range(rounds):
                    for opened in ([False, True] if r % 2 == 0 else [True, False]):
                        if not opened:
                            without.append(stored_in(service, pub, batch()))
                            continue
                        idle = open_idle_readers(port, readers)
                        time.sleep(0.5)  # the server has subscribed them all
                        with_readers.append(stored_in(service, pub, batch()))
                        if r == 0:
                            refused = client.get("/api/events")
                            threads_open = threading.active_count()
                            p50, p99 = percentiles(time_calls(
                                client, lambda _i: "/api/devices?limit=100", calls))
                        for sock in idle:
                            sock.close()
                        time.sleep(1.0)  # the server sees them go
                time.sleep(1.0)
                rss_after = rss_mib()
        finally:
            server.stop()
            service.stop()
            store.close()
    ratio = statistics.median(w / o for w, o in zip(with_readers, without, strict=True))
    print(f"\n{readers} idle /api/events readers (the cap) on PostgreSQL, {count} results per "
          f"round, {rounds} rounds:")
    print(f"  storing {count} results: {statistics.median(without):.2f} s without readers, "
          f"{statistics.median(with_readers):.2f} s with them (medians); with/without ratio "
          f"{ratio:.2f} (target <= 1.2)")
    print(f"  /api/devices with them open: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 100)")
    print(f"  threads: {threads_before} before, {threads_open} with them open; one more reader: "
          f"HTTP {refused.status_code} (Retry-After {refused.headers.get('retry-after')})")
    print(f"  RSS: {rss_before:.0f} MiB before they opened, {rss_after:.0f} MiB after they closed "
          f"(difference {rss_after - rss_before:+.0f} MiB, target within 32)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--ingest", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--readers", type=int, default=64)
    parser.add_argument("--reader-results", type=int, default=1000)
    parser.add_argument("--skip-readers", action="store_true")
    args = parser.parse_args()
    if not args.skip_reads:
        bench_reads(args.db, args.devices, args.results, args.calls)
    if not args.skip_ingest:
        bench_ingest(args.db, args.ingest, args.rounds)
    if not args.skip_readers:
        bench_readers(args.db, args.readers, args.reader_results, args.rounds, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
