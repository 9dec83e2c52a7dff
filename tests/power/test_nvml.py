"""NVML logic against a small stand-in for the pynvml module (no NVIDIA GPU or pynvml here)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

from agent.power import EnergyMonitor
from agent.power.base import SourceConfig
from agent.power.nvml import NvmlSource
from shared.schema import PowerScope


class NVMLError(Exception):
    pass


class FakeNvml:
    """The few pynvml calls the source makes: energy in mJ since 'driver load', power in mW."""

    NVMLError = NVMLError

    def __init__(self, watts: list[float], counter: bool = True, init_fails: bool = False):
        self.watts = watts
        self.counter = counter
        self.init_fails = init_fails
        self.t_load = time.monotonic() - 100.0
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
        return int(self.watts[handle] * 1e3 * (time.monotonic() - self.t_load))

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self.watts[handle] * 1e3)


def run(fake: FakeNvml, tmp_path: Path) -> Any:
    source = NvmlSource(SourceConfig(sysfs_root=tmp_path, nvml_module=fake))
    with EnergyMonitor("nvml", sources={"nvml": source}, idle_s=0) as monitor:
        monitor.begin()
        time.sleep(0.5)
        report = monitor.end(inferences=25)
    assert fake.inits == 0, "nvmlInit without nvmlShutdown"
    return source, report


def test_energy_counter_of_two_gpus(tmp_path: Path) -> None:
    source, report = run(FakeNvml([150.0, 50.0]), tmp_path)
    assert source.kind == "counter"
    assert report.scope is PowerScope.GPU and report.source == "nvml"
    assert report.avg_power_w == pytest.approx(200.0, rel=0.03)
    assert {r.name for r in report.rails} == {"gpu0", "gpu1"}


def test_power_gauge_where_the_counter_is_not_supported(tmp_path: Path) -> None:
    source, report = run(FakeNvml([75.0], counter=False), tmp_path)
    assert source.kind == "gauge"
    assert report.avg_power_w == pytest.approx(75.0, rel=0.01)
    assert report.valid, report.reasons


def test_probe_says_why() -> None:
    assert "NVML is not usable" in str(
        NvmlSource(SourceConfig(nvml_module=FakeNvml([1.0], init_fails=True))).probe()
    )
    assert "no GPU" in str(NvmlSource(SourceConfig(nvml_module=FakeNvml([]))).probe())


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None, reason="pynvml is installed")
def test_probe_without_pynvml_gives_the_install_hint() -> None:
    assert "pip install nvidia-ml-py" in str(NvmlSource(SourceConfig()).probe())
