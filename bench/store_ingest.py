#!/usr/bin/env python3
"""How fast the results store ingests: stored rows per second for ``add_results`` in batches.

Each round opens fresh stores and times ``add_results`` over ``--batches`` batches of
``--batch-size`` results (the same realistic results every time, built once from the test
factories: 200-sample latency summaries and histograms, full manifests), one transaction per batch
as the collector's writer does. Rows/s = stored rows / time spent inside ``add_results``.

Stores: SQLite (a fresh WAL file in a temporary folder) and PostgreSQL (a fresh schema in a
throwaway database ``edgemeter_bench_<pid>`` on the server of ``--postgres``, dropped at the end;
no other database is touched).

``--baseline DIR`` also measures another copy of the collector (a folder holding ``collector/``,
e.g. ``git archive <rev> collector | tar -x -C DIR``; ``shared/`` comes from this checkout, so both
copies store the same results). Both copies live in this one process (each store is opened while
its copy's ``collector`` modules are the imported ones) and every batch goes to each variant in
turn, in a shuffled order, so a burst of load on a shared machine hits both alike; the figure to
read is the median of the per-batch ratios current/baseline.

    .venv/bin/python bench/store_ingest.py [--rounds 5] [--batches 20] [--batch-size 250]
        [--baseline DIR] [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--no-postgres]

The figures it gave, and when, are in the README's table of measurements and in the commit
messages that changed the store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_ADMIN_URL = os.environ.get(
    "EDGEMETER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def build_results(count: int) -> list[Any]:
    """``count`` realistic results (16 devices, rising seq)."""
    from tests.factories import make_result

    return [make_result(device_id=f"pi-{i % 16:02d}", seq=i // 16) for i in range(count)]


@contextlib.contextmanager
def collector_from(tree: Path) -> Iterator[None]:
    """Make ``tree``'s ``collector`` package the imported one for the duration of the block."""
    if tree == REPO:
        yield
        return
    ours = {k: v for k, v in sys.modules.items() if k == "collector" or k.startswith("collector.")}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        yield
    finally:
        sys.path.remove(str(tree))
        for name in [k for k in sys.modules if k == "collector" or k.startswith("collector.")]:
            del sys.modules[name]
        sys.modules.update(ours)


def open_with(tree: Path, url: str) -> Any:
    with collector_from(tree):
        from collector.stores.base import open_store

        return open_store(url)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another copy of collector/ to compare against")
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_URL, metavar="URL",
                        help="a server where this script may create and drop a database")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    trees = {"current": REPO}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    kinds = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]
    rng = random.Random(args.seed)
    dbname = f"edgemeter_bench_{os.getpid()}"
    results = build_results(args.batches * args.batch_size)
    batches = [results[i:i + args.batch_size] for i in range(0, len(results), args.batch_size)]
    # seconds per batch, per (kind, tree), over all rounds, in the order measured
    batch_s: dict[tuple[str, str], list[float]] = {(k, t): [] for k in kinds for t in trees}
    round_rate: dict[tuple[str, str], list[float]] = {(k, t): [] for k in kinds for t in trees}
    with tempfile.TemporaryDirectory(prefix="edgemeter-bench-") as tmp:
        if "postgresql" in kinds:
            _pg(args.postgres, f'CREATE DATABASE "{dbname}"')
        try:
            for round_no in range(args.rounds):
                for kind in kinds:
                    stores: dict[str, Any] = {}
                    schemas = []
                    for tree_name, tree in trees.items():
                        tag = f"r{round_no}_{tree_name}"
                        if kind == "sqlite":
                            url = f"sqlite:///{tmp}/{tag}_{uuid.uuid4().hex[:6]}.db"
                        else:
                            _pg(args.postgres, f'CREATE SCHEMA "{tag}"', dbname)
                            schemas.append(tag)
                            url = _pg_url(args.postgres, dbname, tag)
                        stores[tree_name] = open_with(tree, url)
                    spent = dict.fromkeys(trees, 0.0)
                    try:
                        for batch in batches:
                            order = list(trees)
                            rng.shuffle(order)
                            for tree_name in order:
                                t0 = time.perf_counter()
                                stored = stores[tree_name].add_results(batch)
                                elapsed = time.perf_counter() - t0
                                if stored != len(batch):
                                    raise SystemExit(f"{tree_name} stored {stored} of {len(batch)}")
                                batch_s[(kind, tree_name)].append(elapsed)
                                spent[tree_name] += elapsed
                    finally:
                        for store in stores.values():
                            store.close()
                        for schema in schemas:
                            _pg(args.postgres, f'DROP SCHEMA "{schema}" CASCADE', dbname)
                    for tree_name in trees:
                        rate = len(results) / spent[tree_name]
                        round_rate[(kind, tree_name)].append(rate)
                        print(f"round {round_no + 1}/{args.rounds} {kind:10s} {tree_name:8s} "
                              f"{rate:8.0f} rows/s", flush=True)
        finally:
            if "postgresql" in kinds:
                _pg(args.postgres, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    print(f"\n{args.batches} batches x {args.batch_size} results, {args.rounds} rounds")
    for (kind, tree_name), rates in round_rate.items():
        median_batch = args.batch_size / statistics.median(batch_s[(kind, tree_name)])
        print(f"  {kind:10s} {tree_name:8s} {statistics.median(rates):8.0f} rows/s "
              f"(rounds {min(rates):.0f}-{max(rates):.0f}; median batch {median_batch:.0f})")
    if "baseline" in trees:
        for kind in kinds:
            pairs = zip(batch_s[(kind, "baseline")], batch_s[(kind, "current")], strict=True)
            ratios = sorted(baseline / current for baseline, current in pairs)
            quartiles = statistics.quantiles(ratios, n=4)
            print(f"  {kind:10s} rate current/baseline, median of {len(ratios)} paired batches: "
                  f"{statistics.median(ratios):.3f} (quartiles {quartiles[0]:.3f}-"
                  f"{quartiles[2]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
