"""The labelled estimate: the acceptance on this sensorless machine, the model's arithmetic on a
manual clock, and catalogue entries that do not fit the machine (scaled or refused)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.config import load_settings
from agent.errors import PowerSourceError
from agent.power import EnergyMonitor, open_energy_monitor, probe_all
from agent.power.base import SourceContext
from agent.power.clock import ManualClock
from agent.power.estimate import EstimateSettings, EstimateSource, utilisation_curve
from agent.power.monitor import NullEnergyMonitor, open_source
from agent.power.settings import PowerSettings
from shared.catalogue import HardwareEntry, load_catalogue
from shared.schema import PowerScope
from tests.power.conftest import context, monitor


def busy(seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
    return n


def test_auto_on_this_machine_resolves_to_the_estimate() -> None:
    """The real thing: real clock, real thread, this process's CPU time. No timing asserted."""
    usable = [n for n, why in probe_all().items() if why is None and n != "estimate"]
    if usable:
        pytest.skip(f"this machine has a real power source: {usable}")
    settings = load_settings({"idle_s": 0.2, "hardware": "generic-x86_64"})
    with open_energy_monitor(settings, hardware=None, cores_used=1) as monitor_:
        assert isinstance(monitor_, EnergyMonitor)
        assert monitor_.source_name == "estimate"
        source = monitor_.source
        assert isinstance(source, EstimateSource)
        monitor_.measure_idle()
        monitor_.begin()
        busy(0.4)
        report = monitor_.end(inferences=100)
    assert report is not None
    assert report.source == "estimate" and report.estimated is True
    assert report.scope is PowerScope.ESTIMATE
    assert report.joules_per_inference is not None and report.joules_per_inference > 0
    assert report.idle_power_w is not None
    # busy for the window on (up to) one core: above idle, never above the model's TDP
    assert report.avg_power_w is not None
    assert source.idle_w < report.avg_power_w <= source.tdp_w * 1.05
    assert report.notes and "per core" in report.notes[0]


def test_none_gives_the_null_monitor() -> None:
    settings = load_settings({"power": "none"})
    with open_energy_monitor(settings, hardware=None, cores_used=1) as null:
        assert isinstance(null, NullEnergyMonitor) and null.source_name == "none"
        null.measure_idle()
        null.begin()
        assert null.end(5) is None


def test_curve_is_fan_et_al() -> None:
    assert utilisation_curve(0.0) == 0.0
    assert utilisation_curve(1.0) == pytest.approx(1.0)
    assert utilisation_curve(0.5) == pytest.approx(1.0 - 0.5**1.4)
    assert utilisation_curve(2.0) == pytest.approx(1.0)  # clipped


class FakeCpu:
    """Process CPU seconds that grow at ``share`` x ``cores`` per second of the manual clock."""

    def __init__(self, clock: ManualClock, share: float, cores: int) -> None:
        self.clock = clock
        self.rate = share * cores
        self.t0 = clock.now_s

    def __call__(self) -> float:
        return (self.clock.now_s - self.t0) * self.rate


def entry(**fields: float) -> HardwareEntry:
    return HardwareEntry(key="test-board", name="Test board", tier="edge", **fields)


def estimate(clock: ManualClock, hardware: HardwareEntry, *, share: float, busy_cores: int,
             host_cores: int = 4, cores_used: int | None = None,
             settings: EstimateSettings | None = None) -> EstimateSource:
    return EstimateSource(settings, context(clock, hardware=hardware, cores_used=cores_used),
                          cpu_seconds=FakeCpu(clock, share, busy_cores), host_cores=host_cores)


def average_w(source: EstimateSource, clock: ManualClock, seconds: float = 1.0) -> float:
    source.open()
    with monitor(source, clock) as mon:
        mon.begin()
        clock.sleep(seconds)
        report = mon.end(inferences=10)
    assert report is not None and report.avg_power_w is not None
    return report.avg_power_w


def test_tdp_entry_at_full_and_half_load(clock: ManualClock) -> None:
    board = entry(tdp_w=10.0, idle_w=2.0)
    assert average_w(estimate(clock, board, share=1.0, busy_cores=4), clock) == pytest.approx(10.0)
    half = estimate(clock, board, share=0.5, busy_cores=4)
    assert average_w(half, clock) == pytest.approx(2.0 + 8.0 * utilisation_curve(0.5))


def test_generic_entry_scales_with_cores_used(clock: ManualClock) -> None:
    source = estimate(clock, entry(per_core_w=3.0, idle_w=1.0), share=1.0, busy_cores=2,
                      cores_used=2)
    assert average_w(source, clock) == pytest.approx(6.0)


def test_an_entry_for_a_bigger_machine_is_scaled_to_the_cores_used(clock: ManualClock) -> None:
    """``--hardware xeon-8380-2s`` on a 2-core VM: not the whole 540 W server."""
    xeon = load_catalogue().get("xeon-8380-2s")
    assert xeon.cores == 160 and xeon.tdp_w == 540.0
    source = estimate(clock, xeon, share=1.0, busy_cores=2, host_cores=2, cores_used=2)
    watts = average_w(source, clock)
    assert watts == pytest.approx(540.0 * 2 / 160)
    assert source.notes and "scaled to the 2 cores used" in source.notes[0]
    with monitor(source, clock) as mon:
        mon.begin()
        clock.sleep(0.5)
        report = mon.end(inferences=5)
    assert report is not None and any("xeon-8380-2s describes 160 cores" in n for n in report.notes)


def test_an_entry_that_does_not_fit_can_be_refused(clock: ManualClock) -> None:
    xeon = load_catalogue().get("xeon-8380-2s")
    refuse = EstimateSettings(fit="refuse")
    source = estimate(clock, xeon, share=1.0, busy_cores=2, host_cores=2, settings=refuse)
    why = source.probe()
    assert why is not None and "describes 160 cores but this host has 2" in why
    with pytest.raises(PowerSourceError, match="--hardware"):
        open_source(PowerSettings(source="estimate", estimate={"fit": "refuse"}),
                    SourceContext(hardware=xeon), overrides={"estimate": source})


def test_an_entry_that_fits_is_the_whole_machine(clock: ManualClock) -> None:
    board = entry(tdp_w=8.0, idle_w=4.0, cores=4)
    source = estimate(clock, board, share=1.0, busy_cores=4, host_cores=4, cores_used=1)
    assert average_w(source, clock) == pytest.approx(8.0)
    assert "taken as this whole 4-core machine" in source.notes[0]


def test_probe_without_model_says_why() -> None:
    assert "no hardware catalogue entry" in str(EstimateSource().probe())
    assert "neither tdp_w nor per_core_w" in str(
        EstimateSource(context=SourceContext(hardware=entry(idle_w=1.0))).probe()
    )


def test_estimate_settings_from_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[power]\nsource = "estimate"\n[power.estimate]\ncores = 2\nfit = "refuse"\n')
    settings = load_settings({}, cfg)
    assert settings.power.table("estimate") == EstimateSettings(cores=2, fit="refuse")
