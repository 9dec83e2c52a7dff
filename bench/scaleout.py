#!/usr/bin/env python3
"""Aggregate stored results/s for 1, 2 and 4 collectors on one shared subscription and one PostgreSQL.

Each run: a fresh PostgreSQL schema (tables made once, before the collectors start), N real
``edgemeter collector serve`` processes in one ``--group`` on a private Mosquitto (MQTT v5,
``$share/<group>/...``). The collectors are paused (SIGSTOP) while ``edgemeter simulate`` publishes
the backlog, so the broker deals it out between them and the simulator's CPU is not counted;
then they are resumed (SIGCONT) and the clock runs until PostgreSQL holds every result
(``SELECT count(*)`` every 20 ms). Rounds interleave the collector counts in a shuffled order so
drift in the machine hits each alike. Prints, per N, the median rate and its ratio to one
collector.

    .venv/bin/python bench/scaleout.py [--collectors 1,2,4] [--results 6000] [--devices 100] [--rounds 3]

Needs mosquitto and the test PostgreSQL (``EDGEMETER_TEST_POSTGRES``, default
postgresql://postgres@127.0.0.1:5432/test). Collectors log at WARNING (no line per result). CPU per
result counts the collectors, the private Mosquitto and every PostgreSQL backend alive throughout
the drain (the collectors' own, and any other user's: on a shared machine that figure is an upper
bound).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from collector.stores.base import open_store
from edgemeter.commands.simulate import simulate
from tests.scale.services import CollectorProcess, RoomyMosquitto

POSTGRES_URL = os.environ.get("EDGEMETER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
POLL_S = 0.02
CPU_PARTS = ("collectors", "mosquitto", "postgres")


def count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM results").fetchone()
    return int(row[0]) if row else 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> dict[int, float]:
    """CPU seconds of each ``postgres`` process on this machine (other users' work included)."""
    out: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        if "(postgres)" in text:
            fields = text.rpartition(")")[2].split()
            out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def cpu_delta_s(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples by the processes alive at both (ours connected before)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def one_run(broker: RoomyMosquitto, workdir: Path, collectors: int, results: int,
            devices: int) -> tuple[float, float, dict[str, float]]:
    """(stored results/s with ``collectors`` collectors, the simulator's publish rate, CPU ms per
    stored result while draining: the collectors, Mosquitto, PostgreSQL)."""
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    db_url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    procs: list[CollectorProcess] = []
    try:
        open_store(db_url).close()
        group = f"g{uuid.uuid4().hex[:6]}"
        fleet = f"bench{uuid.uuid4().hex[:6]}"
        procs = [CollectorProcess(broker.url, db_url, f"edgemeter-collector-{group}-{i}",
                                  workdir / f"{group}-{i}.log", group=group, fleet=fleet,
                                  verbose=False)
                 for i in range(collectors)]
        deadline = time.monotonic() + 60
        while not all(broker.subscribed(p.client_id) for p in procs):
            if time.monotonic() > deadline or any(p.process.poll() is not None for p in procs):
                raise SystemExit(f"collectors did not subscribe: {procs[0].text()[-500:]}")
            time.sleep(0.05)
        for proc in procs:
            proc.process.send_signal(signal.SIGSTOP)
        summary = simulate(broker.url, devices, results, fleet=fleet, telemetry_s=3600)
        if summary["results_acknowledged"] != results:
            raise SystemExit(f"the broker acknowledged {summary['results_acknowledged']} of {results}")
        before = (sum(cpu_s(p.process.pid) for p in procs), cpu_s(broker.pid))
        pg_before = postgres_cpu_s()
        began = time.monotonic()
        for proc in procs:
            proc.process.send_signal(signal.SIGCONT)
        while (stored := count(db_url)) < results:
            if time.monotonic() - began > 600:
                raise SystemExit(f"only {stored} of {results} stored after 600 s")
            time.sleep(POLL_S)
        elapsed_s = time.monotonic() - began
        after = (sum(cpu_s(p.process.pid) for p in procs), cpu_s(broker.pid),
                 cpu_delta_s(pg_before, postgres_cpu_s()))
        cpu_ms = {name: (a - b) * 1000 / results
                  for name, a, b in zip(CPU_PARTS, after, (*before, 0.0), strict=True)}
        return results / elapsed_s, float(summary["results_per_s"] or 0.0), cpu_ms
    finally:
        for proc in procs:
            proc.process.send_signal(signal.SIGCONT)
            proc.kill()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collectors", default="1,2,4", help="collector counts (default 1,2,4)")
    parser.add_argument("--results", type=int, default=6000, help="results per run (default 6000)")
    parser.add_argument("--devices", type=int, default=100, help="simulated devices (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the round order")
    args = parser.parse_args()
    counts = [int(c) for c in args.collectors.split(",")]
    rates: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    publish: list[float] = []
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="edgemeter-scaleout-") as tmp:
        broker = RoomyMosquitto(Path(tmp) / "mosquitto").start()
        try:
            for round_no in range(1, args.rounds + 1):
                order = counts[:]
                rng.shuffle(order)
                for n in order:
                    rate, sent, cpu_ms = one_run(broker, Path(tmp), n, args.results, args.devices)
                    rates[n].append(rate)
                    cpu[n].append(cpu_ms)
                    publish.append(sent)
                    print(f"round {round_no}: {n} collector(s): {rate:7.0f} stored/s; CPU ms/result "
                          + ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms.items()), flush=True)
        finally:
            broker.stop()
    print(f"\n{args.results} results from {args.devices} devices per run, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs; simulator published at a median {statistics.median(publish):.0f}/s")
    base = statistics.median(rates[counts[0]])
    print(f"{'collectors':>10}  {'stored/s (median)':>18}  {'min-max':>13}  {'vs ' + str(counts[0]):>6}"
          "  CPU ms/result (median): " + ", ".join(CPU_PARTS))
    for n in counts:
        med = statistics.median(rates[n])
        parts = ", ".join(f"{statistics.median(c[k] for c in cpu[n]):.2f}" for k in CPU_PARTS)
        print(f"{n:>10}  {med:>18.0f}  {min(rates[n]):>6.0f}-{max(rates[n]):<6.0f}  {med / base:>6.2f}"
              f"  {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
