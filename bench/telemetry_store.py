#!/usr/bin/env python3
"""The device page's telemetry charts on a PostgreSQL store holding a week of a fleet: p50 and p99.

Run as ``bench/store.py telemetry [options]`` or directly. It builds, in a private schema of the
server's ``test`` database (made here and dropped at the end; nothing else is touched), the state
a store is in after ``--days`` (7) of ``--devices`` (1,000) devices sending telemetry every 10 s
with the default retention applied: raw rows (``telemetry``) for the last 48 h and 1-minute rows
(``telemetry_1m``) for the whole week. The tables, partitions and indexes are the product's: the
store's own migrations make them, and each device's first and newest message go through
``record_telemetry_batch`` (which makes the month partitions and the ``devices`` rows). The rest is
written by the server itself, in time order as a fleet would send it, with ``INSERT ... SELECT
... FROM generate_series(...)``:

* minute rows from the start of the week to ``--raw-hours`` (50) before now, generated directly
  (six messages a minute, figures varying per device and minute);
* raw rows for the last ``--raw-hours``, one per device every 10 s;
* the minute rows of those hours, summed from the raw rows as ``record_telemetry`` adds each
  message into its minute.

Then the product's retention runs once (``prune_history``, what ``edgemeter collector prune``
runs): it drops the raw rows older than 48 h (the week's first month partition of raw rows whole,
when the week began in the previous month). The collector writes the minute rows at ingest, next
to the raw row; prune is what keeps the raw table at 48 h instead of the week's
``devices x 60,480`` rows (about 60 M at 1,000 devices). After ``VACUUM (ANALYZE)`` it times
``GET /api/devices/{id}/telemetry`` as the dashboard's device page asks for it (its route function
less HTTP, with the page's step: 1 h at 10 s from the raw rows, 24 h at 240 s and 7 d at 1,680 s
from the minute rows), ``--queries`` times each for random devices after 3 warm-ups, and prints
p50 and p99 in ms against the target (p99 under 200 ms).

    .venv/bin/python bench/store.py telemetry [--devices 1000] [--days 7] [--queries 200]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

``--devices 100`` is a quick check (a tenth of the rows; about a minute).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_URL = os.environ.get("EDGEMETER_TEST_POSTGRES",
                             "postgresql://postgres@127.0.0.1:5432/test")
INTERVAL_S = 10
TARGET_P99_MS = 200.0
#: The device page's ranges (collector/http/static/js/history.js: RANGES, POINTS).
RANGES = (("1h", 3600), ("24h", 86_400), ("7d", 7 * 86_400))
PAGE_POINTS = 360


def page_step_s(range_s: int) -> int:
    """The step the device page asks for (history.js ``stepFor``)."""
    step = max(10, -(-range_s // PAGE_POINTS))
    return step if step < 60 else -(-step // 60) * 60


def device_id(index: int) -> str:
    return f"tel-{index:05d}"


def in_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def run_sql(url: str, sql: str, params: dict[str, Any] | None = None) -> int:
    """One statement in its own transaction; returns the rows it touched."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).rowcount


def scalar(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


# -- filling ------------------------------------------------------------------------------------

#: One device's figures at time ``t`` (``d``: its index), varying smoothly over the day and per
#: device, with a little noise: what the generated raw and minute rows hold.
_CPU = "least(100, 15 + (d %% 7) * 5 + 10 * sin(extract(epoch from t) / 3600.0 + d) + random() * 8)"
_MEM = "(400e6 + (d %% 5) * 100e6 + random() * 20e6)"
_TEMP = "(45 + (d %% 9) + 6 * sin(extract(epoch from t) / 5400.0 + d) + random() * 2)"
_POWER = "(3.5 + (d %% 4) * 0.5 + random() * 0.8)"

MINUTES_SQL = f"""
INSERT INTO telemetry_1m (device_id, minute, fleet, messages, cpu_util_pct_sum, cpu_util_pct_n,
    memory_used_bytes_sum, memory_used_bytes_n, temperature_c_sum, temperature_c_n,
    temperature_c_max, power_w_sum, power_w_n, throttled_n, spool_depth_max)
SELECT 'tel-' || lpad(d::text, 5, '0'), t, 'bench', 6, 6 * {_CPU}, 6, 6 * {_MEM}, 6,
    6 * {_TEMP}, 6, {_TEMP} + 1.5, 6 * {_POWER}, 6, (random() < 0.01)::int, 0
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                     interval '1 minute') AS t,
     generate_series(0, %(devices)s - 1) AS d
ORDER BY t, d
ON CONFLICT DO NOTHING
"""

RAW_SQL = f"""
INSERT INTO telemetry (device_id, sent_at, fleet, received_at, cpu_util_pct, memory_used_bytes,
    temperature_c, throttled, power_w, power_source, power_estimated, spool_depth)
SELECT 'tel-' || lpad(d::text, 5, '0'), t + (d %% {INTERVAL_S}) * interval '1 second', 'bench',
    t + (d %% {INTERVAL_S}) * interval '1 second' + interval '40 milliseconds', {_CPU},
    {_MEM}::bigint, {_TEMP}, random() < 0.01, {_POWER}, 'estimate', true, 0
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '10 seconds',
                     interval '{INTERVAL_S} seconds') AS t,
     generate_series(0, %(devices)s - 1) AS d
ORDER BY t, d
ON CONFLICT DO NOTHING
"""

#: The minute rows of the raw rows at or after ``start``: the sums ``record_telemetry`` adds up.
MINUTES_FROM_RAW_SQL = """
INSERT INTO telemetry_1m (device_id, minute, fleet, messages, cpu_util_pct_sum, cpu_util_pct_n,
    memory_used_bytes_sum, memory_used_bytes_n, temperature_c_sum, temperature_c_n,
    temperature_c_max, power_w_sum, power_w_n, throttled_n, spool_depth_max)
SELECT device_id, date_trunc('minute', sent_at), min(fleet), count(*),
    coalesce(sum(cpu_util_pct), 0), count(cpu_util_pct),
    coalesce(sum(memory_used_bytes), 0), count(memory_used_bytes),
    coalesce(sum(temperature_c), 0), count(temperature_c), max(temperature_c),
    coalesce(sum(power_w), 0), count(power_w), count(*) FILTER (WHERE throttled),
    max(spool_depth)
FROM telemetry WHERE sent_at >= %(start)s AND sent_at < %(end)s
GROUP BY 1, 2 ORDER BY 2, 1
ON CONFLICT DO NOTHING
"""


def seed(store: Any, devices: int, first: datetime, newest: datetime) -> None:
    """Each device's first and newest message through the store (partitions, ``devices`` rows)."""
    from shared.messages import Telemetry

    for sent_at in (first, newest):
        batch = [(Telemetry(device_id=device_id(d), fleet="bench", sent_at=sent_at,
                            uptime_s=3600.0, cpu_util_pct=20.0, memory_used_bytes=500_000_000,
                            spool_depth=0, temps_c={"cpu": 50.0}, power_w=4.0,
                            power_source="estimate", power_estimated=True),
                  sent_at + timedelta(milliseconds=40)) for d in range(devices)]
        for chunk in range(0, devices, 500):
            store.record_telemetry_batch(batch[chunk:chunk + 500])


def step(label: str, started: float, action: Callable[[], int]) -> int:
    begun = time.perf_counter()
    count = action()
    print(f"  {label}: {count:,} rows in {time.perf_counter() - begun:.0f} s "
          f"({time.perf_counter() - started:.0f} s so far)", file=sys.stderr)
    return count


def fill(store: Any, url: str, devices: int, days: float, raw_hours: float,
         now: datetime) -> dict[str, Any]:
    started = time.perf_counter()
    minute_now = now.replace(second=0, microsecond=0)
    week_start = minute_now - timedelta(days=days)
    raw_start = minute_now - timedelta(hours=raw_hours)
    seed(store, devices, week_start, now)
    print(f"  seeded {2 * devices} messages through record_telemetry_batch "
          f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    span = {"devices": devices}
    step("minute rows, start of the week to the raw hours (generated)", started,
         lambda: run_sql(url, MINUTES_SQL, {**span, "start": week_start, "end": raw_start}))
    raw = step(f"raw rows, last {raw_hours:g} h", started,
               lambda: run_sql(url, RAW_SQL, {**span, "start": raw_start, "end": minute_now}))
    step("minute rows of the raw hours (summed from them)", started,
         lambda: run_sql(url, MINUTES_FROM_RAW_SQL, {"start": raw_start, "end": minute_now}))
    raw_before = int(scalar(url, "SELECT count(*) FROM telemetry"))
    begun = time.perf_counter()
    outcome = store.prune_history()
    prune_s = time.perf_counter() - begun
    print(f"  prune_history: {outcome} in {prune_s:.1f} s", file=sys.stderr)
    begun = time.perf_counter()
    run_sql(url, "VACUUM (ANALYZE) telemetry, telemetry_1m")
    print(f"  VACUUM (ANALYZE) in {time.perf_counter() - begun:.0f} s", file=sys.stderr)
    sizes = {name: int(scalar(url, f"SELECT sum(pg_total_relation_size(relid)) FROM "
                                   f"pg_partition_tree('{name}')"))
             for name in ("telemetry", "telemetry_1m")}
    return {
        "generated_raw": raw, "raw_before_prune": raw_before,
        "raw": int(scalar(url, "SELECT count(*) FROM telemetry")),
        "minute": int(scalar(url, "SELECT count(*) FROM telemetry_1m")),
        "prune": outcome, "prune_s": prune_s, "sizes": sizes,
        "fill_s": time.perf_counter() - started,
    }


# -- measuring ----------------------------------------------------------------------------------


def measure(store: Any, devices: int, queries: int) -> list[tuple[str, int, int, list[float]]]:
    """(range, step, points, each query's ms) of the route's answer per range."""
    from collector.http.monitoring import get_telemetry

    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
        api=SimpleNamespace(store=store))))
    rng = random.Random(7)
    out = []
    for since, range_s in RANGES:
        step_s = page_step_s(range_s)
        picks = [device_id(rng.randrange(devices)) for _ in range(queries + 3)]
        samples = []
        points = 0
        for n, device in enumerate(picks):
            begun = time.perf_counter()
            answer = get_telemetry(request, device, since=since, until=None,  # type: ignore[arg-type]
                                   step=step_s)
            spent_ms = (time.perf_counter() - begun) * 1000
            points = len(answer["points"])
            if not any(p["messages"] for p in answer["points"]):
                raise SystemExit(f"no telemetry in the {since} answer of {device}: the fill failed")
            if n >= 3:
                samples.append(spent_ms)
        out.append((since, step_s, points, samples))
    return out


def p99_ms(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/store.py telemetry",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_URL,
                        help="database to make the private schema in")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7.0, help="telemetry kept (minute rows)")
    parser.add_argument("--raw-hours", type=float, default=50.0,
                        help="raw rows written (prune then keeps the last 48 h)")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per range")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.queries < 10 or args.days * 24 < args.raw_hours:
        parser.error("--devices at least 1, --queries at least 10, --raw-hours within --days")

    from collector.stores.base import open_store

    schema = f"bench_tel_{uuid.uuid4().hex[:10]}"
    url = in_schema(args.postgres, schema)
    run_sql(args.postgres, f'CREATE SCHEMA "{schema}"')
    free_before = shutil.disk_usage("/").free
    try:
        store = open_store(url)
        try:
            now = datetime.now(timezone.utc)
            print(f"filling {args.days:g} days of {args.devices} devices' telemetry into schema "
                  f"{schema}", file=sys.stderr)
            filled = fill(store, url, args.devices, args.days, args.raw_hours, now)
            disk_used = free_before - shutil.disk_usage("/").free
            measured = measure(store, args.devices, args.queries)
        finally:
            store.close()
    finally:
        run_sql(args.postgres, f'DROP SCHEMA "{schema}" CASCADE')
    week_raw = args.devices * int(args.days * 86_400 / INTERVAL_S)
    mib = {name: size / 2**20 for name, size in filled["sizes"].items()}
    print(f"PostgreSQL, {args.devices} devices, {args.days:g} days of telemetry every "
          f"{INTERVAL_S} s, {args.queries} queries per range")
    print(f"without downsampling the week would be {week_raw:,} raw rows; stored: "
          f"{filled['raw']:,} raw rows (last 48 h; {filled['raw_before_prune']:,} before prune) "
          f"+ {filled['minute']:,} minute rows")
    print(f"prune_history (raw kept 48 h): {filled['prune']} in {filled['prune_s']:.1f} s")
    print(f"sizes with indexes: telemetry {mib['telemetry']:.0f} MiB, telemetry_1m "
          f"{mib['telemetry_1m']:.0f} MiB (disk used during the run: {disk_used / 2**30:.1f} "
          f"GiB); filled in {filled['fill_s']:.0f} s")
    print(f"{'GET /api/devices/{id}/telemetry':30} {'step s':>6} {'points':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'over':>5}")
    for since, step_s, points, samples in measured:
        p99 = p99_ms(samples)
        verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
        over = sum(1 for ms in samples if ms >= TARGET_P99_MS)
        print(f"{'since=' + since:30} {step_s:6} {points:6} {statistics.median(samples):7.1f} "
              f"{p99:7.1f} {max(samples):7.1f} {over:5}  (p99 < {TARGET_P99_MS:.0f} ms: {verdict})")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
          f" on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
