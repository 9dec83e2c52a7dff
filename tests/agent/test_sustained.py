"""Sustained vs burst on a simulated board: it heats, throttles at 70 C and slows down, then
settles; a board without sensors settles on throughput alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.sustained import (
    SustainedSettings,
    ThermalReading,
    TraceSample,
    run_sustained,
    settled,
)
from edgemeter.cli import main


class Board:
    """A fake clock and thermal model: each call takes 10 ms cool and 20 ms once throttled; the
    temperature rises 1 C a second from 40 C to 75 C, throttled from 70 C."""

    def __init__(self, sensors: bool = True, says_throttled: bool = True) -> None:
        self.now_s = 0.0
        self.sensors = sensors
        self.says_throttled = says_throttled

    def temperature(self) -> float:
        return min(40.0 + self.now_s, 75.0)

    def call(self) -> None:
        self.now_s += 0.02 if self.temperature() >= 70 else 0.01

    def clock(self) -> float:
        return self.now_s

    def latest(self) -> ThermalReading:
        temperature = self.temperature()
        return ThermalReading(temperature if self.sensors else None,
                              (temperature >= 70) if self.says_throttled else None,
                              ("soc",) if self.sensors else ())


def test_a_heating_board_reports_burst_sustained_and_first_throttle() -> None:
    board = Board()
    report = run_sustained(board.call, thermal=board, clock=board.clock,
                           settings=SustainedSettings(settle_s=20, cap_s=300))
    assert report.stopped == "settled"
    assert report.burst_sps == pytest.approx(100, rel=0.02)
    assert report.sustained_sps == pytest.approx(50, rel=0.02)
    assert report.sustained_over_burst == pytest.approx(0.5, rel=0.05)
    assert report.time_to_first_throttle_s == pytest.approx(30, abs=1.5)
    assert report.end_temperature_c == 75.0 and report.sensors == ["soc"]
    assert 45 <= report.duration_s <= 70  # heats until 35 s, then about 20 s steady
    assert [round(s.t_s) for s in report.trace[:3]] == [1, 2, 3]


def test_a_board_without_sensors_settles_on_throughput_and_says_so() -> None:
    board = Board(sensors=False, says_throttled=False)
    report = run_sustained(board.call, thermal=board, clock=board.clock,
                           settings=SustainedSettings(settle_s=10, cap_s=300))
    assert report.stopped == "settled" and report.sensors == []
    assert report.throttle_known is False and report.time_to_first_throttle_s is None
    assert "no sensors" in report.summary() and "does not say" in report.summary()


def test_the_cap_ends_a_board_that_never_settles() -> None:
    board = Board()
    report = run_sustained(board.call, thermal=board, clock=board.clock,
                           settings=SustainedSettings(burst_s=5, settle_s=20, cap_s=30))
    assert report.stopped == "cap" and report.duration_s == pytest.approx(30, abs=1.1)


def test_a_cancel_stops_it() -> None:
    board = Board()
    cancel = threading.Event()
    cancel.set()
    report = run_sustained(board.call, thermal=board, clock=board.clock, cancel=cancel)
    assert report.stopped == "cancelled" and len(report.trace) == 1


def test_settling_needs_both_halves_of_the_span_to_agree() -> None:
    settings = SustainedSettings(burst_s=1, settle_s=4)
    steady = [TraceSample(t, 100.0, 50.0, False) for t in range(1, 7)]
    assert settled(steady, settings)
    warming = [TraceSample(t, 100.0, 40.0 + t, False) for t in range(1, 7)]
    assert not settled(warming, settings)
    slowing = [TraceSample(t, 100.0 - 5 * t, 50.0, False) for t in range(1, 7)]
    assert not settled(slowing, settings)


@pytest.mark.slow  # a real model or a live server for seconds: make test, not test-fast
def test_the_command_runs_a_real_model_and_prints_json(shared_models: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code = main(["sustained", str(shared_models / "ic_resnet8_int8.tflite"), "--burst-s", "1",
                 "--settle-s", "2", "--cap-s", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["burst_sps"] > 0 and report["stopped"] in ("settled", "cap")
    assert report["trace"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="cap_s"):
        SustainedSettings(settle_s=60, cap_s=30)


class TrackedBoard(Board):
    """The board as the runner's tracker sees it: a thermal source with a timestamped history
    (one reading per simulated second) on the same fake clock as the timed phase."""

    def start(self) -> TrackedBoard:
        return self

    def history(self) -> list[tuple[float, ThermalReading]]:
        saved = self.now_s
        readings = []
        for t in range(int(saved) + 1):
            self.now_s = float(t)
            readings.append((float(t), self.latest()))
        self.now_s = saved
        return readings

    def close(self) -> None:
        pass


def test_the_runner_s_tracker_stops_a_heating_board_once_it_settles(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import scenarios
    from agent.config import load_settings
    from agent.runner import stop_rule, sustained_settings
    from agent.sustained import SustainedTracker
    from shared.mlperf_rules import load_rules

    board = TrackedBoard()
    monkeypatch.setattr(scenarios, "clock", lambda: int(board.now_s * 1e9))
    settings = load_settings({"profile": "sustained", "power": "none"})
    plan = sustained_settings(settings, load_rules())
    assert (plan.burst_s, plan.settle_s, plan.cap_s) == (10.0, 60.0, 840.0)
    tracker = SustainedTracker(plan, thermal=board, clock=board.clock)
    tracker.start()
    timed = scenarios.single_stream(board.call, stop_rule(settings, load_rules(), tracker))
    report = tracker.finish(timed.starts_ns, 1, timed.wall_ns, timed.samples)
    # slowed from 30 s, at 75 C from 35 s: steady over a 60 s span by about 90 s
    assert report.stopped == "settled" and 85 <= report.duration_s <= 100
    assert report.burst_sps == pytest.approx(100, rel=0.02)
    assert report.sustained_sps == pytest.approx(50, rel=0.02)
    assert report.time_to_first_throttle_s == pytest.approx(30, abs=1.5)
    assert report.sensors == ["soc"] and report.trace[0].temperature_c == pytest.approx(41)


def test_a_board_that_never_settles_stops_at_the_sustained_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import scenarios
    from agent.config import load_settings
    from agent.runner import stop_rule, sustained_settings
    from agent.sustained import SustainedTracker
    from shared.mlperf_rules import load_rules

    board = TrackedBoard()
    board.temperature = lambda: 40.0 + board.now_s  # type: ignore[method-assign]  # never levels
    monkeypatch.setattr(scenarios, "clock", lambda: int(board.now_s * 1e9))
    settings = load_settings({"profile": "sustained", "duration_s": 80, "power": "none"})
    tracker = SustainedTracker(sustained_settings(settings, load_rules()), thermal=board,
                               clock=board.clock)
    tracker.start()
    timed = scenarios.single_stream(board.call, stop_rule(settings, load_rules(), tracker))
    report = tracker.finish(timed.starts_ns, 1, timed.wall_ns, timed.samples)
    assert report.stopped == "cap" and report.duration_s == pytest.approx(80, abs=0.1)


@pytest.mark.parametrize(("given", "error"), [
    ({"iterations": 100}, "drop --iterations"),
    ({"scenario": "server", "target_qps": 10}, "single-stream, multi-stream or offline"),
    ({"duration_s": 30}, "at least 70 s"),
])
def test_the_sustained_profile_refuses_what_cannot_settle(given: dict[str, object],
                                                          error: str) -> None:
    from agent.config import load_settings
    from agent.runner import sustained_settings
    from shared.errors import ConfigError
    from shared.mlperf_rules import load_rules

    settings = load_settings({"profile": "sustained", "power": "none", **given})
    with pytest.raises(ConfigError, match=error):
        sustained_settings(settings, load_rules())


def test_sustained_is_a_job_setting() -> None:
    from shared.run_settings import RunSettings

    assert RunSettings.model_validate({"profile": "sustained"}).job_fields() == {
        "profile": "sustained"}


@pytest.mark.slow  # a real model or a live server for seconds: make test, not test-fast
def test_a_sustained_bench_result_carries_burst_sustained_and_says_there_is_no_sensor(
        shared_models: Path) -> None:
    from agent.config import load_settings
    from agent.runner import Runner
    from shared.mlperf_rules import ProfileRule, load_rules
    from shared.schema import BenchmarkResult

    rules = load_rules()
    short = ProfileRule(min_duration_s=2.0, min_query_count=1, max_duration_factor=1.5,
                        sources={"min_duration_s": "test", "min_query_count": "test",
                                 "max_duration_factor": "test"})
    rules = rules.model_copy(update={"profile": {**rules.profile, "sustained": short}})
    settings = load_settings({"profile": "sustained", "power": "none", "fidelity": 0,
                              "warmup": 5, "threads": 1})
    result = Runner(settings, shared_models / "kws_dscnn_int8.tflite", rules,
                    thermal_read=lambda: ThermalReading(None, None)).run()
    block = result.sustained
    assert block is not None and block.stopped in ("settled", "cap")
    assert block.burst_s == 1.0 and block.burst_sps and block.sustained_sps
    assert block.temperature_sensors == [] and block.throttle_known is False
    assert 1 <= len(block.trace.t_s) <= 3 and block.trace.temperature_c[0] is None
    assert BenchmarkResult.model_validate_json(result.model_dump_json()).sustained == block
    from agent.commands.bench import render

    assert "no temperature sensor on this board" in render(result)


def test_a_thermal_trace_with_ragged_columns_is_refused() -> None:
    from pydantic import ValidationError

    from shared.schema import ThermalTrace

    with pytest.raises(ValidationError, match="one entry per sample"):
        ThermalTrace(t_s=[1.0, 2.0], throughput_sps=[1.0], temperature_c=[None, None],
                     throttled=[None, None])


def test_a_long_trace_is_thinned_to_a_small_message() -> None:
    from agent.sustained import thin_trace

    trace = [TraceSample(float(t), 10.0 if t < 450 else 20.0, 50.0, t == 700)
             for t in range(1, 901)]
    thin = thin_trace(trace, 300)
    assert len(thin) == 300 and thin[-1].t_s == 900.0
    assert [s.throughput_sps for s in (thin[0], thin[-1])] == [10.0, 20.0]
    assert sum(1 for s in thin if s.throttled) == 1
