"""Window arithmetic (wrap-aware deltas, trapezoids, coverage, trace, peaks) and the monitor's
verdicts, with time driven by a manual clock."""

from __future__ import annotations

import itertools
import threading

import pytest

from agent.power.base import Reading
from agent.power.clock import ManualClock, ThreadTicker
from agent.power.monitor import EnergyMonitor
from agent.power.sampler import coverage, summarize
from shared.errors import ConfigError
from tests.power.conftest import FakeGauge, monitor


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
    assert stats.peak_window_s == pytest.approx(0.1)


def test_counter_edges_are_interpolated_and_reset_adds_nothing() -> None:
    readings = [counter(0.0, 0.0), counter(1.0, 10.0), counter(2.0, 20.0)]
    stats = summarize("counter", readings, 0.5, 1.5, ["pkg"], hz=1)
    assert stats.energy_j == pytest.approx(10.0)
    reset = [counter(0.0, 5.0), counter(1.0, 1.0)]  # dropped with no known range
    assert summarize("counter", reset, 0.0, 1.0, ["pkg"], hz=1).energy_j == 0.0


def test_a_late_counter_update_is_not_taken_for_a_peak() -> None:
    """20 W read every 50 ms; the reading at 1.0 s lags the truth by 40 ms of energy (0.8 J)."""
    readings = [counter(i * 0.05, 20.0 * i * 0.05) for i in range(41)]
    readings[20] = counter(1.0, 20.0 * 0.96)
    stats = summarize("counter", readings, 0.0, 2.0, ["pkg"], hz=20, peak_window=0.1)
    naive = max((b.values["pkg"] - a.values["pkg"]) / 0.05 for a, b in itertools.pairwise(readings))
    assert naive == pytest.approx(36.0)  # what a per-interval peak would have said
    assert stats.peak_power_w == pytest.approx(20.0)
    assert stats.energy_j == pytest.approx(40.0)


def test_a_real_peak_longer_than_the_window_is_kept() -> None:
    # 10 W, then 30 W from 1.0 s to 1.3 s, then 10 W again; read every 50 ms
    def energy(t: float) -> float:
        return 10.0 * t + 20.0 * min(max(t - 1.0, 0.0), 0.3)

    readings = [counter(i * 0.05, energy(i * 0.05)) for i in range(41)]
    stats = summarize("counter", readings, 0.0, 2.0, ["pkg"], hz=20, peak_window=0.1)
    assert stats.peak_power_w == pytest.approx(30.0)
    assert stats.avg_power_w == pytest.approx(13.0)


def test_a_window_shorter_than_the_peak_window_has_no_peak() -> None:
    readings = [counter(0.0, 0.0), counter(0.03, 0.3), counter(0.06, 0.6)]
    stats = summarize("counter", readings, 0.0, 0.06, ["pkg"], hz=20, peak_window=0.1)
    assert stats.avg_power_w == pytest.approx(10.0)
    assert stats.peak_power_w is None


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


def test_window_shorter_than_the_update_period_is_invalid_not_zero(clock: ManualClock) -> None:
    with monitor(FakeGauge(clock, 7.0, update_period_s=1.0), clock) as mon:
        mon.begin()
        clock.sleep(0.05)
        report = mon.end(inferences=3)
    assert report is not None
    assert report.valid is False
    assert any("shorter than the fake update period 1 s" in r for r in report.reasons)
    assert report.avg_power_w == pytest.approx(7.0)  # held value, flagged, never 0
    assert report.peak_window_ms == pytest.approx(1000.0)  # a gauge sample spans its period


def test_a_source_with_nothing_to_say_gives_none_and_a_reason(clock: ManualClock) -> None:
    fake = FakeGauge(clock)
    with monitor(fake, clock) as mon:
        fake.fail = True
        mon.begin()
        clock.sleep(0.1)
        report = mon.end(inferences=0)
    assert report is not None and report.valid is False
    assert report.energy_j is None and report.joules_per_inference is None
    assert report.inferences_per_joule is None and report.avg_power_w is None
    assert any("no usable fake readings" in r for r in report.reasons)
    assert any("no inferences" in r for r in report.reasons)


def test_rate_is_capped_and_a_gauge_window_edge_reads_nothing(clock: ManualClock) -> None:
    fake = FakeGauge(clock, max_hz=10.0)
    with monitor(fake, clock, hz=20.0) as mon:
        assert mon.sampler.hz == 10.0
        mon.begin()  # the first reading, then the ticker
        mon.end(1)
        clock.sleep(0.05)
        reads = fake.reads
        mon.begin()
        assert fake.reads == reads, "begin() on a gauge only takes a timestamp"
        clock.sleep(0.35)
        report = mon.end(inferences=1)
    assert report is not None and report.sample_hz == 10.0
    # window [0.05, 0.40] after the start: ticks at 0.1, 0.2, 0.3 and 0.4 s, and the reading
    # end() takes to bracket the right edge
    assert report.samples == 5


def test_idle_baseline_lets_idle_s_pass_on_the_clock(clock: ManualClock) -> None:
    start = clock.now_s
    with monitor(FakeGauge(clock, 4.0), clock, idle_s=3.0) as mon:
        mon.measure_idle()
        assert clock.now_s - start == pytest.approx(3.0)
        mon.begin()
        clock.sleep(1.0)
        report = mon.end(inferences=10)
    assert report is not None and report.idle_power_w == pytest.approx(4.0)
    assert report.dynamic_joules_per_inference == pytest.approx(0.0, abs=1e-9)


def test_lifecycle_is_safe() -> None:
    clock = ManualClock()
    with monitor(FakeGauge(clock), clock) as live, pytest.raises(RuntimeError, match="without begin"):
        live.end(1)
    live.close()
    with pytest.raises(RuntimeError, match="closed"):
        live.begin()


def test_bad_rates() -> None:
    clock = ManualClock()
    with pytest.raises(ConfigError, match="hz"):
        EnergyMonitor(FakeGauge(clock), hz=0)
    with pytest.raises(ConfigError, match="idle_s"):
        EnergyMonitor(FakeGauge(clock), idle_s=-1)


def test_the_thread_ticker_waits_with_what_it_is_given() -> None:
    """The real ticker's thread, with its wait replaced: it ticks when the wait returns."""
    ticks = threading.Semaphore(0)
    waits: list[float] = []
    gate = threading.Event()

    def wait(seconds: float) -> None:
        waits.append(seconds)
        gate.wait(5.0)

    ticker = ThreadTicker(clock_ns=lambda: 0, wait=wait)
    ticker.start(0.05, ticks.release)
    gate.set()
    assert ticks.acquire(timeout=5.0)
    ticker.stop()
    assert not ticker.running
    assert waits and waits[0] == pytest.approx(0.05)


def test_the_manual_clock_fires_ticks_in_order_at_their_due_times() -> None:
    clock = ManualClock(start_s=0.0)
    seen: list[tuple[str, float]] = []
    a, b = clock.ticker(), clock.ticker()
    a.start(0.3, lambda: seen.append(("a", clock.now_s)))
    b.start(0.2, lambda: seen.append(("b", clock.now_s)))
    clock.sleep(0.65)
    assert seen == [("b", 0.2), ("a", 0.3), ("b", 0.4), ("a", 0.6), ("b", 0.6)]
    assert clock.now_s == pytest.approx(0.65)
    a.stop()
    clock.sleep(0.2)
    assert [name for name, _ in seen[5:]] == ["b"]
