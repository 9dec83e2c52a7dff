#!/usr/bin/env python3
"""What concurrent model downloads cost the collector's memory: ``GET /models/{sha256}``.

A SQLite store in a temporary folder gets one model of ``--size-mb`` MiB (random bytes, stored
with ``add_model``); a child process serves the collector's HTTP app on it (as ``collector serve
--http`` does, with ``[http] max_downloads`` = ``--concurrent``); then ``--concurrent`` clients
download it at once, each reading and discarding the body, and the child's resident memory
(``VmRSS``) is sampled every 20 ms. Prints the child's RSS before, its peak during the downloads
and the growth, next to what holding every body in memory would take (concurrent x size), with the
target: growth under 64 MiB for 8 downloads of 150 MiB.

    .venv/bin/python bench/downloads.py [--size-mb 150] [--concurrent 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

TARGET_GROWTH_MIB = 64
MIB = 2**20


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def serve_child(db_url: str, port: int, concurrent: int) -> None:
    """The child: the collector's app on ``db_url``, served until killed."""
    from collector.config import HttpSettings
    from collector.events import EventBus
    from collector.http import HttpServer, create_app, open_read_store
    from collector.metrics import CollectorMetrics

    reader = open_read_store(db_url)
    app = create_app(reader, events=EventBus(), metrics=CollectorMetrics(),
                     publisher=lambda _t, _p: None,
                     settings=HttpSettings(max_downloads=concurrent))
    server = HttpServer(app, "127.0.0.1", port, on_stop=reader.close)
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


def download(url: str, sha256: str, size: int, errors: list[str]) -> None:
    digest = hashlib.sha256()
    got = 0
    with httpx.Client(timeout=120) as client, client.stream("GET", url) as response:
        if response.status_code != 200:
            errors.append(f"HTTP {response.status_code}")
            return
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
            got += len(chunk)
    if got != size or digest.hexdigest() != sha256:
        errors.append(f"got {got} bytes, sha256 {digest.hexdigest()[:12]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=150)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--child", nargs=3, metavar=("DB_URL", "PORT", "CONCURRENT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0

    from collector.stores.base import open_store
    from edgemeter.demo.broker import free_port

    with tempfile.TemporaryDirectory(prefix="bench-downloads-") as folder:
        db_url = f"sqlite:///{folder}/results.db"
        content = os.urandom(args.size_mb * MIB)
        store = open_store(db_url)
        sha256 = store.add_model("big.onnx", content)
        store.close()
        size = len(content)
        del content
        port = free_port()
        child = subprocess.Popen([sys.executable, __file__, "--child", db_url, str(port),
                                  str(args.concurrent)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            url = f"http://127.0.0.1:{port}/models/{sha256}"
            with httpx.Client(timeout=30) as client:  # warm the app's first request
                client.get(f"http://127.0.0.1:{port}/api/models").raise_for_status()
            time.sleep(0.5)
            before = rss_mib(child.pid)
            peak = before
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.wait(0.02):
                    peak = max(peak, rss_mib(child.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            errors: list[str] = []
            started = time.perf_counter()
            clients = [threading.Thread(target=download, args=(url, sha256, size, errors))
                       for _ in range(args.concurrent)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
            after = rss_mib(child.pid)
        finally:
            child.kill()
            child.wait()
    if errors:
        print(f"downloads failed: {errors}")
        return 1
    growth = peak - before
    whole = args.concurrent * size / MIB
    print(f"{args.concurrent} concurrent downloads of a {size / MIB:.0f} MiB model in "
          f"{elapsed:.1f} s ({args.concurrent * size / MIB / elapsed:.0f} MiB/s in all)")
    print(f"collector RSS: {before:.0f} MiB before, {peak:.0f} MiB peak, {after:.0f} MiB after: "
          f"growth {growth:.0f} MiB = {growth / whole:.3f} x the {whole:.0f} MiB of the bodies "
          f"(target < {TARGET_GROWTH_MIB} MiB: {'met' if growth < TARGET_GROWTH_MIB else 'MISSED'})")
    return 0 if growth < TARGET_GROWTH_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
