"""The shipped MLPerf Tiny rows: cited per results file, and matched by a real run of a team model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from collector.compare import macs_agree, shipped_baselines
from collector.records import CitedBaseline
from collector.stores.base import open_store
from edgemeter.cli import main
from shared.schema import BenchmarkResult

TEAM_NETWORKS = {
    "vww_96": "vww_96_int8.tflite",
    "kws_dscnn": "kws_dscnn_int8.tflite",
    "ic_resnet8": "ic_resnet8_int8.tflite",
    "ad_autoencoder": "ad_autoencoder_int8.tflite",
}
RESULTS_URL = re.compile(
    r"https://github\.com/mlcommons/tiny_results_v1\.[0-3]/blob/[0-9a-f]{40}/closed/"
    r"(?P<submitter>[^/\s]+)/results/(?P<system>[^/\s]+)/(?P<bench>vww|kws|ic|ad)/"
    r"(?P<mode>performance|energy)/results\.txt"
)


def tiny_rows(network: str | None = None) -> list[CitedBaseline]:
    return [r for r in shipped_baselines() if r.source.startswith("MLPerf Tiny v1.")
            and (network is None or r.network == network)]


@pytest.mark.parametrize("network", sorted(TEAM_NETWORKS))
def test_each_team_network_has_several_cited_mlperf_tiny_systems(network: str) -> None:
    rows = tiny_rows(network)
    assert len({r.hardware for r in rows}) >= 3
    assert sum(r.joules_per_inference is not None for r in rows) >= 2


def test_every_tiny_row_names_round_submitter_system_and_its_results_files() -> None:
    rows = tiny_rows()
    assert rows
    for row in rows:
        urls = list(RESULTS_URL.finditer(row.source))
        assert [u["mode"] for u in urls] == (
            ["performance", "energy"] if row.joules_per_inference is not None else ["performance"]
        ), row.source
        for url in urls:
            assert f"submitter {url['submitter']}, system {url['system']}" in row.source
            assert f"benchmark {url['bench']} " in row.source
        assert row.published and row.scenario.value == "single-stream" and row.batch == 1


def test_tiny_latency_is_the_inverse_of_the_cited_median_throughput() -> None:
    for row in tiny_rows():
        assert row.throughput_sps and row.latency_p50_ms
        cited = re.findall(r"median throughput ([0-9.]+) inf\./sec\.", row.source)
        assert [float(c) for c in cited] == [row.throughput_sps]
        assert row.latency_p50_ms == pytest.approx(1000.0 / row.throughput_sps, rel=1e-4)


def test_tiny_energy_is_the_cited_microjoules_in_joules() -> None:
    for row in tiny_rows():
        if row.joules_per_inference is not None:
            cited_uj = float(re.findall(r"median energy ([0-9.]+) uJ/inf\.", row.source)[0])
            assert row.joules_per_inference == pytest.approx(cited_uj * 1e-6, rel=1e-12)


@pytest.mark.parametrize("network", sorted(TEAM_NETWORKS))
def test_cited_macs_agree_with_what_analyze_counts_in_the_team_model(
    network: str, shared_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(shared_models / TEAM_NETWORKS[network]), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)["macs"]
    for row in tiny_rows(network):
        assert row.macs is not None and macs_agree(row.macs, counted), row.hardware


def test_compare_after_one_vww_bench_lists_cited_mlperf_tiny_rows_with_their_sources(
    shared_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EDGEMETER_SPOOL", str(tmp_path / "spool.db"))
    out = tmp_path / "vww.json"
    assert main(["bench", str(shared_models / "vww_96_int8.tflite"), "--iterations", "100",
                 "--warmup", "5", "--idle-s", "0", "--power", "none", "--fidelity", "0",
                 "--json", str(out), "-q"]) == 0
    result = BenchmarkResult.model_validate_json(out.read_text())
    url = f"sqlite:///{tmp_path / 'results.db'}"
    store = open_store(url)
    try:
        assert store.add_results([result]) == 1
    finally:
        store.close()
    capsys.readouterr()

    assert main(["compare", "--db", url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    cited = [r for r in rows if r["baseline"]["kind"] == "cited"]
    assert len(cited) == len(tiny_rows("vww_96")) >= 3
    for row in cited:
        assert row["network"] == "vww_96" and row["match"] == "network"
        assert RESULTS_URL.search(row["baseline"]["source"])
        assert row["ratios"]["latency_p50"] == pytest.approx(
            result.latency_ms.p50 / row["baseline_metrics"]["latency_p50_ms"])

    assert main(["compare", "--db", url]) == 0                # the table a person reads
    table = capsys.readouterr().out
    for row in tiny_rows("vww_96"):
        assert row.hardware in table
        assert RESULTS_URL.search(row.source)[0] in table       # type: ignore[index]
