"""The shipped MLPerf Inference rows: each names its round, division, submitter, system, scenario,
figure and results file at a pinned commit, and a ResNet-50-class run meets edge and datacenter rows."""

from __future__ import annotations

import re

import pytest

from collector.compare import compare, shipped_baselines
from collector.records import CitedBaseline
from shared.catalogue import load_catalogue
from shared.schema import Role, Scenario
from tests.factories import make_result

RESULTS_URL = re.compile(
    r"^https://github\.com/mlcommons/inference_results_v(?P<round>[0-9.]+)/blob/[0-9a-f]{40}/"
    r"(?P<division>closed|open)/(?P<submitter>[^/\s]+)/results/(?P<system>[^/\s]+)/(?P<bench>[^/\s]+)/"
    r"(?P<scenario>Offline|Server|SingleStream|MultiStream)/performance/run_1/mlperf_log_summary\.txt$"
)
SCENARIOS = {"Offline": Scenario.OFFLINE, "Server": Scenario.SERVER, "SingleStream": Scenario.SINGLE_STREAM,
             "MultiStream": Scenario.MULTI_STREAM}
# Rows 0-2 predate these fields; the truth task rewrites them (issue #20) in the same file.
def inference_rows() -> list[CitedBaseline]:
    rows = shipped_baselines()
    return [r for r in rows if "MLPerf Inference" in r.source]


def test_every_mlperf_inference_row_names_its_submission_and_results_file() -> None:
    rows = inference_rows()
    assert len(rows) >= 10
    for row in rows:
        missing = [f for f in ("mlperf_round", "division", "submitter", "system", "figure", "figure_unit", "url",
                               "accelerators") if getattr(row, f) is None]
        assert not missing, f"{row.hardware} {row.scenario}: no {', '.join(missing)}"
        found = RESULTS_URL.match(row.url or "")
        assert found, row.url
        assert f"v{found['round']}" == row.mlperf_round and found["division"] == row.division
        assert found["submitter"] == row.submitter and SCENARIOS[found["scenario"]] == row.scenario
        assert row.url in row.source and row.system in row.source and row.mlperf_round in row.source


def test_throughput_is_the_published_figure_per_accelerator() -> None:
    for row in inference_rows():
        assert row.figure is not None and row.accelerators is not None
        if row.scenario == Scenario.SINGLE_STREAM:
            assert row.latency_p90_ms == row.figure  # SingleStream's result is its 90th percentile
        else:
            assert row.throughput_sps == pytest.approx(row.figure / row.accelerators, abs=1e-3)


def test_resnet50_is_cited_for_at_least_five_accelerators_at_the_edge_and_in_the_datacenter() -> None:
    rows = [r for r in shipped_baselines() if r.network == "resnet50_v1" and r.url]
    accelerators = {r.hardware.split(",")[0].split(" (")[0] for r in rows}
    assert len(accelerators) >= 4, accelerators
    assert {r.role for r in rows} >= {Role.EDGE, Role.DATACENTER}
    assert len({r.hardware_key for r in shipped_baselines() if r.network == "resnet50_v1"} - {None}) >= 3


def test_a_resnet50_offline_edge_run_is_compared_with_edge_and_datacenter_citations() -> None:
    run = make_result(device_id="pi-01", seq=1, p50_ms=80.0)
    run.model.network = "resnet50_v1"
    run.model.macs = None
    run.spec.effective.scenario = Scenario.OFFLINE
    cited = [r for r in shipped_baselines() if r.url]
    rows = compare([run], cited, load_catalogue().entries)
    by_id = {r.baseline_id: r for r in cited}
    assert {by_id[str(row.baseline.baseline_id)].role for row in rows} >= {Role.EDGE, Role.DATACENTER}
    assert all(row.baseline.network == "resnet50_v1" and row.baseline.kind == "cited" for row in rows)
    assert len(rows) >= 4
