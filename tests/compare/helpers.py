"""Builders shared by the comparison tests: runs with exact, hand-checkable figures."""

from __future__ import annotations

from typing import Any

from shared.schema import (
    BenchmarkResult,
    DeviceManifest,
    EnergyReport,
    Fidelity,
    LatencySummary,
    OutputFingerprint,
    PowerScope,
    RunSpec,
    RunSpecPair,
    Scenario,
)
from tests.factories import make_result


def summary(p50: float, p90: float | None = None) -> LatencySummary:
    p90 = p90 if p90 is not None else p50
    return LatencySummary(p50=p50, p90=p90, p95=p90, p99=p90, p999=p90, mean=p50, std=0.0,
                          min=p50, max=p90, count=100)


def run(
    *,
    role: str = "edge",
    device_id: str = "pi-01",
    hardware_key: str | None = "raspberry-pi-4",
    p50_ms: float = 2.0,
    p90_ms: float | None = None,
    throughput_sps: float = 500.0,
    scenario: Scenario = Scenario.SINGLE_STREAM,
    avg_power_w: float | None = None,
    joules_per_inference: float | None = None,
    estimated: bool = False,
    **overrides: Any,
) -> BenchmarkResult:
    """A run whose latency summary, throughput and energy are exactly the given figures."""
    fields: dict[str, Any] = {
        "role": role,
        "device_id": device_id,
        "throughput_sps": throughput_sps,
        "device": DeviceManifest(hostname=device_id, hardware_key=hardware_key, cpu_cores=4),
        "spec": RunSpecPair(requested=RunSpec(scenario=scenario), effective=RunSpec(scenario=scenario)),
        "latency_ms": summary(p50_ms, p90_ms),
    }
    if avg_power_w is not None or joules_per_inference is not None:
        fields["energy"] = EnergyReport(
            source="test-meter", scope=PowerScope.BOARD, estimated=estimated,
            avg_power_w=avg_power_w, joules_per_inference=joules_per_inference,
        )
    fields.update(overrides)
    return make_result(**fields)


def edge_int8(**kw: Any) -> BenchmarkResult:
    return run(**kw)


def dc_float(**kw: Any) -> BenchmarkResult:
    kw.setdefault("role", "datacenter")
    kw.setdefault("device_id", "dc-01")
    kw.setdefault("hardware_key", "nvidia-t4")
    kw.setdefault("p50_ms", 0.5)
    kw.setdefault("throughput_sps", 4000.0)
    return run(model_name="vww_96_float.onnx", fmt="onnx", precision="float32", **kw)


def fingerprint(top: int, values: list[float] | None = None,
                sketch: list[float] | None = None) -> OutputFingerprint:
    return OutputFingerprint(top_k=[top], top_scores=[0.0], values=values, sketch=sketch)


def fidelity(prints: list[OutputFingerprint], *, seed: int = 0, source: str = "seeded",
             name: str = "0") -> Fidelity:
    return Fidelity(seed=seed, input_source=source, n_inputs=len(prints), k=1,
                    outputs={name: prints})
