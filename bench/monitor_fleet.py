#!/usr/bin/env python3
"""A fleet sending telemetry and monitor windows: is everything stored, how late, at what CPU?

One run: a private Mosquitto that takes many clients, a real ``edgemeter collector serve``
(SQLite by default, ``--db`` for PostgreSQL), and ``edgemeter simulate`` in this process with
``--devices`` virtual devices, each sending telemetry (QoS 0) and a monitor window (QoS 1) every
``--period-s`` for ``--seconds``. Then it waits for the windows to be stored and prints:

* messages per second offered (telemetry + windows);
* windows sent and stored (QoS 1: every one must be), telemetry rows stored of those sent (QoS 0:
  a broker may drop some under load; the collector drops none it receives);
* publish to stored lag of the windows: the store's ``received_at`` minus the window's ``end``
  (set just before it is published), p50 / p99 / max;
* the collector process's CPU over the run (user + system, ``/proc``) as a share of one core.

The issue's target: 2,000 devices, 10 s, 5 minutes (about 400 messages/s), nothing lost, p99 under
1 s, the collector under one core. It prints numbers and exits 0; it asserts nothing.

    .venv/bin/python bench/monitor_fleet.py [--devices 2000] [--period-s 10] [--seconds 300]
        [--db postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from collector.stores.base import open_store  # noqa: E402
from collector.stores.tables import monitor_windows, telemetry  # noqa: E402
from edgemeter.commands.simulate import simulate  # noqa: E402
from edgemeter.demo.broker import stop_process  # noqa: E402
from tests.scale.services import RoomyMosquitto  # noqa: E402


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--period-s", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--queries", type=int, default=100, help="latencies per window")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgemeter-monitor-fleet-") as folder:
        work = Path(folder)
        db = args.db or f"sqlite:///{work / 'results.db'}"
        open_store(db).close()  # migrated before the collector starts
        broker = RoomyMosquitto(work / "broker", max_fds=4 * args.devices + 1024).start()
        fleet = f"mf{uuid.uuid4().hex[:6]}"
        env = {**os.environ, "EDGEMETER_COLLECTOR__INGEST__STATS_INTERVAL_S": "3600"}
        with (work / "collector.log").open("wb") as log:
            collector = subprocess.Popen(
                [sys.executable, "-m", "edgemeter.cli", "collector", "serve", "--mqtt", broker.url,
                 "--db", db, "--client-id", f"bench-{fleet}"], cwd=REPO, env=env, stdout=log,
                stderr=subprocess.STDOUT)
        try:
            time.sleep(3)
            cpu_before, wall_before = cpu_s(collector.pid), time.monotonic()
            summary = simulate(broker.url, args.devices, 0, fleet=fleet,
                               telemetry_s=args.period_s, hold_s=args.seconds,
                               window_s=args.period_s, window_queries=args.queries,
                               timeout_s=300)
            store = open_store(db, migrate=False)
            engine = store.engine  # type: ignore[attr-defined]
            deadline = time.monotonic() + 120
            stored = 0
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    stored = int(conn.execute(select(func.count()).select_from(monitor_windows)
                                              .where(monitor_windows.c.fleet == fleet)).scalar())
                if stored >= summary["windows_sent"]:
                    break
                time.sleep(0.5)
            cpu = cpu_s(collector.pid) - cpu_before
            wall = time.monotonic() - wall_before
            with engine.connect() as conn:
                rows = conn.execute(select(monitor_windows.c.received_at, monitor_windows.c.end_at)
                                    .where(monitor_windows.c.fleet == fleet)).all()
                telemetry_rows = int(conn.execute(select(func.count()).select_from(telemetry)
                                                  .where(telemetry.c.fleet == fleet)).scalar())
            store.close()
        finally:
            stop_process(collector, timeout_s=30)
            broker.stop()
    lags = sorted((r.received_at - r.end_at).total_seconds() for r in rows)
    telemetry_sent = summary["telemetry_sent"]
    offered = (telemetry_sent + summary["windows_sent"]) / max(args.seconds, 1e-9)

    def q(p: float) -> float:
        return lags[min(len(lags) - 1, max(0, round(p * len(lags)) - 1))] if lags else float("nan")

    print(f"devices {args.devices}, every {args.period_s:g} s for {args.seconds:g} s: "
          f"{offered:.0f} messages/s offered")
    print(f"windows: {summary['windows_sent']} sent, {stored} stored (the simulator sent them "
          f"up to {summary['window_late_s_max']} s after their due time)")
    by_second: dict[int, list[float]] = {}
    for r in rows:
        by_second.setdefault(int((r.end_at - rows[0].end_at).total_seconds() // args.period_s),
                             []).append((r.received_at - r.end_at).total_seconds())
    print("lag p99 per round: " + ", ".join(
        f"{sorted(v)[max(0, round(0.99 * len(v)) - 1)]:.2f}" for _, v in sorted(by_second.items())))
    print(f"telemetry: {telemetry_rows} of {telemetry_sent} stored (QoS 0)")
    if lags:
        print(f"publish -> stored lag of windows: p50 {q(0.5):.3f} s, p99 {q(0.99):.3f} s, "
              f"max {lags[-1]:.3f} s (median {statistics.median(lags):.3f})")
    print(f"collector CPU: {cpu:.1f} s over {wall:.1f} s = {100 * cpu / wall:.0f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
