"""The per-series table ``add_results`` keeps (newest result of each device, model and scenario),
and the representatives a compare reads from it (``ResultFilter.newest_per_hardware``), on SQLite
and the real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from collector.stores.base import ResultFilter
from collector.stores.sql import SqlStore
from collector.stores.tables import series
from shared.schema import BenchmarkResult, DeviceManifest, RunSpec, RunSpecPair, Scenario
from tests.collector.conftest import NOW
from tests.factories import make_result

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def run(device: str, minute: int, *, model: str = "vww.tflite", network: str = "vww_96",
        hardware: str | None = None, role: str = "edge", fleet: str = "default",
        scenario: Scenario = Scenario.SINGLE_STREAM) -> BenchmarkResult:
    return make_result(
        device_id=device, model_name=model, network=network, role=role, fleet=fleet, seq=minute,
        created_at=T0 + timedelta(minutes=minute),
        device=DeviceManifest(hostname=device, cpu_model="Cortex-A76", cpu_cores=4,
                              hardware_key=hardware),
        spec=RunSpecPair(requested=RunSpec(scenario=scenario),
                         effective=RunSpec(scenario=scenario, iterations=200)))


def series_rows(store: SqlStore) -> dict[tuple[str, str, str], dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(series)).mappings().all()
    return {(r["device_id"], r["model_sha256"], r["scenario"]): dict(r) for r in rows}


def seqs(runs: list[BenchmarkResult]) -> list[tuple[str, int]]:
    return [(r.device_id, r.seq) for r in runs]


def test_series_keeps_each_devices_newest_run_of_each_model_and_scenario(
        clocked: SqlStore) -> None:
    newest = run("pi-01", 5, hardware="raspberry-pi-5")
    offline = run("pi-01", 1, scenario=Scenario.OFFLINE)
    clocked.add_results([run("pi-01", 2), newest, run("pi-01", 3), offline])
    clocked.add_results([run("pi-01", 4)])   # arrives later, but older than the newest
    rows = series_rows(clocked)
    assert len(rows) == 2
    row = rows[("pi-01", newest.model.sha256, "single-stream")]
    assert (row["latest_run_id"], row["latest_created_at"]) == (str(newest.run_id),
                                                                newest.created_at)
    assert (row["fleet"], row["role"], row["model_name"], row["network"], row["hardware_key"]) \
        == ("default", "edge", "vww.tflite", "vww_96", "raspberry-pi-5")
    assert rows[("pi-01", offline.model.sha256, "offline")]["latest_run_id"] == str(offline.run_id)


def test_a_newer_run_arriving_later_takes_the_series_and_a_tie_goes_to_the_larger_run_id(
        clocked: SqlStore) -> None:
    clocked.add_results([run("pi-01", 5)])
    newer = run("pi-01", 6, hardware="jetson-nano", fleet="lab")
    clocked.add_results([newer])
    key = ("pi-01", newer.model.sha256, "single-stream")
    row = series_rows(clocked)[key]
    assert (row["latest_run_id"], row["hardware_key"], row["fleet"]) == (
        str(newer.run_id), "jetson-nano", "lab")
    twin = run("pi-01", 6)   # the same created_at
    clocked.add_results([twin])
    clocked.add_results([newer])   # a re-send changes nothing
    winner = max(newer, twin, key=lambda r: str(r.run_id))
    assert series_rows(clocked)[key]["latest_run_id"] == str(winner.run_id)
    assert clocked.list_results(ResultFilter(newest_per_hardware=True)) == [winner]


def test_newest_per_hardware_keeps_one_run_per_hardware_group_model_and_scenario(
        clocked: SqlStore) -> None:
    clocked.add_results([
        run("pi-a", 1, hardware="raspberry-pi-5"), run("pi-a", 9, hardware="raspberry-pi-5"),
        run("pi-b", 5, hardware="raspberry-pi-5"),            # same board, older: not kept
        run("pi-b", 3, hardware="raspberry-pi-5", model="kws.tflite", network="kws"),
        run("pi-c", 2), run("pi-c", 4),                      # no hardware key: a group alone
        run("pi-d", 6),
        run("pi-a", 7, hardware="raspberry-pi-5", scenario=Scenario.OFFLINE),
        run("dc-1", 8, hardware="raspberry-pi-5", role="datacenter"),  # another role
    ])
    kept = clocked.list_results(ResultFilter(newest_per_hardware=True))
    assert seqs(kept) == [("pi-b", 3), ("pi-c", 4), ("pi-d", 6), ("pi-a", 7), ("dc-1", 8),
                          ("pi-a", 9)]   # oldest first
    assert seqs(clocked.list_results(ResultFilter(newest_per_hardware=True, role="edge",
                                                  model="vww_96"))) == \
        [("pi-c", 4), ("pi-d", 6), ("pi-a", 7), ("pi-a", 9)]
    assert seqs(clocked.list_results(ResultFilter(newest_per_hardware=True, limit=2))) == \
        [("dc-1", 8), ("pi-a", 9)]
    assert seqs(list(clocked.iter_results(ResultFilter(newest_per_hardware=True,
                                                       model="kws")))) == [("pi-b", 3)]


def test_newest_per_hardware_filters_like_the_other_queries(clocked: SqlStore) -> None:
    onnx = run("dc-1", 1, model="vww_float.onnx", role="datacenter", hardware="nvidia-a100")
    same_file = run("dc-2", 2, model="other.tflite", network="other", role="datacenter")
    unrelated = run("dc-3", 3, model="kws.onnx", network="kws", role="datacenter")
    lab = run("pi-9", 4, fleet="lab")
    clocked.add_results([onnx, same_file, unrelated, lab])
    shares = frozenset({"vww_96", same_file.model.sha256})
    assert clocked.list_results(ResultFilter(newest_per_hardware=True, role="datacenter",
                                             shares_model=shares)) == [onnx, same_file]
    assert clocked.list_results(ResultFilter(newest_per_hardware=True, fleet="lab")) == [lab]
    hpc = run("hpc-1", 5, role="hpc")
    clocked.add_results([hpc])
    baseline_roles = frozenset({"datacenter", "hpc"})
    for per_hardware in (True, False):
        assert clocked.list_results(ResultFilter(newest_per_hardware=per_hardware,
                                                 roles=baseline_roles)) == \
            [onnx, same_file, unrelated, hpc]
    assert clocked.list_results(ResultFilter(newest_per_hardware=True, device_id="dc-3")) == \
        [unrelated]
    assert clocked.list_results(ResultFilter(newest_per_hardware=True,
                                             model=onnx.model.sha256)) == [onnx]
    with pytest.raises(ValueError, match="cannot be combined"):
        ResultFilter(newest_per_hardware=True, per_series=2)


def test_a_run_stored_before_under_another_created_at_is_still_found(clocked: SqlStore) -> None:
    first = run("pi-01", 1)
    clocked.add_results([first])
    resent = first.model_copy(update={"created_at": first.created_at + timedelta(minutes=5)})
    assert clocked.add_results([resent]) == 0   # stored once, with its first created_at
    assert clocked.list_results(ResultFilter(newest_per_hardware=True)) == [first]


def test_pruning_forgets_the_series_whose_results_went(clocked: SqlStore) -> None:
    old = make_result(device_id="pi-old", created_at=datetime(2025, 8, 1, tzinfo=timezone.utc))
    kept = make_result(device_id="pi-new", created_at=datetime(2026, 3, 1, tzinfo=timezone.utc))
    clocked.add_results([old, kept])
    clocked.prune(older_than_days=60)
    assert [key[0] for key in series_rows(clocked)] == ["pi-new"]
    assert clocked.list_results(ResultFilter(newest_per_hardware=True)) == [kept]


def test_sqlite_prune_compares_times_as_stored(sqlite_url: str) -> None:
    """The cutoff is bound as the column stores time, so a row of the cutoff's day goes when it
    is older (a plain datetime parameter compared ' ' with 'T')."""
    store = SqlStore(sqlite_url, clock=lambda: NOW)
    try:
        store.migrate()
        store.add_results([make_result(created_at=NOW - timedelta(days=1, hours=1)),
                           make_result(created_at=NOW - timedelta(hours=23))])
        assert store.prune(older_than_days=1).results_deleted == 1
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM results")).scalar() == 1
    finally:
        store.close()
