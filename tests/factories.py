"""Valid results for tests that exercise storage, ingestion and comparison rather than measuring.

Benchmarks themselves are tested on real models; these are the wire objects around them.
``make_result()`` builds what the agent sends now (schema version 2, a ``log-hist-v2``
histogram); ``make_result(schema_version=1)`` what an agent of version 1 sent (``log-hist-v1``).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np

from shared import latency
from shared.schema import (
    BenchmarkResult,
    DeviceManifest,
    LatencyHistogram,
    LatencySummary,
    ModelInfo,
    RawLatencies,
    RunSpec,
    RunSpecPair,
    RuntimeInfo,
    TensorInfo,
    Validity,
)


def make_result(
    *,
    device_id: str = "pi-01",
    fleet: str = "default",
    role: str = "edge",
    model_name: str = "vww_96_int8.tflite",
    network: str = "vww_96",
    precision: str = "int8",
    fmt: str = "tflite",
    seq: int = 0,
    p50_ms: float = 2.0,
    throughput_sps: float = 500.0,
    macs: int | None = 7_489_664,
    **overrides: Any,
) -> BenchmarkResult:
    rng = np.random.default_rng(seq)
    lat_ns = rng.normal(p50_ms * 1e6, p50_ms * 1e4, size=200).clip(1)
    srt = np.sort(lat_ns) / 1e6
    version = overrides.get("schema_version", 2)
    histogram: RawLatencies | LatencyHistogram
    if version == 1:
        buckets, counts = latency.encode(lat_ns)
        histogram = RawLatencies(buckets=buckets, counts=counts)
    else:
        histogram = LatencyHistogram.of(lat_ns)
    fields: dict[str, Any] = {
        "run_id": uuid.uuid4(),
        "device_id": device_id,
        "fleet": fleet,
        "role": role,
        "seq": seq,
        "device": DeviceManifest(hostname=device_id, cpu_model="Cortex-A76", cpu_cores=4),
        "model": ModelInfo(
            name=model_name,
            network=network,
            sha256=hashlib.sha256(model_name.encode()).hexdigest(),
            format=fmt,
            size_bytes=333288,
            precision=precision,
            inputs=[TensorInfo(name="input", dtype=precision, shape=[1, 96, 96, 3])],
            outputs=[TensorInfo(name="output", dtype=precision, shape=[1, 2])],
            macs=macs,
            params=208_000,
        ),
        "runtime": RuntimeInfo(name="litert", version="2.3.0", threads=4, providers=["xnnpack"]),
        "spec": RunSpecPair(requested=RunSpec(), effective=RunSpec(iterations=200)),
        "latency_ms": LatencySummary(
            p50=latency.percentile(srt, 0.5),
            p90=latency.percentile(srt, 0.9),
            p95=latency.percentile(srt, 0.95),
            p99=latency.percentile(srt, 0.99),
            p999=latency.percentile(srt, 0.999),
            mean=float(srt.mean()),
            std=float(srt.std()),
            min=float(srt[0]),
            max=float(srt[-1]),
            count=len(srt),
        ),
        "throughput_sps": throughput_sps,
        "init_ms": 5.0,
        "first_inference_ms": 3.0,
        "validity": Validity(valid=True),
        "latencies": histogram,
    }
    if "latency_ms" in overrides and "latencies" not in overrides:
        # The histogram encodes the default summary's queries; a summary given without its own
        # histogram would disagree with it (the schema refuses a count the histogram does not hold).
        fields["latencies"] = None
    fields.update(overrides)
    return BenchmarkResult(**fields)
