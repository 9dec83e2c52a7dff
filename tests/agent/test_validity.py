"""The verdict of a run, judged from measured data before the result is built."""

from __future__ import annotations

import numpy as np

from agent.config import BenchSettings, load_settings
from agent.scenarios import StopRule, Timed, server_schedule_ns
from agent.stats import latency_bound_check, summarize_ms
from agent.verdict import judge, judge_stability, validity_reasons, verdict_line
from shared.mlperf_rules import load_rules
from shared.schema import EnergyReport, PowerScope, Scenario, SystemState


def _timed(starts_s: np.ndarray, latency_ns: int = 1_000_000) -> Timed:
    starts_ns = (np.asarray(starts_s) * 1e9).astype(np.int64)
    lat = np.full(len(starts_ns), latency_ns, dtype=np.int64)
    return Timed(lat, starts_ns, len(starts_ns), int(starts_ns[-1]) + latency_ns)


def _shaky() -> Timed:
    """10 s of single-stream queries whose rate halves in the middle: throughput CV about 30 %."""
    return _timed(np.concatenate([np.linspace(0, 4, 4000, endpoint=False),
                                  np.linspace(4, 6, 1000, endpoint=False),
                                  np.linspace(6, 10, 4000)]))


def test_unstable_throughput_is_its_own_verdict_and_a_warning_never_invalid() -> None:
    settings = load_settings({"profile": "standard"})
    timed = _shaky()
    stability = judge_stability(timed, Scenario.SINGLE_STREAM, 10, True)
    assert stability.stable is False and stability.throughput_cv is not None
    assert stability.throughput_cv > 0.10 and stability.cv_limit == 0.10
    summary = summarize_ms(timed.latencies_ns, (0.90,))
    validity = judge(settings, load_rules(), timed, summary, stability, SystemState(), None)
    assert validity.valid and validity.reasons == []
    assert validity.warnings[0].startswith("unstable: throughput varies")
    assert verdict_line(validity, "standard").startswith("VALID for the standard profile")


def test_stability_is_not_judged_on_a_short_run_or_on_server_arrivals() -> None:
    short = _timed(np.concatenate([np.linspace(0, 0.5, 500), np.linspace(0.6, 1, 50)]))
    assert judge_stability(short, Scenario.SINGLE_STREAM, 10, True).stable is None
    assert judge_stability(_shaky(), Scenario.SERVER, 10, True).stable is None
    unsettled = judge_stability(short, Scenario.SINGLE_STREAM, 10, False)
    settings = load_settings({"profile": "quick"})
    validity = judge(settings, load_rules(), short, summarize_ms(short.latencies_ns, (0.9,)),
                     unsettled, SystemState(), None)
    assert validity.valid and validity.warnings == ["warm-up did not settle within its time limit"]


def test_a_64_query_run_is_custom_never_valid_for_the_standard_profile() -> None:
    settings = load_settings({"profile": "standard", "iterations": 64})
    timed = _timed(np.linspace(0, 0.019, 64), latency_ns=300_000)
    summary = summarize_ms(timed.latencies_ns, (0.90, 0.99))
    stability = judge_stability(timed, Scenario.SINGLE_STREAM, 10, True)
    validity = judge(settings, load_rules(), timed, summary, stability, SystemState(), None)
    assert validity.custom == "custom: below the standard profile's 10 s / 100 queries"
    assert validity.profile_minimums_met is False
    line = verdict_line(validity, "standard")
    assert line.startswith("custom: below the standard profile's 10 s / 100 queries")
    assert "VALID for" not in line
    long = _timed(np.linspace(0, 10.5, 200))
    full = judge(load_settings({"profile": "standard"}), load_rules(), long,
                 summarize_ms(long.latencies_ns, (0.9,)),
                 judge_stability(long, Scenario.SINGLE_STREAM, 10, True), SystemState(), None)
    assert full.custom is None and full.profile_minimums_met is True


def test_a_perfect_server_passes_on_its_own_poisson_arrivals_in_at_least_99_of_200_seeds() -> None:
    # The run: kws at 60 queries/s, a 300 ms bound, 10 s. A perfect server answers each
    # query 0.5 ms after it arrives; only the seeded arrivals vary from seed to seed.
    settings = load_settings({"scenario": Scenario.SERVER, "target_qps": 60,
                              "latency_bound_ms": 300, "duration_s": 10})
    rules = load_rules()
    passed = 0
    for seed in range(200):
        arrivals = server_schedule_ns(StopRule(1, 10_000_000_000), 60, seed)
        timed = Timed(np.full(len(arrivals), 500_000, dtype=np.int64), arrivals, len(arrivals),
                      int(arrivals[-1]) + 500_000)
        summary = summarize_ms(timed.latencies_ns, (0.99,))
        stability = judge_stability(timed, Scenario.SERVER, 10, True)
        validity = judge(settings, rules, timed, summary, stability, SystemState(), None)
        passed += validity.valid and not validity.warnings and validity.custom is None
    assert passed >= 198


def test_an_overloaded_server_fails_its_rate_and_its_bound() -> None:
    settings = load_settings({"scenario": Scenario.SERVER, "target_qps": 100,
                              "latency_bound_ms": 50})
    arrivals = server_schedule_ns(StopRule(100, 10_000_000_000), 100, 0)
    service_ns = 20_000_000  # 50 queries/s of capacity against 100/s arriving
    done = np.maximum.accumulate(arrivals) + service_ns * np.arange(1, len(arrivals) + 1)
    timed = Timed(done - arrivals, arrivals, len(arrivals), int(done[-1]))
    summary = summarize_ms(timed.latencies_ns, (0.99,))
    validity = judge(settings, load_rules(), timed, summary,
                     judge_stability(timed, Scenario.SERVER, 10, True), SystemState(), None)
    assert validity.server_qps is not None and not validity.server_qps.passed
    assert validity.server_qps.completed_qps < 0.6 * validity.server_qps.scheduled_qps
    assert any("did not keep up" in r for r in validity.reasons)
    assert any("performance constraint" in r for r in validity.reasons)


def test_mlperf_profile_judges_duration_and_queries_by_the_cited_rules() -> None:
    settings = load_settings({"scenario": Scenario.MULTI_STREAM, "profile": "mlperf"})
    summary = summarize_ms(np.full(700, 1e6), (0.99,))
    reasons = validity_reasons(settings, load_rules(), summary, 60_000_000_000,
                               SystemState(), None)
    assert reasons == ["too short: 60.0 s < 600 s (mlperf profile)"]
    few = summarize_ms(np.full(300, 1e6), (0.99,))
    reasons = validity_reasons(settings, load_rules(), few, 601_000_000_000, SystemState(), None)
    assert "too few queries: 300 < 662 (mlperf profile)" in reasons


def test_invalid_energy_and_low_coverage_carry_their_reasons() -> None:
    settings = load_settings({"profile": "standard"})
    summary = summarize_ms(np.full(200, 1e6), (0.90,))
    energy = EnergyReport(source="rapl", scope=PowerScope.CPU_PACKAGE, estimated=False,
                          coverage=0.5, valid=False, reasons=["no usable rapl readings"])
    reasons = validity_reasons(settings, load_rules(), summary, 10_000_000_000,
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
    reasons = validity_reasons(settings, load_rules(), summary, 10_000_000_000,
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
    assert validity_reasons(_server(), load_rules(), summary, 10_000_000_000,
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
    reasons = validity_reasons(_server(None), load_rules(), summary, 10_000_000_000,
                               SystemState(), None, None)
    assert reasons == ["a server run is judged against a latency bound: give --latency-bound-ms"]
