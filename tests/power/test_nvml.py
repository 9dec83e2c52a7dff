"""NVML logic against a small stand-in for the pynvml module (no NVIDIA GPU or pynvml here)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from agent.power.clock import ManualClock
from agent.power.nvml import NvmlSettings, NvmlSource
from shared.schema import PowerScope
from tests.power.conftest import context, monitor


class NVMLError(Exception):
    pass


class FakeNvml:
    """The few pynvml calls the source makes: energy in mJ since 'driver load', power in mW."""

    NVMLError = NVMLError

    def __init__(self, clock: ManualClock, watts: list[float], counter: bool = True,
                 init_fails: bool = False):
        self.clock = clock
        self.watts = watts
        self.counter = counter
        self.init_fails = init_fails
        self.t_load = clock.now_s - 100.0
        self.inits = 0

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise NVMLError("Driver Not Loaded")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.watts)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.counter:
            raise NVMLError("Not Supported")
        return int(self.watts[handle] * 1e3 * (self.clock.now_s - self.t_load))

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self.watts[handle] * 1e3)


def run(fake: FakeNvml, clock: ManualClock, settings: NvmlSettings | None = None) -> Any:
    source = NvmlSource(settings, context(clock), nvml_module=fake)
    source.open()
    with monitor(source, clock) as mon:
        mon.begin()
        clock.sleep(0.5)
        report = mon.end(inferences=25)
    assert fake.inits == 0, "nvmlInit without nvmlShutdown"
    return source, report


def test_energy_counter_of_two_gpus(clock: ManualClock) -> None:
    source, report = run(FakeNvml(clock, [150.0, 50.0]), clock)
    assert source.kind == "counter"
    assert report.scope is PowerScope.GPU and report.source == "nvml"
    assert report.avg_power_w == pytest.approx(200.0, rel=1e-3)
    assert {r.name for r in report.rails} == {"gpu0", "gpu1"}
    assert report.peak_window_ms == pytest.approx(100.0)  # the driver's assumed update period


def test_devices_limit_the_gpus_measured(clock: ManualClock) -> None:
    source, report = run(FakeNvml(clock, [150.0, 50.0]), clock, NvmlSettings(devices=[1]))
    assert source.counted_rails == ("gpu1",)
    assert report.avg_power_w == pytest.approx(50.0, rel=1e-3)
    missing = NvmlSource(NvmlSettings(devices=[2]), nvml_module=FakeNvml(clock, [1.0]))
    assert "no GPU 2" in str(missing.probe())


def test_power_gauge_where_the_counter_is_not_supported(clock: ManualClock) -> None:
    source, report = run(FakeNvml(clock, [75.0], counter=False), clock)
    assert source.kind == "gauge"
    assert report.avg_power_w == pytest.approx(75.0)
    assert report.valid, report.reasons


def test_probe_says_why(clock: ManualClock) -> None:
    assert "NVML is not usable" in str(
        NvmlSource(nvml_module=FakeNvml(clock, [1.0], init_fails=True)).probe()
    )
    assert "no GPU" in str(NvmlSource(nvml_module=FakeNvml(clock, [])).probe())


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None, reason="pynvml is installed")
def test_probe_without_pynvml_gives_the_install_hint() -> None:
    why = str(NvmlSource().probe())
    assert "'gpu' extra" in why and "pip install" in why  # the command that works for this copy
