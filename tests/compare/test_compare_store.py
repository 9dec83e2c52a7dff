"""``edgemeter compare`` over a real store: an int8 edge run against a float datacenter run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from collector.compare.commands import register
from collector.stores.base import open_store
from shared.errors import ConfigError
from shared.schema import DeviceManifest, EnergyReport, PowerScope
from tests.compare.helpers import fidelity, fingerprint
from tests.factories import make_result


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def store_pair(url: str) -> tuple[str, str]:
    prints = [fingerprint(1, [0.1, 0.9]), fingerprint(0, [0.7, 0.3])]
    edge = make_result(
        device_id="pi-01", role="edge", model_name="vww_96_int8.tflite", network="vww_96",
        device=DeviceManifest(hostname="pi-01", hardware_key="raspberry-pi-4", cpu_cores=4),
        energy=EnergyReport(source="ina219", scope=PowerScope.BOARD, estimated=False,
                            avg_power_w=4.2, joules_per_inference=0.0084),
        fidelity=fidelity([fingerprint(1, [0.2, 0.8]), fingerprint(0, [0.6, 0.4])]),
    )
    dc = make_result(
        device_id="dc-01", role="datacenter", model_name="vww_96_float.onnx", network="vww_96",
        fmt="onnx", precision="float32", p50_ms=0.5, throughput_sps=4000.0, seq=1,
        device=DeviceManifest(hostname="dc-01", hardware_key="nvidia-t4"),
        fidelity=fidelity(prints),
    )
    store = open_store(url)
    try:
        assert store.add_results([edge, dc]) == 2
    finally:
        store.close()
    return str(edge.run_id), str(dc.run_id)


def test_int8_edge_run_against_float_datacenter_run(store_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    edge_id, dc_id = store_pair(store_url)
    assert cli(["compare", "--db", store_url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row, *cited = rows                                      # measured before cited
    assert cited and all(r["baseline"]["kind"] == "cited" for r in cited)   # shipped MLPerf Tiny
    store = open_store(store_url)
    try:
        edge, dc = store.get_result(edge_id), store.get_result(dc_id)
    finally:
        store.close()
    assert edge is not None and dc is not None
    assert row["edge_run_id"] == edge_id
    assert row["baseline"] == {**row["baseline"], "kind": "measured", "run_id": dc_id}
    assert row["match"] == "network" and row["scenario"] == "single-stream"
    assert row["ratios"]["latency_p50"] == pytest.approx(edge.latency_ms.p50 / dc.latency_ms.p50)
    assert row["ratios"]["throughput"] == pytest.approx(edge.throughput_sps / dc.throughput_sps)
    # edge: measured 0.0084 J; datacenter: T4 TDP 70 W / 4000 sps = 0.0175 J (tdp-assumed)
    assert row["ratios"]["joules_per_inference"] == pytest.approx(0.0084 / (70.0 / dc.throughput_sps))
    assert row["cost_per_million_usd"]["edge"] > 0 and row["cost_per_million_usd"]["baseline"] > 0
    assert row["cost_per_million_usd"]["baseline_cloud"] > 0
    assert row["edge_metrics"]["power_basis"] == "measured"
    assert row["baseline_metrics"]["power_basis"] == "tdp-assumed"
    assert row["fidelity"]["pairs"] == 2 and row["fidelity"]["top1_agreement"] == pytest.approx(1.0)


def test_filters_and_table_output(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store_pair(store_url)
    assert cli(["compare", "--db", store_url, "--model", "vww_96", "--device", "pi-01"]) == 0
    out = capsys.readouterr().out
    assert "pi-01" in out and "network" in out and "measured: dc-01" in out
    assert cli(["compare", "--db", store_url, "--device", "elsewhere", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_tariff_and_lifetime_flags_change_the_cost(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store_pair(url)
    costs = []
    for extra in ([], ["--tariff-usd-per-kwh", "0.30"], ["--lifetime-years", "1"]):
        assert cli(["compare", "--db", url, "--json", *extra]) == 0
        costs.append(json.loads(capsys.readouterr().out)[0]["cost_per_million_usd"]["edge"])
    assert costs[0] < costs[1] and costs[0] < costs[2]
    with pytest.raises(ConfigError):
        cli(["compare", "--db", url, "--duty-cycle", "0"])


def test_compare_writes_the_html_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store_pair(url)
    report = tmp_path / "report.html"
    assert cli(["compare", "--db", url, "--html", str(report)]) == 0
    text = report.read_text()
    assert text.count('src="data:image/png;base64,') == 4


def test_root_cli_prints_one_line_errors(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from edgemeter import cli as root

    assert root.main(["compare", "--db", "mysql://nowhere/db"]) == root.EXIT_ERROR
    assert root.main(["baselines", "import", "--db", "sqlite:///unused.db"]) == root.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("edgemeter: error: ") for line in err)


def test_an_html_path_in_a_missing_folder_fails_before_anything_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import collector.compare.commands as commands

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store_pair(url)
    compared: list[int] = []
    monkeypatch.setattr(commands, "compare", lambda *a, **k: compared.append(1) or [])
    with pytest.raises(ConfigError, match=r"--html .*missing/x\.html: the folder .* does not exist"):
        cli(["compare", "--db", url, "--html", str(tmp_path / "missing" / "x.html")])
    assert compared == [] and capsys.readouterr().out == ""
