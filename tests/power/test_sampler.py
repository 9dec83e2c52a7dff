"""Window arithmetic (wrap-aware deltas, trapezoids, coverage, trace) and the monitor's verdicts."""

from __future__ import annotations

import time

import pytest

from agent.errors import PowerSourceError
from agent.power import EnergyMonitor
from agent.power.base import Reading
from agent.power.sampler import coverage, summarize
from shared.errors import ConfigError
from tests.power.conftest import FakeGauge


def counter(t: float, joules: float) -> Reading:
    return Reading(t_s=t, energy_j={"pkg": joules})


def gauge(t: float, watts: float) -> Reading:
    return Reading(t_s=t, power_w={"main": watts})


def test_counter_deltas_survive_wraps() -> None:
    # 10 W, wrapping at 4 J: raw values go 0, 1, 2, 3, 0, 1, ... every 0.1 s
    readings = [counter(i * 0.1, (i * 1.0) % 4.0) for i in range(21)]
    stats = summarize("counter", readings, 0.0, 2.0, ["pkg"], {"pkg": 4.0}, hz=10)
    assert stats.energy_j == pytest.approx(20.0)
    assert stats.avg_power_w == pytest.approx(10.0)
    assert stats.peak_power_w == pytest.approx(10.0)


def test_counter_edges_are_interpolated_and_reset_adds_nothing() -> None:
    readings = [counter(0.0, 0.0), counter(1.0, 10.0), counter(2.0, 20.0)]
    stats = summarize("counter", readings, 0.5, 1.5, ["pkg"], hz=1)
    assert stats.energy_j == pytest.approx(10.0)
    reset = [counter(0.0, 5.0), counter(1.0, 1.0)]  # dropped with no known range
    assert summarize("counter", reset, 0.0, 1.0, ["pkg"], hz=1).energy_j == 0.0


def test_gauge_trapezoid_on_a_ramp_is_exact() -> None:
    # power rises linearly 0 -> 10 W over 1 s: 5 J; window 0.25..0.75 -> 2.5 J
    readings = [gauge(i / 10, i * 1.0) for i in range(11)]
    assert summarize("gauge", readings, 0.0, 1.0, ["main"], hz=10).energy_j == pytest.approx(5.0)
    mid = summarize("gauge", readings, 0.25, 0.75, ["main"], hz=10)
    assert mid.energy_j == pytest.approx(2.5)
    assert mid.peak_power_w == pytest.approx(7.0)  # the largest sample inside the window


def test_gauge_holds_the_nearest_value_beyond_the_samples() -> None:
    stats = summarize("gauge", [gauge(1.0, 4.0)], 0.0, 2.0, ["main"], hz=1)
    assert stats.energy_j == pytest.approx(8.0)


def test_coverage_counts_gaps() -> None:
    assert coverage([0.0, 0.1, 0.2, 1.0, 1.1], 0.0, 1.1, max_gap_s=0.3) == pytest.approx(
        0.3 / 1.1)
    assert coverage([-0.05, 0.05, 0.15], 0.0, 0.1, max_gap_s=0.3) == pytest.approx(1.0)
    assert coverage([], 0.0, 1.0, 0.3) == 0.0


def test_trace_is_downsampled_to_200_points() -> None:
    readings = [gauge(i / 1000, 5.0) for i in range(5001)]
    stats = summarize("gauge", readings, 0.0, 5.0, ["main"], hz=1000)
    assert len(stats.trace_t_s) == 200
    assert stats.trace_power_w == pytest.approx([5.0] * 200)
    assert stats.trace_t_s[0] == pytest.approx(0.0125)


def test_rails_outside_the_total_are_reported_not_added() -> None:
    readings = [Reading(t_s=t, power_w={"in": 6.0, "soc": 2.0}) for t in (0.0, 0.5, 1.0)]
    stats = summarize("gauge", readings, 0.0, 1.0, ["in"], hz=2)
    assert stats.energy_j == pytest.approx(6.0)
    assert stats.rails["soc"] == pytest.approx((2.0, 2.0))


def test_window_shorter_than_the_update_period_is_invalid_not_zero() -> None:
    with EnergyMonitor("fake", sources={"fake": FakeGauge(7.0, update_period_s=1.0)},
                       idle_s=0) as monitor:
        monitor.begin()
        time.sleep(0.05)
        report = monitor.end(inferences=3)
    assert report is not None
    assert report.valid is False
    assert any("shorter than the fake update period 1 s" in r for r in report.reasons)
    assert report.avg_power_w == pytest.approx(7.0)  # held value, flagged, never 0


def test_a_source_with_nothing_to_say_gives_none_and_a_reason() -> None:
    fake = FakeGauge()
    with EnergyMonitor("fake", sources={"fake": fake}, idle_s=0) as monitor:
        fake.fail = True
        monitor.begin()
        time.sleep(0.1)
        report = monitor.end(inferences=0)
    assert report is not None and report.valid is False
    assert report.energy_j is None and report.joules_per_inference is None
    assert report.inferences_per_joule is None and report.avg_power_w is None
    assert any("no usable fake readings" in r for r in report.reasons)
    assert any("no inferences" in r for r in report.reasons)


def test_rate_is_capped_and_begin_end_are_cheap() -> None:
    with EnergyMonitor("fake", sources={"fake": FakeGauge(max_hz=10.0)}, hz=20.0,
                       idle_s=0) as monitor:
        assert monitor.sampler is not None and monitor.sampler.hz == 10.0
        monitor.begin()  # starts the thread
        monitor.end(1)
        t = time.perf_counter()
        monitor.begin()
        begin_s = time.perf_counter() - t
        time.sleep(0.35)
        report = monitor.end(inferences=1)
    assert begin_s < 0.01
    assert report is not None and report.sample_hz == 10.0
    assert 3 <= report.samples <= 6


def test_none_disables_and_lifecycle_is_safe() -> None:
    monitor = EnergyMonitor("none")
    assert monitor.source_name is None
    monitor.measure_idle()
    monitor.begin()
    assert monitor.end(5) is None
    monitor.close()
    monitor.close()
    with EnergyMonitor("fake", sources={"fake": FakeGauge()}, idle_s=0) as live, \
            pytest.raises(RuntimeError, match="without begin"):
        live.end(1)


def test_bad_settings_and_names() -> None:
    with pytest.raises(ConfigError):
        EnergyMonitor("none", hz=0)
    with pytest.raises(ConfigError):
        EnergyMonitor("none", idle_s=-1)
    with pytest.raises(PowerSourceError, match="unknown power source"):
        EnergyMonitor("kill-a-watt")
