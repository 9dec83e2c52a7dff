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
