"""Raspberry Pi 5 PMIC rails from vcgencmd output fed through an injected runner."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from agent.power.clock import ManualClock
from agent.power.rpi5 import CALIBRATED_RAIL, Rpi5Settings, Rpi5Source, parse_pmic_read_adc
from shared.schema import PowerScope
from tests.power.conftest import FIXTURES, context, monitor

OUTPUT = (FIXTURES / "rpi5" / "pmic_read_adc.txt").read_text()
RAILS_W = parse_pmic_read_adc(OUTPUT)
TOTAL_W = sum(RAILS_W.values())


def fake_runner(argv: Sequence[str]) -> str:
    assert list(argv) == ["vcgencmd", "pmic_read_adc"]
    return OUTPUT


def test_parses_v_times_i_per_rail_and_skips_voltage_only_channels() -> None:
    assert "EXT5V" not in RAILS_W and "BATT" not in RAILS_W
    assert len(RAILS_W) == 12
    assert RAILS_W["VDD_CORE"] == pytest.approx(0.72040000 * 0.75636000)
    assert RAILS_W["3V3_SYS"] == pytest.approx(3.30402000 * 0.05660800)
    assert parse_pmic_read_adc("garbage\n") == {}


def test_monitor_reads_the_rail_sum(clock: ManualClock) -> None:
    source = Rpi5Source(context=context(clock), runner=fake_runner)
    source.open()
    with monitor(source, clock, hz=20.0) as mon:
        assert mon.sampler.hz == 5.0  # capped
        mon.begin()
        clock.sleep(0.6)
        report = mon.end(inferences=6)
    assert report is not None and report.scope is PowerScope.SOC_RAILS
    assert report.avg_power_w == pytest.approx(TOTAL_W)
    assert report.sample_hz == 5.0


def test_calibration_turns_rails_into_input_power() -> None:
    source = Rpi5Source(Rpi5Settings(calibration=(1.25, 1.5)), runner=fake_runner)
    assert source.scope is PowerScope.BOARD
    source.open()
    assert source.counted_rails == (CALIBRATED_RAIL,)
    reading = source.read()
    assert reading is not None
    assert reading.values[CALIBRATED_RAIL] == pytest.approx(1.25 * TOTAL_W + 1.5)


def test_a_calibration_that_makes_no_sense_fails_at_start() -> None:
    with pytest.raises(ValidationError, match="scale must be positive"):
        Rpi5Settings(calibration=(0.0, 1.0))
    with pytest.raises(ValidationError, match="finite"):
        Rpi5Settings(calibration=(float("nan"), 1.0))


def test_probe_says_why() -> None:
    def missing(argv: Sequence[str]) -> str:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    def failing(argv: Sequence[str]) -> str:
        raise subprocess.CalledProcessError(255, list(argv))

    assert "failed" in str(Rpi5Source(runner=missing).probe())
    assert "failed" in str(Rpi5Source(runner=failing).probe())
    assert "no rails" in str(Rpi5Source(runner=lambda argv: "").probe())
    default = Rpi5Source().probe()
    assert default is None or "vcgencmd" in default
