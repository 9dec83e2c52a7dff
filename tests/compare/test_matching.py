"""Which baselines match an edge run, and by which rule."""

from __future__ import annotations

from collector.compare import compare, match_rule
from collector.records import CitedBaseline
from shared.catalogue import load_catalogue
from shared.schema import Scenario
from tests.compare.helpers import dc_float, edge_int8, run


def cited(**kw: object) -> CitedBaseline:
    fields: dict[str, object] = {"network": "vww_96", "hardware": "a GPU", "scenario": "single-stream",
                                 "throughput_sps": 1000.0, "source": "a paper, table 1"}
    fields.update(kw)
    return CitedBaseline.model_validate(fields)


def test_same_file_matches_by_sha256() -> None:
    edge = edge_int8()
    same_file = run(role="datacenter", device_id="dc-01", hardware_key="nvidia-t4")
    assert edge.model.sha256 == same_file.model.sha256
    assert match_rule(edge, same_file) == "sha256"


def test_int8_tflite_and_float_onnx_of_one_network_match_by_network() -> None:
    assert match_rule(edge_int8(), dc_float()) == "network"


def test_sha256_beats_network_in_rule_and_order() -> None:
    edge = edge_int8()
    by_network, by_hash = dc_float(), run(role="datacenter", device_id="dc-02")
    rows = compare([edge], [by_network, by_hash], load_catalogue().entries)
    assert [r.match for r in rows] == ["sha256", "network"]
    assert rows[0].baseline.run_id == str(by_hash.run_id)


def test_macs_within_two_percent_match() -> None:
    edge = edge_int8(macs=1_000_000)
    assert match_rule(edge, dc_float(macs=1_019_000)) == "network"
    assert match_rule(edge, cited(macs=981_000)) == "network"


def test_macs_more_than_two_percent_apart_do_not_match() -> None:
    edge = edge_int8(macs=1_000_000)
    assert match_rule(edge, dc_float(macs=1_030_000)) is None
    assert match_rule(edge, cited(macs=1_030_000)) is None


def test_unknown_macs_on_one_side_still_match_by_network() -> None:
    assert match_rule(edge_int8(macs=None), dc_float()) == "network"
    assert match_rule(edge_int8(), cited(macs=None)) == "network"


def test_scenario_must_match() -> None:
    edge = edge_int8()
    assert match_rule(edge, dc_float(scenario=Scenario.OFFLINE)) is None
    assert match_rule(edge, cited(scenario="offline")) is None
    same_file_offline = run(role="datacenter", scenario=Scenario.OFFLINE)
    assert match_rule(edge, same_file_offline) is None


def test_other_networks_and_the_run_itself_do_not_match() -> None:
    edge = edge_int8()
    assert match_rule(edge, dc_float(network="kws_dscnn")) is None
    assert match_rule(edge, cited(network="resnet50_v1")) is None
    assert match_rule(edge, edge) is None
    assert match_rule(edge_int8(network=None), dc_float()) is None
