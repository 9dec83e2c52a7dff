#!/usr/bin/env python3
"""How fast ``collector serve`` stores results, against two ceilings, on SQLite and PostgreSQL.

Subscribers measured, each in its own process, interleaved in shuffled rounds on one private
Mosquitto (so drift on a shared machine hits each alike):

``count``
    a bare paho subscriber that only counts messages (QoS 1, paho acknowledges): the broker and
    the client library's own ceiling.
``ceiling``
    a bare subscriber that validates each message with the same model
    (``BenchmarkResult.model_validate_json``) and batch-inserts into the same ``results`` table
    (``COPY`` on PostgreSQL, ``executemany`` on SQLite), acknowledging after the commit: a plain
    validate-and-insert loop.
``collector``
    :class:`collector.service.CollectorService` with its default settings and the real store.
``baseline``
    (with ``--baseline DIR``) the collector of another copy of the code, e.g.
    ``git archive <rev> collector shared | tar -x -C DIR``.

Two measurements per subscriber and database:

throughput
    ``--count`` results are queued at the broker for the subscriber's persistent session while it
    is away; then it connects, and results/s = count / (time from connecting to the last commit).
latency
    the parent publishes at a steady ``--rate`` per second for ``--seconds``, each result's
    ``created_at`` set when it is published; latency = commit time (after the store call returns)
    - ``created_at``; p50 and p99 are printed.

Prints the medians per round and the collector's ratio to both ceilings (``collector/ceiling``
and ``collector/count``, medians of the rounds' paired ratios). Targets: collector >= 80 % of the
validate-and-insert ceiling on both databases (>= 1,500 results/s on SQLite), >= 0.25 of the bare
counting subscriber on SQLite (``collector/count``), p50 under 10 ms at 100/s.

    .venv/bin/python bench/ingest.py [--rounds 3] [--count 4000] [--rate 100] [--seconds 10]
        [--baseline DIR] [--postgres URL] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_URL = os.environ.get(
    "EDGEMETER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
"""A database where the bench may create and drop schemas named ``bench_<pid>_*`` (nothing else)."""
FLEET = "bench"
CEILINGS = {"ceiling": "vs a bare validate-and-insert subscriber",
            "count": "vs a bare subscriber that only counts"}
COLUMNS = ("run_id", "device_id", "fleet", "role", "created_at", "model_name", "model_sha256",
           "network", "scenario", "seq", "received_at", "topic", "result")


# -- payloads -------------------------------------------------------------------------------------


def template() -> tuple[str, str, str]:
    """A realistic result as JSON, with its run_id and created_at to substitute."""
    sys.path.insert(0, str(REPO))
    from tests.factories import make_result

    text = make_result(device_id="pi-00", fleet=FLEET, seq=1).model_dump_json()
    data = json.loads(text)
    return text, data["run_id"], data["created_at"]


def fresh_payload(text: str, run_id: str, created: str, device: int) -> bytes:
    now = datetime.now(timezone.utc).isoformat()
    return (text.replace(run_id, str(uuid.uuid4())).replace(created, now)
            .replace('"device_id":"pi-00"', f'"device_id":"pi-{device:02d}"').encode())


def topic_of(device: int) -> str:
    return f"edgemeter/v1/{FLEET}/pi-{device:02d}/result"


def publish(broker: str, count: int, rate: float | None) -> None:
    """``count`` fresh results over 16 devices; as fast as the broker takes them, or at ``rate``/s."""
    sys.path.insert(0, str(REPO))
    from shared.mqtt import connect

    text, run_id, created = template()
    conn = connect(broker, f"bench-pub-{uuid.uuid4().hex[:8]}")
    try:
        infos = []
        start = time.perf_counter()
        for i in range(count):
            if rate:
                due = start + i / rate
                while (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
            infos.append(conn.client.publish(topic_of(i % 16), fresh_payload(text, run_id, created,
                                                                            i % 16), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        conn.close()


# -- subscribers (child processes) ----------------------------------------------------------------


class Tally:
    """Commit times and latencies, and an event when ``expected`` results are in."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = 0
        self.latencies_ms: list[float] = []
        self.finished = threading.Event()
        self.finished_at = 0.0
        self.lock = threading.Lock()

    def add(self, created: list[datetime]) -> None:
        now = datetime.now(timezone.utc)
        t = time.perf_counter()
        with self.lock:
            self.latencies_ms += [(now - c).total_seconds() * 1000 for c in created]
            self.done += len(created)
            if self.done >= self.expected and not self.finished.is_set():
                self.finished_at = t
                self.finished.set()


def run_count(broker: str, client_id: str, tally: Tally) -> Callable[[], None]:
    from shared.mqtt import connect
    from shared.schema import BenchmarkResult  # noqa: F401 (the same imports as the others)

    def on_message(topic: str, payload: bytes) -> None:
        created = payload[payload.index(b'"created_at":"') + 14:].split(b'"', 1)[0]
        tally.add([datetime.fromisoformat(created.decode())])

    def on_connect(conn: Any) -> None:
        conn.subscribe(f"edgemeter/v1/{FLEET}/+/result", qos=1)

    conn = connect(broker, client_id, clean_start=False, session_expiry_s=3600,
                   on_message=on_message, on_connect=on_connect)
    return conn.close


def run_ceiling(broker: str, client_id: str, tally: Tally, url: str) -> Callable[[], None]:
    from collector.stores.base import open_store
    from collector.stores.columns import utc_text
    from shared.mqtt import connect
    from shared.schema import BenchmarkResult

    store = open_store(url)  # the schema, created by the collector's own migrations
    store.close()
    inbox: queue.SimpleQueue[tuple[str, bytes, int]] = queue.SimpleQueue()
    sqlite = url.startswith("sqlite")
    if sqlite:
        import sqlite3

        db: Any = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    else:
        import psycopg

        db = psycopg.connect(url)
    conns: list[Any] = []
    stop = threading.Event()

    def row(topic: str, r: BenchmarkResult, text: str) -> tuple[Any, ...]:
        now = datetime.now(timezone.utc)
        created = utc_text(r.created_at) if sqlite else r.created_at
        return (str(r.run_id), r.device_id, r.fleet, r.role.value, created, r.model.name,
                r.model.sha256, r.model.network, r.spec.effective.scenario.value, r.seq,
                utc_text(now) if sqlite else now, topic, text)

    def writer() -> None:
        placeholders = ", ".join("?" * len(COLUMNS))
        insert = f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        while not stop.is_set():
            try:
                batch = [inbox.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < 500:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            results = [BenchmarkResult.model_validate_json(p) for _, p, _ in batch]
            rows = [row(t, r, p.decode()) for (t, p, _), r in zip(batch, results, strict=True)]
            if sqlite:
                with db:
                    db.executemany(insert, rows)
            else:
                with db.cursor() as cur, cur.copy(
                        f"COPY results ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for values in rows:
                        copy.write_row(values)
                db.commit()
            tally.add([r.created_at for r in results])
            for _, _, mid in batch:
                conns[0].ack(mid, 1)

    def on_message(topic: str, payload: bytes, mid: int, qos: int) -> None:
        inbox.put((topic, bytes(payload), mid))

    def on_connect(conn: Any) -> None:
        conn.subscribe(f"edgemeter/v1/{FLEET}/+/result", qos=1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    conns.append(connect(broker, client_id, clean_start=False, session_expiry_s=3600,
                         manual_ack=True, on_message_ack=on_message, on_connect=on_connect))

    def close() -> None:
        stop.set()
        thread.join(5)
        conns[0].close()
        db.close()
    return close


def run_collector(broker: str, client_id: str, tally: Tally, url: str) -> Callable[[], None]:
    from collector.config import IngestSettings, MqttSettings
    from collector.service import CollectorService
    from collector.stores.base import open_store

    store = open_store(url)
    add_results = store.add_results

    def timed_add_results(results: Any, *args: Any, **kwargs: Any) -> int:
        new = add_results(results, *args, **kwargs)
        tally.add([r.created_at for r in results])
        return new

    store.add_results = timed_add_results  # type: ignore[method-assign]
    service = CollectorService(store, MqttSettings(url=broker, client_id=client_id,
                                                   fleet=FLEET), IngestSettings())
    service.start()

    def close() -> None:
        service.stop()
        store.close()
    return close


def child(args: argparse.Namespace) -> int:
    sys.path[:0] = [str(args.tree), str(REPO)]
    runners: dict[str, Callable[..., Callable[[], None]]] = {
        "count": run_count, "ceiling": run_ceiling, "collector": run_collector,
        "baseline": run_collector}
    runner = runners[args.child]
    extra = [] if args.child == "count" else [args.url]
    if args.mode == "throughput":  # make the session, leave, wait for the backlog, come back
        runner(args.broker, args.client_id, Tally(1), *extra)()
        print("away", flush=True)
        sys.stdin.readline()
    tally = Tally(args.expected)
    started = time.perf_counter()
    close = runner(args.broker, args.client_id, tally, *extra)
    print("ready", flush=True)
    ok = tally.finished.wait(120)
    close()
    if not ok:
        raise SystemExit(f"{args.child}: {tally.done} of {args.expected} in 120 s")
    lat = sorted(tally.latencies_ms)
    print(json.dumps({
        "per_s": args.expected / (tally.finished_at - started),
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }), flush=True)
    return 0


# -- parent ---------------------------------------------------------------------------------------


def measure(variant: str, tree: Path, broker: str, url: str, mode: str, count: int,
            rate: float) -> dict[str, float] | None:
    """One measurement in a child process; ``None`` (reported) when it failed."""
    client_id = f"bench-{variant}-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", variant, "--tree", str(tree), "--broker", broker,
         "--url", url, "--mode", mode, "--expected", str(count), "--client-id", client_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if mode == "throughput":
            if proc.stdout.readline().strip() != "away":
                raise SystemExit(f"{variant} did not start")
            publish(broker, count, None)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.stdout.readline()  # ready
        else:
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"{variant} did not start")
            publish(broker, count, rate)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        print(f"  {variant} {mode} on {url.split('?')[0]} failed (exit {proc.returncode})",
              flush=True)
        return None
    return dict(json.loads(out.strip().splitlines()[-1]))


def _pg(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[call-overload,unused-ignore]


def _pg_url(admin_url: str, schema: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(admin_url)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    dbname = info.get("dbname", "test")
    return f"postgresql://{user}@{host}:{port}/{dbname}?options=-csearch_path%3D{schema}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("``", "'")
                                     + " Prints the collector's ratio to a bare subscriber that "
                                     "only counts (collector/count) and to one that validates and "
                                     "inserts (collector/ceiling).")
    parser.add_argument("--rounds", type=int, default=3, help="shuffled rounds (medians printed)")
    parser.add_argument("--count", type=int, default=4000, help="results per throughput run")
    parser.add_argument("--rate", type=float, default=100.0, help="results/s in latency runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a latency run")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also measure the collector of another copy of the code, e.g. "
                        "git archive REV collector shared | tar -x -C DIR")
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_URL, metavar="URL",
                        help="a database where schemas bench_<pid>_* may be made and dropped")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-latency", action="store_true", help="skip the steady-rate runs")
    parser.add_argument("--no-throughput", action="store_true", help="skip the backlog runs")
    parser.add_argument("--only", metavar="NAMES",
                        help="comma-separated subscribers to measure: count, ceiling, collector, "
                        "baseline")
    parser.add_argument("--seed", type=int, default=0, help="of the rounds' shuffle")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    sys.path.insert(0, str(REPO))
    from edgemeter.demo.broker import PrivateBroker

    variants = {"count": REPO, "ceiling": REPO, "collector": REPO}
    if args.baseline is not None:
        variants["baseline"] = args.baseline.resolve()
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    dbs = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]
    modes = [m for m, off in (("throughput", args.no_throughput), ("latency", args.no_latency))
             if not off]
    rng = random.Random(args.seed)
    figures: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    broker = PrivateBroker(prefer="mosquitto").start()
    try:
        with tempfile.TemporaryDirectory(prefix="edgemeter-bench-") as tmp:
            for round_no in range(args.rounds):
                plan = [(v, d, m) for v in variants for d in dbs for m in modes]
                rng.shuffle(plan)
                for n, (variant, db, mode) in enumerate(plan):
                    tag = f"bench_{os.getpid()}_r{round_no}_{n}"
                    if db == "sqlite":
                        url = f"sqlite:///{tmp}/{tag}.db"
                    else:
                        _pg(args.postgres, f'CREATE SCHEMA "{tag}"')
                        url = _pg_url(args.postgres, tag)
                    count = args.count if mode == "throughput" \
                        else int(args.rate * args.seconds)
                    try:
                        got = measure(variant, variants[variant], broker.url, url, mode,
                                      count, args.rate)
                    finally:
                        if db == "postgresql":
                            _pg(args.postgres, f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
                    if got is None:
                        continue
                    got["round"] = round_no
                    figures.setdefault((variant, db, mode), []).append(got)
                    shown = (f"{got['per_s']:7.0f} results/s" if mode == "throughput"
                             else f"p50 {got['p50_ms']:6.1f} ms  p99 {got['p99_ms']:7.1f} ms")
                    print(f"round {round_no + 1}/{args.rounds} {db:10s} {variant:9s} "
                          f"{mode:10s} {shown}", flush=True)
    finally:
        broker.stop()

    print(f"\nthroughput: {args.count} queued results; latency: {args.rate:g}/s for "
          f"{args.seconds:g} s; {args.rounds} rounds (medians; min-max)")
    for db in dbs:
        for variant in variants:
            runs = figures.get((variant, db, "throughput"), [])
            rates = [r["per_s"] for r in runs]
            line = f"  {db:10s} {variant:9s} " + (
                f"{statistics.median(rates):7.0f} results/s ({min(rates):.0f}-{max(rates):.0f})"
                if rates else "")
            lat = figures.get((variant, db, "latency"))
            if lat:
                p50 = statistics.median(r["p50_ms"] for r in lat)
                p99 = statistics.median(r["p99_ms"] for r in lat)
                line += f"   p50 {p50:6.1f} ms  p99 {p99:7.1f} ms"
            print(line)
        for ceiling_name in ("ceiling", "count"):  # validate-and-insert, then count-only
            ceiling = {r["round"]: r["per_s"]
                       for r in figures.get((ceiling_name, db, "throughput"), [])}
            for variant in ("collector", "baseline"):
                if variant not in variants or not ceiling:
                    continue
                mine = {r["round"]: r["per_s"] for r in figures.get((variant, db, "throughput"), [])}
                ratios = [mine[i] / ceiling[i] for i in mine if i in ceiling]
                if not ratios:
                    continue
                what = CEILINGS[ceiling_name]
                print(f"  {db:10s} {variant}/{ceiling_name} ({what}), median of paired rounds: "
                      f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
