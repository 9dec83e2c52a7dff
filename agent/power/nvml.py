"""NVIDIA GPUs through NVML (``pynvml``, from the ``nvidia-ml-py`` package), imported only here.

Where every GPU supports it (Volta and newer), the total-energy counter
``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded) is read: a counter
needs no integration. Otherwise ``nvmlDeviceGetPowerUsage`` (milliwatts) is sampled as a gauge.
One rail per GPU (``gpu0``, ``gpu1``, ...), all counted; scope ``gpu``.

The driver refreshes both values on its own period, which NVML does not state; edgemeter assumes
100 ms and caps sampling at 20 Hz.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from agent.errors import PowerSourceError
from agent.power.base import Kind, OnceLogger, PowerSource, Reading, SourceConfig, stamp
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install nvidia-ml-py"


class NvmlSource(PowerSource):
    name = "nvml"
    scope = PowerScope.GPU
    kind: Kind = "gauge"
    max_hz = 20.0
    update_period_s = 0.1

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self._nvml: Any = config.nvml_module
        self._handles: list[Any] = []
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
            return f"pynvml is not installed ({INSTALL_HINT})"
        try:
            nvml.nvmlInit()
            try:
                count = int(nvml.nvmlDeviceGetCount())
            finally:
                nvml.nvmlShutdown()
        except Exception as err:
            return f"NVML is not usable: {err} (no NVIDIA driver?)"
        return None if count > 0 else "NVML sees no GPU"

    def open(self) -> None:
        why = self.probe()
        if why is not None:
            raise PowerSourceError(f"nvml: {why}")
        nvml = self._module()
        nvml.nvmlInit()
        self._initialised = True
        self._handles = [
            nvml.nvmlDeviceGetHandleByIndex(i) for i in range(int(nvml.nvmlDeviceGetCount()))
        ]
        self.counted_rails = tuple(f"gpu{i}" for i in range(len(self._handles)))
        try:
            for handle in self._handles:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.kind, self.edge_snapshot = "counter", True
        except Exception as err:
            logger.info("nvml: no energy counter (%s); sampling the power gauge", err)
            self.kind, self.edge_snapshot = "gauge", False

    def read(self) -> Reading | None:
        nvml = self._nvml
        before = time.monotonic()
        try:
            if self.kind == "counter":
                energy = {
                    f"gpu{i}": float(nvml.nvmlDeviceGetTotalEnergyConsumption(h)) / 1e3
                    for i, h in enumerate(self._handles)
                }
                return Reading(t_s=stamp(before), energy_j=energy)
            power = {
                f"gpu{i}": float(nvml.nvmlDeviceGetPowerUsage(h)) / 1e3
                for i, h in enumerate(self._handles)
            }
            return Reading(t_s=stamp(before), power_w=power)
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
