"""NVIDIA GPUs through NVML (``pynvml``, from the ``nvidia-ml-py`` package), imported only here.

Where every GPU supports it (Volta and newer), the total-energy counter
``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded) is read: a counter
needs no integration. Otherwise ``nvmlDeviceGetPowerUsage`` (milliwatts) is sampled as a gauge.
One rail per GPU (``gpu0``, ``gpu1``, ...), all counted; scope ``gpu``. ``[power.nvml] devices``
limits it to some GPUs by NVML index (the ones the benchmark runs on).

The driver refreshes both values on its own period, which NVML does not state; edgemeter assumes
100 ms and caps sampling at 20 Hz.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from pydantic import Field, field_validator

from agent.errors import PowerSourceError
from agent.power.base import (
    Kind,
    OnceLogger,
    PowerSource,
    Reading,
    SourceContext,
    SourceSettings,
    stamp,
)
from shared.install_hint import install_command
from shared.schema import PowerScope

logger = logging.getLogger(__name__)



class NvmlSettings(SourceSettings):
    """NVIDIA GPUs through NVML: which GPUs to measure."""

    devices: list[int] | None = Field(
        None, description="NVML indices of the GPUs to measure; default: every GPU"
    )

    @field_validator("devices")
    @classmethod
    def _indices(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0 or len(set(value)) != len(value)):
            raise ValueError("give distinct GPU indices, 0 or more, e.g. [0] or [0, 1]")
        return value


class NvmlSource(PowerSource):
    name = "nvml"
    Settings = NvmlSettings
    settings: NvmlSettings
    scope = PowerScope.GPU
    kind: Kind = "gauge"
    max_hz = 20.0
    update_period_s = 0.1

    def __init__(
        self,
        settings: NvmlSettings | None = None,
        context: SourceContext | None = None,
        *,
        nvml_module: Any = None,
    ) -> None:
        """``nvml_module``: a stand-in for ``pynvml`` (tests); None imports the real one."""
        super().__init__(settings, context)
        self._nvml: Any = nvml_module
        self._handles: list[Any] = []
        self._rails: list[str] = []
        self._initialised = False
        self._once = OnceLogger(logger)

    def _module(self) -> Any:
        if self._nvml is None:
            self._nvml = importlib.import_module("pynvml")
        return self._nvml

    def probe(self) -> str | None:
        try:
            nvml = self._module()
        except ImportError:
            return f"pynvml is not installed (the 'gpu' extra: {install_command('gpu')})"
        try:
            nvml.nvmlInit()
            try:
                count = int(nvml.nvmlDeviceGetCount())
            finally:
                nvml.nvmlShutdown()
        except Exception as err:
            return f"NVML is not usable: {err} (no NVIDIA driver?)"
        if count == 0:
            return "NVML sees no GPU"
        missing = [i for i in self.settings.devices or () if i >= count]
        if missing:
            return f"[power.nvml] devices: no GPU {missing[0]} (NVML sees {count})"
        return None

    def open(self) -> None:
        why = self.probe()
        if why is not None:
            raise PowerSourceError(f"nvml: {why}")
        nvml = self._module()
        nvml.nvmlInit()
        self._initialised = True
        indices = self.settings.devices or list(range(int(nvml.nvmlDeviceGetCount())))
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        self._rails = [f"gpu{i}" for i in indices]
        self.counted_rails = tuple(self._rails)
        try:
            for handle in self._handles:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.kind, self.edge_snapshot = "counter", True
        except Exception as err:
            logger.info("nvml: no energy counter (%s); sampling the power gauge", err)
            self.kind, self.edge_snapshot = "gauge", False

    def read(self) -> Reading | None:
        nvml = self._nvml
        clock_ns = self.context.clock_ns
        before = clock_ns()
        try:
            if self.kind == "counter":
                energy = {
                    rail: float(nvml.nvmlDeviceGetTotalEnergyConsumption(h)) / 1e3
                    for rail, h in zip(self._rails, self._handles, strict=True)
                }
                return Reading(t_s=stamp(clock_ns, before), energy_j=energy)
            power = {
                rail: float(nvml.nvmlDeviceGetPowerUsage(h)) / 1e3
                for rail, h in zip(self._rails, self._handles, strict=True)
            }
            return Reading(t_s=stamp(clock_ns, before), power_w=power)
        except Exception as err:
            self._once.warning("read", "nvml: read failed: %s", err)
            return None

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except Exception as err:
                logger.debug("nvmlShutdown failed: %s", err)
