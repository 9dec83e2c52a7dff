"""The comparison engine on hand-computed cases (the formulas are in docs/compare.md)."""

from __future__ import annotations

import json

import pytest

from collector.compare import (
    ComparisonRow,
    CostSettings,
    compare,
    compare_pair,
    fidelity_agreement,
    ratio,
)
from collector.records import CitedBaseline
from shared.catalogue import load_catalogue
from shared.schema import BenchmarkResult, DeviceManifest, RunSpec, RunSpecPair
from tests.compare.helpers import dc_float, edge_int8, fidelity, fingerprint

HW = load_catalogue().entries


def hand_pair() -> tuple[ComparisonRow, BenchmarkResult, BenchmarkResult]:
    # edge: Raspberry Pi 4 (catalogue: USD 55, 3 y), p50 2.0 ms, p90 3.0 ms, 500 sps,
    #       measured 5.0 W and 0.01 J per inference
    # base: NVIDIA T4 (catalogue: USD 2,000, 5 y, 70 W TDP, 0.526 USD/h), p50 0.5, p90 0.6, 4000 sps,
    #       no energy -> TDP assumed: 70 W / 4000 sps = 0.0175 J per inference
    edge = edge_int8(p50_ms=2.0, p90_ms=3.0, throughput_sps=500.0, avg_power_w=5.0,
                     joules_per_inference=0.01)
    base = dc_float(p50_ms=0.5, p90_ms=0.6, throughput_sps=4000.0)
    return compare_pair(edge, base, "network", HW, CostSettings()), edge, base


def test_ratios_are_edge_over_baseline() -> None:
    row, _, _ = hand_pair()
    assert row.ratios.latency_p50 == pytest.approx(4.0)          # 2.0 / 0.5
    assert row.ratios.latency_p90 == pytest.approx(5.0)          # 3.0 / 0.6
    assert row.ratios.throughput == pytest.approx(0.125)         # 500 / 4000
    assert row.ratios.joules_per_inference == pytest.approx(0.01 / 0.0175)
    assert row.edge_metrics.inferences_per_joule == pytest.approx(100.0)
    assert row.baseline_metrics.inferences_per_joule == pytest.approx(4000 / 70)


def test_power_basis_is_measured_energy_else_catalogue_tdp() -> None:
    row, _, _ = hand_pair()
    assert (row.edge_metrics.avg_power_w, row.edge_metrics.power_basis) == (5.0, "measured")
    assert (row.baseline_metrics.avg_power_w, row.baseline_metrics.power_basis) == (70.0, "tdp-assumed")
    assert any("baseline power" in n and "tdp-assumed" in n for n in row.notes)
    estimated = compare_pair(edge_int8(avg_power_w=4.0, estimated=True), dc_float(), "network", HW,
                             CostSettings())
    assert estimated.edge_metrics.power_basis == "estimated"
    # generic entries carry a per-core share: 3.4 W x 4 runtime threads
    generic = compare_pair(edge_int8(hardware_key="generic-x86_64"), dc_float(), "network", HW,
                           CostSettings())
    assert generic.edge_metrics.power_basis == "per-core-share"
    assert generic.edge_metrics.avg_power_w == pytest.approx(13.6)


def test_cost_per_million_for_both_sides_and_the_cloud() -> None:
    row, _, _ = hand_pair()
    # edge: (55 / 94,672,800 + 5 x 0.15 / 3.6e6) x 1e6 / 500       = 0.0015785632
    # base: (2000 / 157,788,000 + 70 x 0.15 / 3.6e6) x 1e6 / 4000  = 0.0038979754
    # cloud: 0.526 / 3600 x 1e6 / 4000                              = 0.0365277778
    assert row.cost_per_million_usd.edge == pytest.approx(0.0015785632, rel=1e-7)
    assert row.cost_per_million_usd.baseline == pytest.approx(0.0038979754, rel=1e-7)
    assert row.cost_per_million_usd.baseline_cloud == pytest.approx(0.0365277778, rel=1e-7)


def test_lifetime_override_applies_to_every_device() -> None:
    edge, base = edge_int8(avg_power_w=5.0), dc_float()
    row = compare_pair(edge, base, "network", HW, CostSettings(lifetime_years=1.0))
    # edge: (55 / 31,557,600 + 2.0833333e-7) x 1e6 / 500 = 0.0039024
    assert row.cost_per_million_usd.edge == pytest.approx((55 / 31_557_600 + 5 * 0.15 / 3.6e6) * 2000)


def test_break_even_against_the_baseline_cloud_price() -> None:
    row, _, _ = hand_pair()
    # cloud per inference 0.526/3600/4000 = 3.6527778e-8; edge energy 2.0833333e-7/500 = 4.1666667e-10
    # 55 / (3.6527778e-8 - 4.1666667e-10) = 1.5230769e9 inferences; / (500 sps x 86400) = 35.2564 days
    assert row.break_even.inferences == pytest.approx(1.5230769e9, rel=1e-7)
    assert row.break_even.days == pytest.approx(35.2564103, rel=1e-7)


def test_no_break_even_without_a_cloud_price() -> None:
    base = dc_float(hardware_key="lumi-g-node")
    row = compare_pair(edge_int8(), base, "network", HW, CostSettings())
    assert row.break_even.inferences is None and "cloud price" in (row.break_even.reason or "")
    assert row.cost_per_million_usd.baseline is None
    assert "no price" in (row.baseline_metrics.cost_reason or "")


def test_cost_fields_are_null_with_a_reason_without_hardware() -> None:
    row = compare_pair(edge_int8(hardware_key=None), dc_float(hardware_key="not-a-key"), "network",
                       HW, CostSettings())
    assert row.cost_per_million_usd.edge is None and row.cost_per_million_usd.baseline is None
    assert "no hardware key" in (row.edge_metrics.cost_reason or "")
    assert "not-a-key" in (row.baseline_metrics.cost_reason or "")
    assert row.break_even.inferences is None


def test_achieved_macs_utilisation_and_arithmetic_intensity() -> None:
    row, _, _ = hand_pair()
    m = row.edge_metrics
    # 7,489,664 MACs x 500 sps = 3.744832e9 MAC/s; ops = 2x = 7.489664e9; Pi 4 int8 peak 0.096e12
    assert m.macs_per_s == pytest.approx(3.744832e9)
    assert m.ops_per_s == pytest.approx(7.489664e9)
    assert m.peak_ops_per_s == pytest.approx(0.096e12)
    assert m.utilisation == pytest.approx(7.489664e9 / 0.096e12)
    # 2 x 7,489,664 / 333,288 weight bytes (model file size) = 44.944 ops per byte
    assert m.arithmetic_intensity == pytest.approx(2 * 7_489_664 / 333_288)
    # the float baseline is measured against the T4's FP32 peak (8.1 TFLOPS)
    assert row.baseline_metrics.peak_ops_per_s == pytest.approx(8.1e12)


def test_cited_baseline_row_uses_cited_figures_and_borrows_macs() -> None:
    row_in = CitedBaseline(network="vww_96", hardware="an accelerator", hardware_key="coral-usb-accelerator",
                           scenario="single-stream", precision="int8", throughput_sps=1000.0,
                           latency_p50_ms=1.0, joules_per_inference=0.002, source="vendor table 1")
    row = compare_pair(edge_int8(p50_ms=2.0, throughput_sps=500.0), row_in, "network", HW, CostSettings())
    assert row.baseline.kind == "cited" and row.baseline.source == "vendor table 1"
    assert row.ratios.latency_p50 == pytest.approx(2.0)
    assert row.baseline_metrics.avg_power_w == pytest.approx(2.0)    # 0.002 J x 1000 sps
    assert row.baseline_metrics.power_basis == "cited"
    assert row.baseline_metrics.macs == 7_489_664                   # borrowed from the edge run
    assert row.fidelity.pairs == 0 and row.fidelity.reason


def test_compare_gives_each_row_what_compare_pair_gives_it_alone() -> None:
    """compare() works each side out once per call; every row must still be the pair's own
    (a cited row without MACs borrows each edge run's, which differ here)."""
    cited = CitedBaseline(network="vww_96", hardware="an accelerator", scenario="single-stream",
                          throughput_sps=1000.0, latency_p50_ms=1.0, source="vendor table 1")
    edges = [edge_int8(device_id="pi-01", p50_ms=2.0),
             edge_int8(device_id="pi-02", p50_ms=3.0, macs=7_400_000,
                       hardware_key="raspberry-pi-5")]
    bases = [dc_float(), dc_float(device_id="dc-02", hardware_key="nvidia-a100"), cited]
    rows = compare(edges, bases, HW, CostSettings())
    alone = [compare_pair(edge, base, row.match, HW, CostSettings())
             for edge in edges for base, row in zip(bases, rows[:3], strict=True)]
    assert [r.model_dump() for r in rows] == [r.model_dump() for r in alone]
    assert {r.baseline_metrics.macs for r in rows if r.baseline.kind == "cited"} == {
        7_489_664, 7_400_000}


def test_ratio_is_null_when_a_side_is_missing() -> None:
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    assert ratio(3.0, 2.0) == 1.5


def test_fidelity_metrics_by_hand() -> None:
    edge = fidelity([fingerprint(1, [0.2, 0.8]), fingerprint(0, [0.6, 0.4])])
    base = fidelity([fingerprint(1, [0.1, 0.9]), fingerprint(1, [0.3, 0.7])])
    got = fidelity_agreement(edge, base)
    assert got.pairs == 2
    assert got.top1_agreement == pytest.approx(0.5)      # 1 == 1, 0 != 1
    assert got.mae == pytest.approx(0.2)                 # (0.1 + 0.1 + 0.3 + 0.3) / 4
    # cos1 = 0.74 / (sqrt(0.68) sqrt(0.82)) = 0.990992; cos2 = 0.46 / (sqrt(0.52) sqrt(0.58)) = 0.837611
    assert got.cosine == pytest.approx((0.9909924 + 0.8376106) / 2, rel=1e-6)


def test_fidelity_uses_sketch_for_cosine_when_values_are_missing() -> None:
    edge = fidelity([fingerprint(3, sketch=[1.0, 0.0, 1.0])])
    base = fidelity([fingerprint(3, sketch=[1.0, 0.0, 0.0])])
    got = fidelity_agreement(edge, base)
    assert got.top1_agreement == 1.0
    assert got.mae is None                               # MAE only from values
    assert got.cosine == pytest.approx(1 / 2**0.5)


@pytest.mark.parametrize(("base_kwargs", "reason"), [
    ({"seed": 7}, "seed"), ({"source": "my-images"}, "inputs"), ({"name": "logits"}, "output names"),
])
def test_fidelity_needs_same_seed_inputs_and_output_names(base_kwargs: dict, reason: str) -> None:
    edge = fidelity([fingerprint(1, [0.2, 0.8])])
    base = fidelity([fingerprint(1, [0.2, 0.8])], **base_kwargs)
    got = fidelity_agreement(edge, base)
    assert got.pairs == 0 and got.top1_agreement is None and reason in (got.reason or "")


def test_measured_rows_carry_fidelity_from_both_runs() -> None:
    prints = [fingerprint(1, [0.2, 0.8])]
    rows = compare([edge_int8(fidelity=fidelity(prints))], [dc_float(fidelity=fidelity(prints))], HW)
    assert len(rows) == 1
    assert rows[0].fidelity.top1_agreement == 1.0 and rows[0].fidelity.mae == 0.0


def test_rows_serialise_to_json_and_validate_back() -> None:
    row, _, base = hand_pair()
    doc = json.loads(json.dumps(row.model_dump(mode="json")))
    assert {"edge_run_id", "baseline", "match", "scenario", "ratios", "cost_per_million_usd",
            "fidelity"} <= set(doc)
    assert set(doc["ratios"]) >= {"latency_p50", "throughput", "joules_per_inference"}
    assert set(doc["cost_per_million_usd"]) >= {"edge", "baseline"}
    assert doc["baseline"]["kind"] == "measured" and doc["baseline"]["run_id"] == str(base.run_id)
    assert ComparisonRow.model_validate(doc) == row


def test_a_slice_of_a_catalogue_server_is_charged_its_share_of_price_cloud_rate_and_tdp() -> None:
    # xeon-8380-2s: 160 logical cores. A run on a 2-core VM with 2 threads uses 2 / 160 of it.
    entry = HW["xeon-8380-2s"]
    assert entry.cores == 160 and entry.price_usd and entry.tdp_w
    spec = RunSpecPair(requested=RunSpec(), effective=RunSpec(threads=2))
    base = dc_float(hardware_key="xeon-8380-2s", throughput_sps=1000.0, spec=spec,
                    device=DeviceManifest(hostname="vm", hardware_key="xeon-8380-2s", cpu_cores=2))
    row = compare_pair(edge_int8(), base, "network", HW, CostSettings())
    m = row.baseline_metrics
    share = 2 / 160
    assert m.hardware_share == pytest.approx(share)
    assert m.avg_power_w == pytest.approx(entry.tdp_w * share)
    owned = (entry.price_usd * share / (entry.lifetime_years * 365.25 * 86400)
             + entry.tdp_w * share * 0.15 / 3.6e6) * 1e6 / 1000.0
    assert row.cost_per_million_usd.baseline == pytest.approx(owned, rel=1e-9)
    if entry.cloud_usd_per_hour is not None:
        assert row.cost_per_million_usd.baseline_cloud == pytest.approx(
            entry.cloud_usd_per_hour * share / 3600 * 1e6 / 1000.0, rel=1e-9)
    assert m.share_note is not None and "2 of xeon-8380-2s's 160 cores" in m.share_note
    from collector.compare.report import format_table

    assert "2 of xeon-8380-2s's 160 cores used" in format_table([row])


def test_the_whole_catalogue_machine_is_charged_when_the_host_is_that_machine() -> None:
    spec = RunSpecPair(requested=RunSpec(), effective=RunSpec(threads=2))
    base = dc_float(hardware_key="xeon-8380-2s", spec=spec,
                    device=DeviceManifest(hostname="big", hardware_key="xeon-8380-2s",
                                          cpu_cores=160))
    row = compare_pair(edge_int8(), base, "network", HW, CostSettings())
    assert row.baseline_metrics.hardware_share is None and row.baseline_metrics.share_note is None
