"""The labelled estimate: the acceptance on this sensorless machine, and the model's arithmetic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.power import EnergyMonitor, probe_all
from agent.power.base import SourceConfig
from agent.power.estimate import EstimateSource, utilisation_curve
from shared.catalogue import HardwareEntry
from shared.schema import PowerScope


def busy(seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
    return n


def test_auto_on_this_machine_resolves_to_the_estimate() -> None:
    usable = [n for n, why in probe_all(Path("/")).items()
              if why is None and n not in ("estimate",)]
    if usable:
        pytest.skip(f"this machine has a real power source: {usable}")
    with EnergyMonitor("auto", idle_s=0.2, cores_used=1) as monitor:
        assert monitor.source_name == "estimate"
        source = monitor.source
        assert isinstance(source, EstimateSource)
        monitor.measure_idle()
        monitor.begin()
        busy(0.4)
        report = monitor.end(inferences=100)
    assert report is not None
    assert report.source == "estimate" and report.estimated is True
    assert report.scope is PowerScope.ESTIMATE
    assert report.joules_per_inference is not None and report.joules_per_inference > 0
    assert report.idle_power_w is not None
    # generic-x86_64: 3.4 W per core, one core used, busy all the window: close to the model's
    # TDP (less if the OS gave the loop less than a core)
    assert report.avg_power_w is not None
    assert source.idle_w < report.avg_power_w <= source.tdp_w * 1.05
    print(f"estimate: {report.avg_power_w:.3f} W, {report.joules_per_inference:.5f} J/inference")


def test_curve_is_fan_et_al() -> None:
    assert utilisation_curve(0.0) == 0.0
    assert utilisation_curve(1.0) == pytest.approx(1.0)
    assert utilisation_curve(0.5) == pytest.approx(1.0 - 0.5**1.4)
    assert utilisation_curve(2.0) == pytest.approx(1.0)  # clipped


class FakeCpu:
    """Process CPU seconds that grow at ``share`` x ``cores`` per wall second."""

    def __init__(self, share: float, cores: int) -> None:
        self.rate = share * cores
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self.t0) * self.rate


def entry(**fields: float) -> HardwareEntry:
    return HardwareEntry(key="test-board", name="Test board", tier="edge", **fields)


def measure(source: EstimateSource, seconds: float = 0.3) -> float:
    source.open()
    first = source.read()
    time.sleep(seconds)
    last = source.read()
    assert first is not None and last is not None
    return (last.values["cpu_estimate"] - first.values["cpu_estimate"]) / (last.t_s - first.t_s)


def test_tdp_entry_at_full_and_half_load() -> None:
    cores = os.cpu_count() or 1
    full = EstimateSource(SourceConfig(hardware=entry(tdp_w=10.0, idle_w=2.0)),
                          cpu_seconds=FakeCpu(1.0, cores))
    assert measure(full) == pytest.approx(10.0, rel=0.02)
    half = EstimateSource(SourceConfig(hardware=entry(tdp_w=10.0, idle_w=2.0)),
                          cpu_seconds=FakeCpu(0.5, cores))
    assert measure(half) == pytest.approx(2.0 + 8.0 * utilisation_curve(0.5), rel=0.02)


def test_generic_entry_scales_with_cores_used() -> None:
    source = EstimateSource(SourceConfig(hardware=entry(per_core_w=3.0, idle_w=1.0), cores_used=2),
                            cpu_seconds=FakeCpu(1.0, 2))
    assert measure(source) == pytest.approx(6.0, rel=0.02)


def test_probe_without_model_says_why() -> None:
    assert "no hardware catalogue entry" in str(EstimateSource(SourceConfig()).probe())
    assert "neither tdp_w nor per_core_w" in str(
        EstimateSource(SourceConfig(hardware=entry(idle_w=1.0))).probe()
    )
