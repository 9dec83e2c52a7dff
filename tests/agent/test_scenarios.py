"""Stop rules of the timed phase, driven by a fake clock (no waiting for time to pass)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent import scenarios
from agent.config import load_settings
from agent.runner import report_extension, stop_rule, throughput_settled
from shared.mlperf_rules import load_rules
from shared.schema import Scenario

MS = 1_000_000
S = 1_000_000_000


class FakeClock:
    """``scenarios.clock`` replaced: time moves only when the fake model runs."""

    def __init__(self, call_ns: Callable[[int], int]) -> None:
        self.now_ns = 0
        self.call_ns = call_ns

    def __call__(self) -> int:
        return self.now_ns

    def call(self) -> None:
        self.now_ns += self.call_ns(self.now_ns)


def _run(monkeypatch: pytest.MonkeyPatch, call_ns: Callable[[int], int],
         rule: scenarios.StopRule) -> scenarios.Timed:
    fake = FakeClock(call_ns)
    monkeypatch.setattr(scenarios, "clock", fake)
    return scenarios.single_stream(fake.call, rule)


def test_standard_profile_extends_until_stable_and_no_other_rule_does() -> None:
    rules = load_rules()
    standard = stop_rule(load_settings({}), rules)
    assert standard.settled is throughput_settled
    assert (standard.min_duration_ns, standard.max_duration_ns) == (10 * S, 30 * S)
    for cli in ({"profile": "quick"}, {"profile": "mlperf"}, {"duration_s": 5.0},
                {"iterations": 50}, {"scenario": "server", "target_qps": 10}):
        assert stop_rule(load_settings(cli), rules).settled is None, cli


def test_a_steady_run_stops_at_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = stop_rule(load_settings({}), load_rules())
    timed = _run(monkeypatch, lambda now: 2 * MS, rule)
    assert not timed.extended
    assert timed.wall_ns == 10 * S


def test_a_slow_start_is_extended_until_throughput_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = stop_rule(load_settings({}), load_rules())
    timed = _run(monkeypatch, lambda now: 2 * MS if now < 2 * S else MS, rule)
    assert timed.extended
    assert 10 * S < timed.wall_ns < 30 * S
    assert throughput_settled(timed.starts_ns)


def test_a_run_that_never_settles_stops_at_the_cap_and_stays_unsettled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rule = stop_rule(load_settings({}), load_rules())
    # slows down by half every 4 s: throughput never evens out
    timed = _run(monkeypatch, lambda now: MS * 2 ** (now // (4 * S)), rule)
    assert timed.extended
    assert 30 * S <= timed.wall_ns < 31 * S
    assert not throughput_settled(timed.starts_ns)


def test_server_and_offline_scenarios_keep_their_minimum_query_counts() -> None:
    rules = load_rules()
    server = stop_rule(load_settings({"scenario": Scenario.SERVER, "target_qps": 5,
                                      "profile": "mlperf"}), rules)
    assert (server.min_queries, server.min_duration_ns) == (100, 600 * S)


def test_an_extended_run_says_what_it_did(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({})
    rule = stop_rule(settings, load_rules())
    settled = _run(monkeypatch, lambda now: 2 * MS if now < 2 * S else MS, rule)
    unsettled = _run(monkeypatch, lambda now: MS * 2 ** (now // (4 * S)), rule)
    steady = _run(monkeypatch, lambda now: 2 * MS, rule)
    with caplog.at_level("WARNING", logger="agent.runner"):
        for timed in (settled, unsettled, steady):
            report_extension(settings, rule, timed)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("standard profile: throughput had not settled after 10 s; "
                                  "the run went on to ")
    assert messages[1].startswith("standard profile: throughput still unsettled at the 30 s cap")
