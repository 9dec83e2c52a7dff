"""The idle daemon's footprint: CPU (% of one core) and memory, against 1 % and 80 MiB.

Starts a private Mosquitto, then ``edgemeter agent run`` as a separate process with telemetry at
its default period (10 s), waits until it is online, and measures its CPU time (user + system,
children excluded) over ``--seconds`` (60) and its RSS at the end. Jobs run in child processes, so
the idle daemon never loads an inference runtime; the runtime's cost is paid by each job's child.
To report the figure a board pays while a job runs, the script also measures the RSS of a process
that imports the agent and loads one runtime (``--runtime``: onnxruntime or litert) with a real
model session open.

It prints the figures and their ratios to the targets, and asserts nothing.

    .venv/bin/python bench/footprint.py [--seconds 60] [--runtime onnxruntime]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgemeter.demo.broker import PrivateBroker  # noqa: E402
from shared.mqtt import connect  # noqa: E402

CPU_TARGET_PCT = 1.0
RSS_TARGET_MIB = 80.0
MODELS = REPO.parent / "shared" / "models"
RUNTIME_PROBE = """
import sys, psutil
from pathlib import Path
from agent.backends import backend_for
backend = backend_for(sys.argv[2], sys.argv[1])
session = backend.load(Path(sys.argv[3]), batch=1, threads=1, providers=None, delegate=None)
print(psutil.Process().memory_info().rss)
"""


def wait_online(url: str, device: str, timeout_s: float = 30.0) -> None:
    seen: list[bytes] = []
    conn = connect(url, "footprint-watch", on_message=lambda _t, p: seen.append(p))
    with conn:
        conn.subscribe(f"edgemeter/v1/bench/{device}/status")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(json.loads(p).get("status") == "online" for p in seen):
                return
            time.sleep(0.1)
    raise SystemExit("the daemon did not come online")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runtime", choices=["onnxruntime", "litert"], default="litert")
    args = parser.parse_args()
    with PrivateBroker(prefer="mosquitto") as broker, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.toml"
        config.write_text(
            f'device_id = "footprint"\nfleet = "bench"\n[mqtt]\nurl = "{broker.url}"\n'
            f'[spool]\npath = "{tmp}/spool.db"\n[models]\ncache_dir = "{tmp}/models"\n'
        )
        daemon = subprocess.Popen([sys.executable, "-m", "edgemeter.cli", "agent", "run",
                                   "--config", str(config)], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_online(broker.url, "footprint")
            proc = psutil.Process(daemon.pid)
            time.sleep(2.0)  # let start-up settle before the window opens
            before = proc.cpu_times()
            t0 = time.monotonic()
            time.sleep(args.seconds)
            after = proc.cpu_times()
            wall_s = time.monotonic() - t0
            rss_mib = proc.memory_info().rss / 2**20
        finally:
            daemon.terminate()
            daemon.wait(15)
    cpu_s = (after.user - before.user) + (after.system - before.system)
    cpu_pct = 100.0 * cpu_s / wall_s
    print(f"idle daemon CPU: {cpu_pct:.3f} % of one core over {wall_s:.0f} s "
          f"({cpu_pct / CPU_TARGET_PCT:.2f}x the {CPU_TARGET_PCT:g} % target)")
    print(f"idle daemon RSS: {rss_mib:.1f} MiB ({rss_mib / RSS_TARGET_MIB:.2f}x the "
          f"{RSS_TARGET_MIB:g} MiB target; no runtime loaded: jobs run in child processes)")
    model = MODELS / ("vww_96_int8.tflite" if args.runtime == "litert" else "vww_96_int8_qdq.onnx")
    if model.is_file():
        fmt = "tflite" if model.suffix == ".tflite" else "onnx"
        out = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, args.runtime, fmt, str(model)],
                             cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
        if out.returncode == 0:
            job_mib = int(out.stdout.strip().splitlines()[-1]) / 2**20
            print(f"a job's child with {args.runtime} and {model.name} loaded: RSS {job_mib:.1f} MiB "
                  f"({job_mib / RSS_TARGET_MIB:.2f}x the {RSS_TARGET_MIB:g} MiB target)")
        else:
            print(f"runtime probe failed: {out.stderr.strip().splitlines()[-1:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
