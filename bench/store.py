#!/usr/bin/env python3
"""The dashboard's queries on a PostgreSQL store holding a million results: p50 and p99.

Fills a throwaway database ``edgemeter_bench_store_<pid>`` on the server of ``--postgres`` (made
and dropped here; no other database is touched) through the store's own migrations, so
``results`` is partitioned by month as in production. Rows are realistic: ``--devices`` devices
(2% of them datacenter baselines), 12 models (6 networks, TFLite and ONNX), one result JSON
built once per model by the test factories (200-sample histograms, full manifests; about 2 KB)
with run_id, device, seq, created_at and ``device.hardware_key`` varied per row, spread over the
last ~6 months (so 7 month partitions) with a few seq numbers skipped. Edge devices are six kinds
of board and the baselines four kinds of server (``device.hardware_key``, as the agent finds it in
the catalogue); every 100th device has no key (a hardware group of its own). One result per month
goes through ``add_results`` (which makes that month's partition); the rest go in by COPY into
``results`` and ``result_ids``, not through MQTT, and the ``series`` table is then rebuilt from
them by schema revision 0004's own function. Every device also gets a birth (with manifest) and
telemetry through the store, and its ``latest_*`` figures are set from its newest result.

Then each query runs ``--runs`` times (after 3 warm-ups; the device or model varies per run):

* compare one model, whole fleet: ``collector.http.api.compare_answer(model=<network>)``, what
  ``GET /api/compare?model=<network>`` runs for the dashboard's compare page (less HTTP):
  ``compare_runs(model=network, device=None)`` (each edge and each baseline hardware group's newest
  run per model file and scenario), the cited rows (stored and shipped), the engine's rows and
  the JSON body
* compare one model, one device: the same with ``device=`` (the device's newest 50 runs per model
  file and scenario), and, for reference, ``compare_runs`` alone with every run (``0``)
* fleet page: ``list_devices()`` (every device with presence, telemetry and newest figures)
* device history: ``list_results(device_id=..., limit=50)``
* runs by model: ``list_results(model=<network>, limit=50)`` (name, network or sha256)
* run page: ``get_result(run_id)``
* seq gaps, one device: ``seq_gaps(device_id=...)``

and prints p50/p99 in ms (target: p99 under 100 ms). The process tunes its garbage collector as
``collector serve``, whose process answers the dashboard, does when it starts. It also times
``add_results`` batches of 250 into the full table, and measures ``export --format jsonl`` peak
RSS (``VmHWM``) for a small and a ten times larger export (each in a fresh subprocess): bounded
memory means both peaks are about equal. Last, ``GET /api/compare?runs_per_series=0`` over the
whole store (every edge run, its streamed body read and dropped, in a fresh subprocess): its RSS
growth, sampled every 50 ms (target under 64 MiB at 100,000 results).

    .venv/bin/python bench/store.py [--results 1000000] [--devices 1000] [--runs 50]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

``bench/store.py telemetry`` measures the telemetry history instead: the device page's charts
over a week of a fleet's telemetry (``bench/telemetry_store.py``, whose docstring says how).

Measured on the 2-core shared development VM (PostgreSQL 15 on the same VM, other jobs at times),
1,000,000 results from 1,000 devices, 50 runs each, p50 / p99 ms: compare one model, whole fleet
(the dashboard's compare page) 31.4 / 60.1 (32 edge runs, 8 measured baselines, 256 rows, a 564
KiB answer); one device 47.1 / 81.8 (51 edge runs, 440 rows); fleet page 39.3 / 61.5; device
history 13.6 / 24.1; runs by model 14.7 / 24.9; run page 2.7 / 5.5; seq gaps of a device 5.1 /
12.8. Every dashboard query under the 100 ms target. For reference, compare's inputs alone with
every run of the device and every baseline (``runs_per_series`` 0) 481 / 791. Filling took 145 s
(the series rebuild 4 s, 12,001 series). add_results into the full table: 2,600 rows/s. Export
of 20,000 and 200,000 results: peak RSS 85 and 86 MiB (ratio 1.01).

Before compare took representatives (same VM and size): one device's compare inputs, newest 50
runs per series, 222 / 273 ms (20 datacenter devices x 2 model files x 50 baselines to parse);
the whole fleet's 11.1 s (tens of thousands of runs, paired each with each). Before the export
peak was read from ``VmHWM``, each export reported at least this process's RSS when it forked
(295 MiB in that run; 4.4 GiB in one whose parent had grown), which hid its own.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_ADMIN_URL = os.environ.get(
    "EDGEMETER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NETWORKS = ("vww_96", "kws_dscnn", "ic_resnet8", "ad_autoencoder", "mobilenet_v1", "retinaface")
#: ``device.hardware_key`` of the edge boards and the datacenter baselines, as the agent detects
#: them from the catalogue; every 100th device has none (an unknown board: a group of its own).
EDGE_HARDWARE = ("raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano-8gb",
                 "coral-dev-board", "generic-aarch64")
DATACENTER_HARDWARE = ("nvidia-a100", "nvidia-t4", "nvidia-l4", "xeon-8380-2s")
SPREAD_DAYS = 180
COPY_COLUMNS = ("run_id", "device_id", "fleet", "role", "created_at", "model_name", "model_sha256",
                "network", "scenario", "seq", "received_at", "topic", "result")
TEMPLATE_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
TEMPLATE_DEVICE = "bench-template-device"


def with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def with_driver(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


# -- filling ------------------------------------------------------------------------------------


class Templates:
    """One result JSON per model, and the tokens a row replaces in it."""

    def __init__(self) -> None:
        from tests.factories import make_result

        self.models: list[dict[str, Any]] = []
        for network in NETWORKS:
            for fmt, suffix in (("tflite", "int8.tflite"), ("onnx", "int8_qdq.onnx")):
                result = make_result(device_id=TEMPLATE_DEVICE, network=network, fmt=fmt,
                                     model_name=f"{network}_{suffix}", created_at=TEMPLATE_TIME,
                                     p50_ms=random.uniform(0.5, 40.0))
                self.models.append({"result": result, "json": result.model_dump_json()})
        self.time_token = '"created_at":"2026-01-02T03:04:05.678901Z"'

    def row(self, model: int, device_id: str, role: str, seq: int,
            created_at: datetime, received_at: datetime,
            hardware_key: str | None = None) -> tuple[Any, ...]:
        template = self.models[model]
        result = template["result"]
        run_id = str(uuid.uuid4())
        document = (template["json"]
                    .replace(str(result.run_id), run_id)
                    .replace(TEMPLATE_DEVICE, device_id)
                    .replace(self.time_token, f'"created_at":"{created_at.isoformat()[:-6]}Z"')
                    .replace('"seq":0,', f'"seq":{seq},', 1)
                    .replace('"role":"edge"', f'"role":"{role}"', 1))
        if hardware_key is not None:
            document = document.replace('"hardware_key":null', f'"hardware_key":"{hardware_key}"',
                                        1)
        return (run_id, device_id, "bench", role, created_at, result.model.name,
                result.model.sha256, result.model.network, "single-stream", seq, received_at,
                f"edgemeter/v1/bench/{device_id}/result", document)


def device_ids(count: int) -> list[tuple[str, str]]:
    """(device_id, role): 2% datacenter baselines, the rest edge boards."""
    baselines = max(1, count // 50)
    return [(f"dc-{i:04d}", "datacenter") if i < baselines else (f"pi-{i:04d}", "edge")
            for i in range(count)]


def hardware_of(index: int, role: str) -> str | None:
    """The ``device.hardware_key`` of the index-th device (None for every 100th)."""
    if index % 100 == 99:
        return None
    keys = DATACENTER_HARDWARE if role == "datacenter" else EDGE_HARDWARE
    return keys[index % len(keys)]


def rows(total: int, devices: list[tuple[str, str]], templates: Templates,
         now: datetime) -> Iterator[tuple[Any, ...]]:
    """``total`` rows, device by device, each device's seq rising with created_at (0.1% of seq
    numbers skipped: a device's lost results)."""
    rng = random.Random(1)
    per_device = total // len(devices)
    step = timedelta(days=SPREAD_DAYS) / per_device
    start = now - timedelta(days=SPREAD_DAYS)
    for index, (device_id, role) in enumerate(devices):
        count = per_device + (1 if index < total % len(devices) else 0)
        seq = 0
        favourite = rng.randrange(len(templates.models))
        for i in range(count):
            seq += 2 if rng.random() < 0.001 else 1
            created = start + step * i + timedelta(seconds=rng.random() * 60)
            model = favourite if rng.random() < 0.7 else rng.randrange(len(templates.models))
            yield templates.row(model, device_id, role, seq, created,
                                created + timedelta(seconds=2), hardware_of(index, role))


def fill(store: Any, url: str, total: int, devices: list[tuple[str, str]], now: datetime) -> None:
    import psycopg

    from shared.messages import AgentManifest, Status, Telemetry
    from shared.schema import BenchmarkResult, DeviceManifest

    templates = Templates()
    started = time.perf_counter()
    # one result per month through the store: it makes that month's partition
    month = now - timedelta(days=SPREAD_DAYS + 1)
    seeded = 0
    while month <= now + timedelta(days=31):
        doc = templates.row(0, "seed-device", "edge", seeded, min(month, now), now)[-1]
        store.add_results([BenchmarkResult.model_validate_json(doc)])
        month += timedelta(days=28)
        seeded += 1
    copied = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY results ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            ids = []
            for row in rows(total - seeded, devices, templates, now):
                copy.write_row(row)
                ids.append((row[0], row[4]))
                copied += 1
                if copied % 200_000 == 0:
                    print(f"  copied {copied} results ({time.perf_counter() - started:.0f} s)",
                          file=sys.stderr)
        with cur.copy("COPY result_ids (run_id, created_at) FROM STDIN") as copy:
            for pair in ids:
                copy.write_row(pair)
        conn.commit()
    print(f"  {copied + seeded} results in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    received = now
    for bd_seq, (device_id, _role) in enumerate(devices):
        manifest = AgentManifest(agent_version="0.9.0", device=DeviceManifest(
            hostname=device_id, board="Raspberry Pi 5 Model B Rev 1.0", cpu_model="Cortex-A76",
            cpu_cores=4), runtimes={"litert": "1.4.0", "onnxruntime": "1.22.0"},
            power_sources=["estimate"])
        store.record_status(Status(device_id=device_id, fleet="bench", status="online",
                                   bd_seq=bd_seq % 7, manifest=manifest), received)
        store.record_telemetry(Telemetry(device_id=device_id, fleet="bench", sent_at=received,
                                         uptime_s=3600.0, cpu_util_pct=12.5, spool_depth=0,
                                         temps_c={"cpu": 51.0}), received)
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE devices d SET latest_run_id = r.run_id, latest_created_at = r.created_at, "
            "latest_p50_ms = (r.result->'latency_ms'->>'p50')::float8, "
            "latest_power_w = (r.result->'energy'->>'avg_power_w')::float8, "
            "latest_model = r.model_name FROM (SELECT DISTINCT ON (device_id) * FROM results "
            "ORDER BY device_id, created_at DESC, id DESC) r WHERE d.device_id = r.device_id")
        conn.commit()
    from sqlalchemy import create_engine

    from collector.stores.migrations.versions.r0004_series import rebuild_series

    built = time.perf_counter()
    engine = create_engine(with_driver(url))
    with engine.begin() as connection:  # the series of the COPY'd rows, as the migration fills it
        count = rebuild_series(connection)
    engine.dispose()
    print(f"  {count} series rebuilt in {time.perf_counter() - built:.0f} s", file=sys.stderr)
    # vacuumed as a database in steady state is: otherwise autovacuum works through the million
    # new rows during the first queries measured
    admin(url, "VACUUM (ANALYZE)")
    print(f"  filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)


# -- measuring ----------------------------------------------------------------------------------


def timed(name: str, runs: int, query: Callable[[int], object]) -> tuple[str, float, float]:
    for i in range(3):
        query(i)
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        query(i)
        samples.append((time.perf_counter() - start) * 1000)
    p99 = statistics.quantiles(samples, n=100, method="inclusive")[98]
    return name, statistics.median(samples), p99


def measure(store: Any, devices: list[tuple[str, str]], runs: int) -> list[tuple[str, float, float]]:
    import json

    from collector.compare.baselines import RUNS_PER_SERIES, compare_runs
    from collector.http.api import compare_answer
    from collector.stores.base import ResultFilter
    from shared.catalogue import load_catalogue

    rng = random.Random(2)
    edge = [d for d, role in devices if role == "edge"]
    picks = [rng.choice(edge) for _ in range(runs + 3)]
    networks = [NETWORKS[i % len(NETWORKS)] for i in range(runs + 3)]
    run_ids = [r.run_id for r in store.list_results(ResultFilter(limit=runs + 3))]
    catalogue = load_catalogue(None)
    answers: dict[str, list[bytes]] = {}

    def api_compare(name: str, device: Callable[[int], str | None]) -> Callable[[int], object]:
        """What GET /api/compare?model=NETWORK[&device=D] does (its own function, less HTTP):
        the representative runs, the cited rows, the engine's rows, the JSON body."""
        def query(i: int) -> object:
            body = compare_answer(store, catalogue, model=networks[i], device=device(i))
            answers.setdefault(name, []).append(body)
            return body
        return query

    store.list_devices()  # the first call parses every manifest and telemetry (see list_devices)
    measured = [
        timed("compare one model, whole fleet (dashboard)", runs,
              api_compare("fleet", lambda i: None)),
        timed(f"compare one model, one device (newest {RUNS_PER_SERIES})", runs,
              api_compare("device", lambda i: picks[i])),
        timed("  its inputs alone, every run (0)", runs,
              lambda i: compare_runs(store, model=networks[i], device=picks[i], per_series=None)),
        timed("fleet page (list_devices)", runs, lambda i: store.list_devices()),
        timed("device history, newest 50", runs,
              lambda i: store.list_results(ResultFilter(device_id=picks[i], limit=50))),
        timed("runs by model, newest 50", runs,
              lambda i: store.list_results(ResultFilter(model=networks[i], limit=50))),
        timed("run page (get_result)", runs, lambda i: store.get_result(str(run_ids[i]))),
        timed("seq gaps of one device", runs, lambda i: store.seq_gaps(device_id=picks[i])),
    ]
    for name, bodies in answers.items():
        parsed = [json.loads(body) for body in bodies]
        edges = [len({row["edge_run_id"] for row in answer["rows"]}) for answer in parsed]
        print(f"  compare, {name}: {statistics.median(edges):.0f} edge runs, "
              f"{statistics.median(len(a['roles']) for a in parsed):.0f} measured baselines, "
              f"{statistics.median(len(a['rows']) for a in parsed):.0f} rows, "
              f"{statistics.median(map(len, bodies)) / 1024:.0f} KiB (medians)", file=sys.stderr)
    return measured


def ingest_rate(store: Any, devices: list[tuple[str, str]], batches: int = 20) -> float:
    from tests.factories import make_result

    batch = [[make_result(device_id=devices[-1 - (i % 50)][0], seq=10_000_000 + b * 250 + i)
              for i in range(250)] for b in range(batches)]
    spent = 0.0
    for one in batch:
        start = time.perf_counter()
        store.add_results(one)
        spent += time.perf_counter() - start
    return batches * 250 / spent


def export_peak_rss(url: str, limit: int) -> tuple[int, float, float]:
    """(rows, seconds, peak RSS MiB) of ``export --format jsonl`` of the newest ``limit``."""
    out = subprocess.run([sys.executable, __file__, "--export-child", url, str(limit)],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def peak_rss_kib() -> int:
    """This process's peak RSS since it started: ``VmHWM`` (getrusage's ``ru_maxrss`` also
    counts what the parent held when it forked this process, which hid the export's own peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the upper bound


def export_child(url: str, limit: int) -> None:
    from collector.export import StoredResults, export_results
    from collector.stores.base import ResultFilter, open_store

    store = open_store(url, migrate=False)
    start = time.perf_counter()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        count = export_results(StoredResults(store, ResultFilter(limit=limit)), "jsonl", None, sink)
    spent = time.perf_counter() - start
    store.close()
    peak_mib = peak_rss_kib() / 1024
    print(count, f"{spent:.1f}", f"{peak_mib:.0f}")


def compare_every_run_rss(url: str) -> tuple[int, float, float, float]:
    """(bytes, seconds, RSS before MiB, RSS growth MiB) of ``GET /api/compare?runs_per_series=0``
    over the whole store (its streamed body, read and dropped), in a fresh subprocess."""
    out = subprocess.run([sys.executable, __file__, "--compare-child", url],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2]), float(out[3])


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def compare_child(url: str) -> None:
    import threading

    from collector.http.api import compare_stream
    from collector.stores.base import open_store
    from shared.catalogue import load_catalogue

    store = open_store(url, migrate=False)
    catalogue = load_catalogue()
    for _ in compare_stream(store, catalogue, model="no-such-model"):  # imports, first queries
        pass
    before = rss_kib()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, rss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    sent = sum(len(piece) for piece in compare_stream(store, catalogue))
    spent = time.perf_counter() - start
    done.set()
    sampler.join()
    store.close()
    print(sent, f"{spent:.1f}", f"{before / 1024:.0f}", f"{max(peak, rss_kib()) / 1024 - before / 1024:.0f}")


def main() -> int:
    if sys.argv[1:2] == ["telemetry"]:  # the telemetry history's charts: its own bench
        from telemetry_store import main as telemetry_main

        return telemetry_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="bench/store.py telemetry --help: the device page's "
                                            "telemetry charts over a week of a fleet")
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_URL, help="server (its admin database)")
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--export-rows", type=int, default=20_000,
                        help="the small export; the large one is ten times this")
    parser.add_argument("--export-child", nargs=2, metavar=("URL", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--compare-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(args.export_child[0], int(args.export_child[1]))
        return 0
    if args.compare_child:
        compare_child(args.compare_child)
        return 0

    from collector.stores.base import open_store

    name = f"edgemeter_bench_store_{os.getpid()}"
    url = with_database(args.postgres, name)
    admin(args.postgres, f'CREATE DATABASE "{name}"')
    try:
        now = datetime.now(timezone.utc)
        devices = device_ids(args.devices)
        store = open_store(url)
        # the collector's process (which serves the dashboard) freezes what is alive when it
        # starts and collects less often (collector/service.py); without it, every full
        # collection walks the whole process in the middle of some query
        from collector.config import IngestSettings
        from collector.service import tune_gc

        tune_gc(IngestSettings().gc_threshold)
        try:
            print(f"filling {args.results} results from {args.devices} devices into {name}",
                  file=sys.stderr)
            fill(store, url, args.results, devices, now)
            rows_measured = measure(store, devices, args.runs)
            rate = ingest_rate(store, devices)
        finally:
            store.close()
        small = export_peak_rss(url, args.export_rows)
        large = export_peak_rss(url, args.export_rows * 10)
        every = compare_every_run_rss(url)
    finally:
        admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"PostgreSQL, {args.results} results, {args.devices} devices, {args.runs} runs each")
    print(f"{'query':44} {'p50 ms':>8} {'p99 ms':>8}")
    for query, p50, p99 in rows_measured:
        print(f"{query:44} {p50:8.1f} {p99:8.1f}{'' if p99 < 100 else '  (over 100 ms)'}")
    print(f"add_results into the full table: {rate:.0f} rows/s (20 batches of 250)")
    for count, spent, peak in (small, large):
        print(f"export jsonl of {count} results: {spent:.1f} s, peak RSS {peak:.0f} MiB")
    print(f"peak RSS ratio large/small export: {large[2] / small[2]:.2f} (bounded: about 1)")
    sent, spent, before, growth = every
    print(f"compare of every run (runs_per_series=0), streamed: {sent / 2**20:.0f} MiB in "
          f"{spent:.0f} s; RSS {before:.0f} MiB before, growth {growth:.0f} MiB "
          f"(target < 64 MiB: {'met' if growth < 64 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
