"""The verdict of a run, judged from measured data before the result is built."""

from __future__ import annotations

import numpy as np

from agent.config import load_settings
from agent.runner import stability_reasons, validity_reasons
from agent.stats import summarize_ms
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
