"""The collector's commands: results, results --json, --dead-letters, export, collector serve."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from collector import commands
from collector.export import flat_rows, flatten
from collector.stores.base import open_store
from shared.errors import EdgemeterError
from shared.schema import BenchmarkResult, EnergyReport, PowerScope
from tests.collector.conftest import wait_for
from tests.factories import make_result

REPO = Path(__file__).resolve().parents[2]


def _own_main(argv: Sequence[str]) -> int:
    """The root CLI's contract (one line on stderr, exit 2) over a parser of our commands only."""
    parser = argparse.ArgumentParser(prog="edgemeter")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    try:
        return int(args.func(args) or 0)
    except EdgemeterError as err:
        print(f"edgemeter: error: {err}", file=sys.stderr)
        return 2


def _root_main() -> Callable[[Sequence[str]], int]:
    """edgemeter.cli.main when every command module imports, else the collector's commands alone."""
    try:
        from edgemeter import cli

        cli.build_parser()
    except ImportError:
        return _own_main
    return cli.main


main = _root_main()


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def db(sqlite_url: str) -> tuple[str, list[BenchmarkResult]]:
    results = [
        make_result(device_id="pi-01", seq=0),
        make_result(device_id="pi-02", model_name="vww_96_int8.onnx", fmt="onnx",
                    labels={"site": "lab"},
                    energy=EnergyReport(source="ina3221", scope=PowerScope.BOARD, estimated=False,
                                        avg_power_w=4.0, joules_per_inference=0.0123)),
        make_result(device_id="jetson-01", role="datacenter", seq=3),
    ]
    store = open_store(sqlite_url)
    store.add_results(results)
    store.add_dead_letter("edgemeter/v1/default/pi-01/result", "payload is not JSON", b"\xff{")
    store.close()
    return sqlite_url, results


def test_results_prints_a_table(db: tuple[str, list[BenchmarkResult]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    url, results = db
    code, out, _ = run(["results", "--db", url], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run_id", "created_at", "(UTC)"]
    for header in ("p50 ms", "p90 ms", "p99 ms", "sps", "J/inf", "valid"):
        assert header in lines[0]
    assert len(lines) == 4
    assert str(results[0].run_id)[:8] in lines[1] and "pi-01" in lines[1]
    assert "0.0123" in lines[2] and "litert 2.3.0" in lines[2]
    assert lines[3].rstrip().endswith("yes")


def test_results_json_lists_the_stored_results(db: tuple[str, list[BenchmarkResult]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    url, results = db
    code, out, _ = run(["results", "--db", url, "--json"], capsys)
    assert code == 0
    assert json.loads(out) == [r.model_dump(mode="json") for r in results]
    _, out, _ = run(["results", "--db", url, "--json", "--device", "pi-02"], capsys)
    assert [r["device_id"] for r in json.loads(out)] == ["pi-02"]
    _, out, _ = run(["results", "--db", url, "--json", "--model", "vww_96_int8.onnx"], capsys)
    assert [r["device_id"] for r in json.loads(out)] == ["pi-02"]
    _, out, _ = run(["results", "--db", url, "--json", "--limit", "1"], capsys)
    assert [r["device_id"] for r in json.loads(out)] == ["jetson-01"]
    _, out, _ = run(["results", "--db", url, "--json", "--role", "datacenter"], capsys)
    assert [r["device_id"] for r in json.loads(out)] == ["jetson-01"]


def test_results_dead_letters_as_table_and_json(db: tuple[str, list[BenchmarkResult]],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = db
    code, out, _ = run(["results", "--db", url, "--dead-letters"], capsys)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["id", "received_at", "topic", "reason", "bytes"]
    assert "payload is not JSON" in row and row.rstrip().endswith("2")
    code, out, _ = run(["results", "--db", url, "--dead-letters", "--json"], capsys)
    [letter] = json.loads(out)
    assert base64.b64decode(letter["payload_base64"]) == b"\xff{"
    assert letter["size_bytes"] == 2 and letter["topic"].endswith("/pi-01/result")


def test_results_on_a_missing_database_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["results", "--db", f"sqlite:///{tmp_path}/none.db"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no results database" in err
    assert not (tmp_path / "none.db").exists()


def test_export_csv_flattens_nested_fields(db: tuple[str, list[BenchmarkResult]],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    url, results = db
    code, out, _ = run(["export", "--db", url, "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3
    first = rows[0]
    assert float(first["latency_ms_p50"]) == pytest.approx(results[0].latency_ms.p50)
    assert first["spec_effective_iterations"] == "200"
    assert json.loads(first["model_inputs"])[0]["shape"] == [1, 96, 96, 3]
    assert rows[1]["labels_site"] == "lab" and rows[0]["labels_site"] == ""
    assert rows[1]["energy_joules_per_inference"] == "0.0123"
    assert "energy" not in first  # only the flattened energy_* columns
    assert "latency_ms" not in first


def test_export_jsonl_round_trips(db: tuple[str, list[BenchmarkResult]], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    url, results = db
    target = tmp_path / "out.jsonl"
    code, _, err = run(["export", "--db", url, "--format", "jsonl", "--output", str(target)],
                       capsys)
    assert code == 0 and "wrote 3 results" in err
    lines = target.read_text().splitlines()
    assert [BenchmarkResult.model_validate_json(line) for line in lines] == results


def test_export_parquet_writes_flat_columns(db: tuple[str, list[BenchmarkResult]],
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    url, results = db
    target = tmp_path / "out.parquet"
    code, _, _ = run(["export", "--db", url, "--format", "parquet", "-o", str(target)], capsys)
    assert code == 0
    table = pq.read_table(target)
    assert table.num_rows == 3
    data = table.to_pydict()
    assert data["latency_ms_p99"][2] == pytest.approx(results[2].latency_ms.p99)
    assert data["energy_joules_per_inference"] == [None, 0.0123, None]
    assert data["device_id"] == ["pi-01", "pi-02", "jetson-01"]


def test_export_parquet_needs_an_output_file(db: tuple[str, list[BenchmarkResult]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["export", "--db", db[0], "--format", "parquet"], capsys)
    assert code == 2 and out == "" and "--output" in err


def test_missing_extras_name_the_pip_command(monkeypatch: pytest.MonkeyPatch,
                                             db: tuple[str, list[BenchmarkResult]],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("psycopg", "pyarrow") else real(name, *a))
    code, _, err = run(["results", "--db", "postgresql://u@127.0.0.1:1/x"], capsys)
    assert code == 2 and "pip install " in err and "[collector]'" in err and "psycopg" in err
    code, _, err = run(["export", "--db", db[0], "--format", "parquet", "-o",
                        str(tmp_path / "x.parquet")], capsys)
    assert code == 2 and "pyarrow" in err
    code, out, _ = run(["export", "--db", db[0], "--format", "csv"], capsys)
    assert code == 0 and out  # SQLite and CSV need neither psycopg nor pyarrow


def test_help_texts_list_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, options in (
        (["collector", "serve", "--help"], ["--mqtt", "--db", "--group", "--client-id"]),
        (["results", "--help"], ["--json", "--dead-letters", "--model", "--device", "--limit"]),
        (["export", "--help"], ["--format", "--output", "csv", "parquet", "jsonl"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        for option in options:
            assert option in out, (argv, option)


def test_flatten_joins_keys_and_encodes_lists() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, {"f": 2}], "g": "x"}) == {
        "a_b": 1, "a_c_d": None, "e": '[1,{"f":2}]', "g": "x"}
    columns, _ = flat_rows([make_result()])
    assert "latency_ms_p50" in columns and "spec_requested_scenario" in columns


@pytest.mark.mqtt
def test_collector_serve_stores_results_and_stops_on_sigterm(
    mosquitto_url: str, sqlite_url: str, publisher: object
) -> None:
    code = (
        "import argparse, sys; from collector import commands; "
        "p = argparse.ArgumentParser(); commands.register(p.add_subparsers()); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    client_id = f"edgemeter-collector-cli-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "collector", "serve", "--mqtt", mosquitto_url,
         "--db", sqlite_url, "--client-id", client_id],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        store = open_store(sqlite_url)

        def delivered() -> bool:
            publisher.publish("edgemeter/v1/default/pi-01/result",  # type: ignore[attr-defined]
                              make_result().model_dump_json().encode(), qos=1)
            time.sleep(0.1)
            return bool(store.list_results())

        assert wait_for(delivered, timeout_s=15)
        store.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert client_id in err and "collector stopped" in err and "stored" in err
