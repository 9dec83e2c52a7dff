"""What a compare considers: each hardware group's newest run per model and scenario (fleet and
baselines), one device's newest N runs (a device compare), every run with 0, and only the
baselines that could match its edge runs (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone

import pytest

from collector.compare.baselines import compare_runs
from collector.compare.commands import register
from collector.compare.engine import compare
from collector.stores.base import ResultFilter, open_store
from shared.schema import BenchmarkResult, DeviceManifest
from tests.factories import make_result

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def run(device: str, model: str, network: str, minute: int, *, role: str = "edge") -> BenchmarkResult:
    return make_result(device_id=device, model_name=model, network=network, role=role, seq=minute,
                       created_at=T0 + timedelta(minutes=minute))


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_per_series_keeps_each_devices_newest_runs_of_each_model(store_url: str) -> None:
    rows = [run("pi-01", "vww.tflite", "vww_96", m) for m in (1, 5, 3)] + \
        [run("pi-01", "kws.tflite", "kws", m) for m in (2, 4, 6)] + [run("pi-02", "vww.tflite", "vww_96", 7)]
    store = open_store(store_url)
    try:
        store.add_results(rows)
        kept = store.list_results(ResultFilter(per_series=2))
        assert [(r.device_id, r.model.name, r.seq) for r in kept] == [   # still oldest first
            ("pi-01", "vww.tflite", 3), ("pi-01", "kws.tflite", 4), ("pi-01", "vww.tflite", 5),
            ("pi-01", "kws.tflite", 6), ("pi-02", "vww.tflite", 7)]
        both = store.list_results(ResultFilter(model="vww_96", per_series=1, limit=1))
        assert [(r.device_id, r.seq) for r in both] == [("pi-02", 7)]
        assert len(store.list_results(ResultFilter(per_series=0))) == 0
    finally:
        store.close()


def test_shares_model_keeps_runs_matching_by_sha256_or_network(store_url: str) -> None:
    onnx = run("dc-01", "vww_float.onnx", "vww_96", 1, role="datacenter")
    same_file = run("dc-01", "other.tflite", "other", 2, role="datacenter")
    unrelated = run("dc-01", "kws.onnx", "kws", 3, role="datacenter")
    store = open_store(store_url)
    try:
        store.add_results([onnx, same_file, unrelated])
        kept = store.list_results(ResultFilter(shares_model=frozenset({"vww_96",
                                                                       same_file.model.sha256})))
        assert [r.run_id for r in kept] == [onnx.run_id, same_file.run_id]
    finally:
        store.close()


def test_a_device_compare_bounds_its_runs_and_loads_only_baselines_that_can_match(
        store_url: str) -> None:
    edges = [run("pi-01", "vww.tflite", "vww_96", m) for m in range(4)]
    matching = [run("dc-01", "vww_float.onnx", "vww_96", 10 + m, role="datacenter") for m in range(3)]
    other = run("dc-01", "kws.onnx", "kws", 20, role="datacenter")
    store = open_store(store_url)
    try:
        store.add_results([*edges, *matching, other, run("pi-02", "vww.tflite", "vww_96", 30)])
        got_edges, baselines = compare_runs(store, model="vww_96", device="pi-01", per_series=2)
        assert [r.seq for r in got_edges] == [2, 3]         # the device's newest 2, as before
        assert [r.seq for r in baselines] == [12]           # dc-01's newest of vww_float.onnx
        every_edge, every_baseline = compare_runs(store, model=None, device=None, per_series=None)
        assert len(every_edge) == 5 and len(every_baseline) == 3    # kws cannot match: not loaded
    finally:
        store.close()


def hw_run(device: str, hardware: str | None, minute: int, *, model: str = "vww.tflite",
           network: str = "vww_96", role: str = "edge") -> BenchmarkResult:
    return make_result(device_id=device, model_name=model, network=network, role=role, seq=minute,
                       created_at=T0 + timedelta(minutes=minute),
                       device=DeviceManifest(hostname=device, cpu_model="x", cpu_cores=4,
                                             hardware_key=hardware))


def test_a_fleet_compare_takes_each_hardware_groups_newest_run_of_each_model(
        store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.add_results([
            *[hw_run(f"pi5-{i}", "raspberry-pi-5", i) for i in range(5)],           # newest: 4
            *[hw_run(f"pi5-{i}", "raspberry-pi-5", 10 + i, model="vww.onnx") for i in range(2)],
            *[hw_run(f"orin-{i}", "jetson-orin-nano-8gb", 20 - i) for i in range(3)],  # 20
            hw_run("bare-1", None, 5), hw_run("bare-1", None, 6), hw_run("bare-2", None, 2),
            hw_run("pi5-kws", "raspberry-pi-5", 30, model="kws.tflite", network="kws"),
            *[hw_run(f"a100-{i}", "nvidia-a100", 40 + i, model="vww_float.onnx",
                     role="datacenter") for i in range(4)],                          # 43
            hw_run("t4-1", "nvidia-t4", 50, model="vww_float.onnx", role="datacenter"),
            hw_run("t4-1", "nvidia-t4", 51, model="kws.onnx", network="kws", role="datacenter"),
            hw_run("lumi", "lumi-g-node", 52, model="vww.tflite", role="hpc"),
        ])
        edges, baselines = compare_runs(store, model="vww_96", device=None, per_series=50)
        assert [(r.device_id, r.seq) for r in edges] == [
            ("bare-2", 2), ("pi5-4", 4), ("bare-1", 6), ("pi5-1", 11), ("orin-0", 20)]
        assert [(r.device_id, r.seq) for r in baselines] == [
            ("a100-3", 43), ("t4-1", 50), ("lumi", 52)]
        rows = compare(edges, baselines, {}, None)
        assert len(rows) == len(edges) * len(baselines)     # each edge run meets each group once
        every_edge, every_baseline = compare_runs(store, model="vww_96", device=None,
                                                  per_series=None)
        assert len(every_edge) == 13 and len(every_baseline) == 6
    finally:
        store.close()


def test_compare_command_says_how_many_runs_it_considered(
        store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(store_url)
    try:
        store.add_results([*[run("pi-01", "vww.tflite", "vww_96", m) for m in range(3)],
                           run("dc-01", "vww_float.onnx", "vww_96", 9, role="datacenter"),
                           run("dc-01", "vww_float.onnx", "vww_96", 8, role="datacenter")])
    finally:
        store.close()
    assert cli(["compare", "--db", store_url, "--json", "--no-shipped"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 1
    assert "each edge hardware group's newest run and each baseline hardware group's newest " \
        "run per model and scenario (1 edge run(s), 1 measured" in out.err
    assert cli(["compare", "--db", store_url, "--json", "--no-shipped", "--device", "pi-01",
                "--runs-per-series", "2"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 2
    assert "pi-01's newest 2 run(s) and each baseline" in out.err
    assert cli(["compare", "--db", store_url, "--json", "--no-shipped",
                "--runs-per-series", "0"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 6 and "newest" not in out.err
