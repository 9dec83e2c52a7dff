#!/usr/bin/env python3
"""How fast the results store ingests: stored rows per second for ``add_results`` in batches.

Each measurement opens a fresh store, then times ``add_results`` over ``--batches`` batches of
``--batch-size`` results (the same realistic results every time, built once from the test
factories: 200-sample latency summaries and histograms, full manifests), one transaction per batch
as the collector's writer does. Rows/s = stored rows / time spent inside ``add_results``.

Stores: SQLite (a fresh WAL file in a temporary folder) and PostgreSQL (a fresh schema in a
throwaway database ``edgemeter_bench_<pid>`` on the server of ``--postgres``, dropped at the end;
no other database is touched). Rounds interleave the variants in a shuffled order, so drift in a
shared machine hits each alike; the medians over rounds are printed.

``--baseline DIR`` also measures another copy of the collector (a folder holding ``collector/``,
e.g. ``git archive <rev> collector | tar -x -C DIR``; ``shared/`` comes from this checkout unless
DIR has its own, so both copies store the same results) in the same rounds and
prints the median of the paired per-round ratios current/baseline. Every measurement runs in its
own subprocess, so each copy imports only its own modules.

    .venv/bin/python bench/store_ingest.py [--rounds 7] [--batches 20] [--batch-size 250]
        [--baseline DIR] [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--no-postgres]

Before the move to SQLAlchemy Core (hand-written sqlite3 and psycopg stores, commit a875a1c), on
the 2-core shared development VM with PostgreSQL 15 on the same VM, 5 rounds of 20 x 250:
SQLite 12 600-13 500 rows/s, PostgreSQL 3 600-4 400 rows/s (medians of two copies of the same
code; the paired ratio of identical code was 1.11 and 1.23, which is this machine's noise).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_URL = os.environ.get(
    "EDGEMETER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def build_results(path: Path, count: int) -> None:
    """Write ``count`` realistic results as JSON Lines (built once, reused by every measurement)."""
    sys.path.insert(0, str(REPO))
    from tests.factories import make_result

    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            result = make_result(device_id=f"pi-{i % 16:02d}", seq=i // 16)
            out.write(result.model_dump_json() + "\n")


def measure_one(tree: Path, url: str, data: Path, batch_size: int) -> float:
    """Rows/s of ``add_results`` for the code in ``tree`` on a fresh store at ``url``."""
    sys.path[:0] = [str(tree), str(REPO)]  # shared/ from this checkout unless the tree has one
    from collector.stores.base import open_store
    from shared.schema import BenchmarkResult

    lines = data.read_text(encoding="utf-8").splitlines()
    results = [BenchmarkResult.model_validate_json(line) for line in lines]
    batches = [results[i:i + batch_size] for i in range(0, len(results), batch_size)]
    store = open_store(url)
    try:
        stored = 0
        elapsed_s = 0.0
        for batch in batches:
            t0 = time.perf_counter()
            stored += store.add_results(batch)
            elapsed_s += time.perf_counter() - t0
    finally:
        store.close()
    if stored != len(results):
        raise SystemExit(f"stored {stored} of {len(results)} results")
    return stored / elapsed_s


def _pg(admin_url: str, sql: str, dbname: str | None = None) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    conninfo = make_conninfo(admin_url, dbname=dbname) if dbname else admin_url
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _pg_url(admin_url: str, dbname: str, schema: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(admin_url)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    return f"postgresql://{user}@{host}:{port}/{dbname}?options=-csearch_path%3D{schema}"


def run_child(tree: Path, url: str, data: Path, batch_size: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(tree), "--url", url, "--data", str(data),
         "--batch-size", str(batch_size)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"measurement failed ({tree}, {url}):\n{out.stderr.strip()}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rows_per_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another copy of collector/ to compare against")
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_URL, metavar="URL",
                        help="a server where this script may create and drop a database")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        rate = measure_one(args.child, args.url, args.data, args.batch_size)
        print(json.dumps({"rows_per_s": rate}))
        return 0

    trees = {"current": REPO}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    kinds = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]
    rng = random.Random(args.seed)
    dbname = f"edgemeter_bench_{os.getpid()}"
    rates: dict[tuple[str, str], list[float]] = {(k, t): [] for k in kinds for t in trees}
    with tempfile.TemporaryDirectory(prefix="edgemeter-bench-") as tmp:
        data = Path(tmp) / "results.jsonl"
        build_results(data, args.batches * args.batch_size)
        if "postgresql" in kinds:
            _pg(args.postgres, f'CREATE DATABASE "{dbname}"')
        try:
            for round_no in range(args.rounds):
                variants = [(k, t) for k in kinds for t in trees]
                rng.shuffle(variants)
                for kind, tree_name in variants:
                    tag = f"r{round_no}_{tree_name}"
                    if kind == "sqlite":
                        url = f"sqlite:///{tmp}/{tag}_{uuid.uuid4().hex[:6]}.db"
                    else:
                        _pg(args.postgres, f'CREATE SCHEMA "{tag}"', dbname)
                        url = _pg_url(args.postgres, dbname, tag)
                    try:
                        rate = run_child(trees[tree_name], url, data, args.batch_size)
                    finally:
                        if kind == "postgresql":
                            _pg(args.postgres, f'DROP SCHEMA "{tag}" CASCADE', dbname)
                    rates[(kind, tree_name)].append(rate)
                    print(f"round {round_no + 1}/{args.rounds} {kind:10s} {tree_name:8s} "
                          f"{rate:8.0f} rows/s", flush=True)
        finally:
            if "postgresql" in kinds:
                _pg(args.postgres, f'DROP DATABASE IF EXISTS "{dbname}"')

    print(f"\n{args.batches} batches x {args.batch_size} results, {args.rounds} rounds "
          "(median rows/s; min-max)")
    for (kind, tree_name), values in rates.items():
        print(f"  {kind:10s} {tree_name:8s} {statistics.median(values):8.0f} "
              f"({min(values):.0f}-{max(values):.0f})")
    if "baseline" in trees:
        for kind in kinds:
            pairs = zip(rates[(kind, "current")], rates[(kind, "baseline")], strict=True)
            ratios = [current / baseline for current, baseline in pairs]
            print(f"  {kind:10s} current/baseline, median of paired rounds: "
                  f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
