"""The case study that opens `compare --html`: one network, edge vs datacenter vs supercomputer
node, measured or cited, with the notes that say what each figure is charged for."""

from __future__ import annotations

from collector.compare import compare, shipped_baselines
from collector.compare.case_study import case_lines, case_study_html
from collector.compare.report import render_html
from shared.catalogue import load_catalogue
from shared.schema import BenchmarkResult, RunSpec, RunSpecPair, Scenario
from tests.factories import make_result

OFFLINE = RunSpecPair(requested=RunSpec(scenario=Scenario.OFFLINE),
                      effective=RunSpec(scenario=Scenario.OFFLINE, iterations=200))


def resnet(device_id: str, role: str, **kw: object) -> BenchmarkResult:
    return make_result(device_id=device_id, role=role, model_name="resnet50_v1.onnx", network="resnet50_v1",
                       fmt="onnx", macs=None, spec=OFFLINE, **kw)


def scene() -> tuple[list, dict[str, BenchmarkResult]]:  # type: ignore[type-arg]
    edge = resnet("pi-01", "edge", p50_ms=90.0, throughput_sps=11.0)
    node = resnet("lumi-node-7", "hpc", p50_ms=1.0, throughput_sps=9000.0)
    cited = [c for c in shipped_baselines() if c.url]
    rows = compare([edge], [node, *cited], load_catalogue().entries)
    return rows, {str(edge.run_id): edge, str(node.run_id): node}


def test_edge_datacenter_and_supercomputer_lines_side_by_side() -> None:
    rows, runs = scene()
    network, lines, others = case_lines(rows, runs, load_catalogue().entries)
    assert network == "resnet50_v1" and others == []
    sides = [line.side for line in lines]
    assert sides[0] == "edge" and {"edge", "datacenter", "hpc"} <= set(sides)
    assert sides == sorted(sides, key=["edge", "datacenter", "hpc"].index)
    origins = {(line.side, line.origin) for line in lines}
    assert ("hpc", "measured") in origins and ("datacenter", "cited") in origins and ("edge", "cited") in origins
    h100 = next(line for line in lines  # the 8-GPU DGX row, not the single-H100 one
                if "H100" in line.label and "offline" in line.notes and "1x" not in line.label)
    assert "1/8 of the NVIDIA DGX H100" in h100.notes and "MLPerf Inference v4.0 closed" in h100.notes


def test_the_report_opens_with_the_case_study_and_says_when_networks_differ() -> None:
    rows, runs = scene()
    other = make_result(device_id="pi-02", seq=2)  # vww_96: no baseline of that network here
    dc = make_result(device_id="dc-1", role="datacenter", model_name="vww_96_float.onnx", fmt="onnx", seq=3)
    more = compare([other], [dc], load_catalogue().entries)
    assert more
    page = render_html([*rows, *more], {**runs, str(other.run_id): other})
    assert page.index("Case study: resnet50_v1") < page.index("comparison row(s)")
    assert "Other networks in this report:</b> vww_96" in page
    assert "not comparable" in page


def test_a_report_without_rows_has_no_case_study() -> None:
    assert case_study_html([], {}) == ""


def test_a_run_whose_network_no_baseline_ran_is_told_so_plainly() -> None:
    from collector.compare.case_study import network_gaps

    edge = make_result(device_id="pi-01", model_name="ic_resnet8_int8.tflite", network="ic_resnet8", spec=OFFLINE)
    cited = [c for c in shipped_baselines() if c.url]
    rows = compare([edge], cited, load_catalogue().entries)
    assert rows == []
    (line,) = network_gaps([edge], cited, rows)
    assert line.startswith("ic_resnet8: no baseline ran this network")
    assert "resnet50_v1" in line and "different networks" in line
    matched = resnet("pi-02", "edge")
    assert network_gaps([matched], cited, compare([matched], cited, load_catalogue().entries)) == []
