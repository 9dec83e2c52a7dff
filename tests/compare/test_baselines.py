"""Cited baselines: the shipped set, import from JSON/CSV (idempotent), and listing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from collector.compare import import_cited, list_baselines, read_cited_file, shipped_baselines
from collector.compare.commands import register
from collector.stores.base import open_store
from shared.errors import ConfigError
from tests.compare.helpers import dc_float, edge_int8


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_at_least_three_cited_baselines_ship_each_with_a_source() -> None:
    rows = shipped_baselines()
    assert len(rows) >= 3
    assert all(len(r.source) >= 20 for r in rows)
    assert len({r.baseline_id for r in rows}) == len(rows)
    assert all(r.throughput_sps or r.latency_p50_ms or r.latency_p90_ms for r in rows)


def test_import_is_idempotent(store_url: str) -> None:
    store = open_store(store_url)
    try:
        shipped = shipped_baselines()
        assert import_cited(store, shipped) == len(shipped)
        assert import_cited(store, shipped) == 0
        assert len(store.list_cited_baselines()) == len(shipped)
    finally:
        store.close()


def test_cli_imports_shipped_twice_and_lists_both_kinds(store_url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(store_url)
    store.add_results([edge_int8(), dc_float()])
    store.close()
    assert cli(["baselines", "import", "--shipped", "--db", store_url]) == 0
    assert cli(["baselines", "import", "--shipped", "--db", store_url]) == 0
    out = capsys.readouterr().out
    n = len(shipped_baselines())
    assert f"imported {n} new of {n}" in out and f"imported 0 new of {n}" in out
    assert cli(["baselines", "list", "--db", store_url, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    measured = [x for x in listing if x["kind"] == "measured"]
    cited = [x for x in listing if x["kind"] == "cited"]
    assert len(measured) == 1 and len(cited) == n                   # the edge run is no baseline
    assert {"run_id", "device", "model", "network", "scenario", "throughput_sps",
            "latency_p50_ms"} <= set(measured[0])
    assert measured[0]["device"] == "dc-01" and measured[0]["network"] == "vww_96"
    assert all(x["source"] and x["stored"] for x in cited)


def test_listing_shows_shipped_rows_not_yet_imported(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        listing = list_baselines(store)
        assert [x.stored for x in listing] == [False] * len(shipped_baselines())
        assert list_baselines(store, include_shipped=False) == []
    finally:
        store.close()


def test_reads_json_and_csv(tmp_path: Path) -> None:
    json_file = tmp_path / "rows.json"
    json_file.write_text(json.dumps([{"network": "vww_96", "hardware": "A100", "scenario": "offline",
                                      "throughput_sps": 12000, "source": "paper X, table 2"}]))
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("network,hardware,scenario,throughput_sps,latency_p50_ms,source\n"
                        "vww_96,L4,single-stream,,0.8,vendor blog 2024\n")
    (from_json,) = read_cited_file(json_file)
    (from_csv,) = read_cited_file(csv_file)
    assert from_json.throughput_sps == 12000 and from_json.scenario.value == "offline"
    assert from_csv.throughput_sps is None and from_csv.latency_p50_ms == 0.8


def test_a_row_without_a_source_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("network,hardware,scenario,throughput_sps\nvww_96,L4,offline,100\n")
    with pytest.raises(ConfigError, match="row 1: source"):
        read_cited_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_cited_file(tmp_path / "missing.json")
