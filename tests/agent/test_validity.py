"""The verdict of a run, judged from measured data before the result is built."""

from __future__ import annotations

import numpy as np

from agent.config import BenchSettings, load_settings
from agent.runner import stability_reasons, validity_reasons
from agent.stats import latency_bound_check, summarize_ms
from shared.mlperf_rules import load_rules
from shared.schema import EnergyReport, PowerScope, Scenario, Stability, SystemState

STEADY = Stability(warmup_iterations=10, warmup_settled=True, throughput_cv=0.02)


def test_unstable_throughput_invalidates_only_runs_long_enough_to_judge() -> None:
    shaky = Stability(warmup_iterations=10, warmup_settled=True, throughput_cv=0.25)
    assert stability_reasons(shaky, wall_ns=6_000_000_000)[0].startswith("unstable: throughput varies 25%")
    assert stability_reasons(shaky, wall_ns=1_000_000_000) == []
    assert stability_reasons(STEADY, wall_ns=60_000_000_000) == []
    unsettled = Stability(warmup_iterations=10, warmup_settled=False)
    assert stability_reasons(unsettled, wall_ns=1) == ["warm-up did not settle within its time limit"]


def test_mlperf_profile_judges_duration_and_queries_by_the_cited_rules() -> None:
    settings = load_settings({"scenario": Scenario.MULTI_STREAM, "profile": "mlperf"})
    summary = summarize_ms(np.full(700, 1e6), (0.99,))
    reasons = validity_reasons(settings, load_rules(), summary, 60_000_000_000, STEADY,
                               SystemState(), None)
    assert reasons == ["too short: 60.0 s < 600 s (mlperf profile)"]
    few = summarize_ms(np.full(300, 1e6), (0.99,))
    reasons = validity_reasons(settings, load_rules(), few, 601_000_000_000, STEADY, SystemState(), None)
    assert "too few queries: 300 < 662 (mlperf profile)" in reasons


def test_invalid_energy_and_low_coverage_carry_their_reasons() -> None:
    settings = load_settings({"profile": "standard"})
    summary = summarize_ms(np.full(200, 1e6), (0.90,))
    energy = EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False,
                          coverage=0.5, valid=False, reasons=["no usable rapl readings"])
    reasons = validity_reasons(settings, load_rules(), summary, 10_000_000_000, STEADY,
                               SystemState(), energy)
    assert reasons == ["power: no usable rapl readings", "power coverage low: 50% < 90%"]


def _server(bound_ms: float | None = 5.0) -> BenchSettings:
    return load_settings({"scenario": Scenario.SERVER, "target_qps": 100, "latency_bound_ms": bound_ms})


def test_server_with_9_of_1000_queries_over_the_bound_fails_loadgen_early_stopping() -> None:
    lat_ns = np.full(1000, 1_000_000)
    lat_ns[-9:] = 6_000_000  # 9 queries over a 5 ms bound
    summary = summarize_ms(lat_ns, (0.99,))
    assert summary.p99 <= 5.0  # the nearest-rank p99 alone would call this run valid
    check = latency_bound_check(lat_ns, 5.0, 0.99)
    assert (check.over_bound, check.passed, check.early_stop_ms) == (9, False, 6.0)
    assert check.queries_needed is not None and check.queries_needed > 1000
    settings = _server()
    reasons = validity_reasons(settings, load_rules(), summary, 10_000_000_000, STEADY,
                               SystemState(), None, check)
    assert reasons == [
        "server: 9 of 1000 queries over the latency bound of 5 ms; LoadGen's early-stopping "
        f"test for p99 fails (it would need at least {check.queries_needed} queries, every "
        "further one under the bound)"
    ]


def test_server_passes_loadgen_early_stopping_without_a_p99_estimate_minimum() -> None:
    # LoadGen: with no query over the bound, 459 queries pass (ceil(log 0.01 / log 0.99));
    # the p99 estimate itself needs 662, which a server run does not need to be valid
    lat_ns = np.full(459, 1_000_000)
    check = latency_bound_check(lat_ns, 5.0, 0.99)
    assert check.passed and check.early_stop_ms is None
    assert not latency_bound_check(lat_ns[:458], 5.0, 0.99).passed
    summary = summarize_ms(lat_ns, (0.99,))
    assert validity_reasons(_server(), load_rules(), summary, 10_000_000_000, STEADY,
                            SystemState(), None, check) == []


def test_one_query_over_needs_662_queries_as_loadgen_computes() -> None:
    lat_ns = np.full(661, 1_000_000)
    lat_ns[-1] = 9_000_000
    check = latency_bound_check(lat_ns, 5.0, 0.99)
    assert (check.passed, check.queries_needed) == (False, 662)
    lat_ns = np.append(lat_ns, 1_000_000)
    assert latency_bound_check(lat_ns, 5.0, 0.99).passed


def test_a_server_run_without_a_bound_is_not_judged_valid() -> None:
    summary = summarize_ms(np.full(1000, 1e6), (0.99,))
    reasons = validity_reasons(_server(None), load_rules(), summary, 10_000_000_000, STEADY,
                               SystemState(), None, None)
    assert reasons == ["a server run is judged against a latency bound: give --latency-bound-ms"]
