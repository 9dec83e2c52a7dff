"""Wire schema v1: every message edgemeter publishes, as pydantic v2 models.

Field names are a contract that other tools read (``edgemeter schema`` prints the JSON Schema).
Rules that keep it readable by non-Python consumers:

* units are in every numeric field name (``_ms``, ``_ns``, ``_w``, ``_j``, ``_sps``, ``_bytes``);
* unmeasured is ``null``, never ``0``;
* new optional fields may be added within v1; renaming or removing one is a new ``schema_version``;
* unknown fields are rejected (``extra="forbid"``) so a typo never passes silently.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared import latency as latency_codec
from shared.topics import valid_level

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Role(str, Enum):
    EDGE = "edge"
    DATACENTER = "datacenter"
    HPC = "hpc"


class Scenario(str, Enum):
    SINGLE_STREAM = "single-stream"
    MULTI_STREAM = "multi-stream"
    SERVER = "server"
    OFFLINE = "offline"


class PowerScope(str, Enum):
    """What a power figure covers, from widest to narrowest."""

    WALL = "wall"
    BOARD = "board"
    MODULE = "module"
    SOC_RAILS = "soc_rails"
    CPU_PACKAGE = "cpu_package"
    GPU = "gpu"
    ESTIMATE = "estimate"


class DeviceManifest(Strict):
    hostname: str
    board: str | None = Field(None, description="/proc/device-tree/model when present")
    cpu_model: str | None = None
    cpu_cores: int | None = Field(None, description="logical cores")
    ram_bytes: int | None = None
    os: str | None = None
    kernel: str | None = None
    machine: str | None = Field(None, description="CPU architecture, e.g. aarch64")
    python: str | None = None
    hardware_key: str | None = Field(None, description="entry of the hardware catalogue")
    accelerators: list[str] = Field(default_factory=list)


class QuantParams(Strict):
    scale: list[float]
    zero_point: list[int]


class TensorInfo(Strict):
    name: str
    dtype: str
    shape: list[int | str | None]
    quant: QuantParams | None = None


class MacsCoverage(Strict):
    """Which operator types ``macs`` covers, each mapped to its number of nodes in the graph.

    ``uncounted`` holds op types that may multiply-accumulate but have no MAC formula (a custom
    op, a loop, an FFT, ...): when it is not empty, ``macs`` is a lower bound. ``no_macs`` holds
    op types that carry no MACs by convention (element-wise, logic, memory and layout ops).
    """

    counted: dict[str, int] = Field(
        default_factory=dict, description="op types whose multiply-accumulates are in macs"
    )
    uncounted: dict[str, int] = Field(
        default_factory=dict,
        description="op types that may multiply-accumulate but are not counted: macs is a lower "
        "bound when this is not empty",
    )
    no_macs: dict[str, int] = Field(
        default_factory=dict, description="op types that carry no MACs by convention"
    )

    @property
    def complete(self) -> bool:
        """Whether every op type that may multiply-accumulate was counted."""
        return not self.uncounted


class ModelInfo(Strict):
    name: str
    network: str | None = Field(
        None,
        description="network identity shared by the int8/float, TFLite/ONNX files of one network",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["onnx", "tflite"]
    size_bytes: int = Field(ge=0)
    precision: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    macs: int | None = Field(None, ge=0, description="multiply-accumulates per sample")
    params: int | None = Field(None, ge=0)
    macs_coverage: MacsCoverage | None = Field(
        None, description="which op types macs covers; null when MACs were not counted"
    )


class RuntimeInfo(Strict):
    name: str
    version: str
    threads: int | None = None
    providers: list[str] = Field(
        default_factory=list, description="execution providers or delegates actually used"
    )


class RunSpec(Strict):
    """The knobs of one run. ``spec.requested`` is what was asked, ``spec.effective`` what ran."""

    scenario: Scenario = Scenario.SINGLE_STREAM
    profile: str | None = None
    backend: str | None = None
    threads: int | None = None
    batch: int = 1
    streams: int = 1
    samples_per_query: int = 1
    iterations: int | None = None
    duration_s: float | None = None
    warmup: int | None = Field(None, description="warm-up iterations; null = until stable")
    min_queries: int | None = None
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    providers: list[str] | None = None
    delegate: str | None = None
    power: str | None = None
    power_hz: float | None = None
    idle_s: float | None = None
    fidelity: int | None = None
    inputs: str | None = None
    seed: int = 0


class RunSpecPair(Strict):
    requested: RunSpec
    effective: RunSpec


class LatencySummary(Strict):
    """Per-query latency in milliseconds (nearest-rank percentiles)."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    mean: float
    std: float
    min: float
    max: float
    count: int = Field(ge=1)
    p90_early_stop: float | None = Field(
        None, description="MLPerf early-stopping conservative estimate of p90 (single-stream)"
    )
    p99_early_stop: float | None = Field(
        None, description="MLPerf early-stopping conservative estimate of p99 (multi-stream, server)"
    )


class RawLatencies(Strict):
    """Every timed query as a log-bucketed histogram (see :mod:`shared.latency`)."""

    encoding: Literal["log-hist-v1"] = "log-hist-v1"
    rel_resolution: float = 0.001
    buckets: list[int]
    counts: list[int]

    @model_validator(mode="after")
    def _same_length(self) -> RawLatencies:
        if len(self.buckets) != len(self.counts):
            raise ValueError("buckets and counts differ in length")
        return self

    def quantile_ms(self, q: float) -> float:
        return latency_codec.quantile(self.buckets, self.counts, q, self.rel_resolution) / 1e6

    @property
    def count(self) -> int:
        return int(sum(self.counts))


class LatencyBoundCheck(Strict):
    """The server scenario's latency test, as MLPerf LoadGen runs it (``early_stopping.cc``).

    The run passes when, with ``over_bound`` of ``queries`` slower than ``bound_ms``, it would be
    unlikely (below 1 - confidence) to see so few over-bound queries if the true rate were
    1 - ``percentile``; not when the nearest-rank percentile is merely under the bound.
    """

    bound_ms: float
    percentile: float
    queries: int
    over_bound: int = Field(description="queries slower than bound_ms")
    passed: bool
    queries_needed: int | None = Field(
        None, description="queries the run needs to pass if every further one meets the bound"
    )
    early_stop_ms: float | None = Field(
        None, description="early-stopping estimate of the percentile; null below its minimum count"
    )


class Validity(Strict):
    valid: bool
    reasons: list[str] = Field(default_factory=list)
    mlperf_valid: bool | None = Field(
        None, description="valid under MLPerf LoadGen's minimums; only the mlperf profile can be"
    )
    latency_bound: LatencyBoundCheck | None = Field(
        None, description="server scenario: the early-stopping test against --latency-bound-ms"
    )


class StabilityWindow(Strict):
    start_s: float
    queries: int
    throughput_sps: float
    p50_ms: float


class Stability(Strict):
    warmup_iterations: int
    warmup_settled: bool
    windows: list[StabilityWindow] = Field(default_factory=list)
    throughput_cv: float | None = Field(None, description="coefficient of variation over windows")
    p50_cv: float | None = None


class RailEnergy(Strict):
    name: str
    avg_power_w: float | None = None
    energy_j: float | None = None


class PowerTrace(Strict):
    t_s: list[float] = Field(description="seconds since the timed phase began")
    power_w: list[float]


class EnergyReport(Strict):
    source: str
    scope: PowerScope
    estimated: bool
    rails: list[RailEnergy] = Field(default_factory=list)
    sample_hz: float | None = None
    samples: int = 0
    coverage: float | None = Field(None, ge=0, le=1.0001)
    window_s: float | None = None
    avg_power_w: float | None = None
    peak_power_w: float | None = Field(
        None, description="highest power averaged over peak_window_ms (gauges: highest sample)"
    )
    peak_window_ms: float | None = Field(
        None, description="shortest span peak_power_w is averaged over (a gauge: its update period)"
    )
    idle_power_w: float | None = None
    energy_j: float | None = None
    joules_per_inference: float | None = None
    dynamic_joules_per_inference: float | None = None
    inferences_per_joule: float | None = None
    trace: PowerTrace | None = None
    notes: list[str] = Field(
        default_factory=list,
        description="what the figure covers and how it was made (e.g. an estimate scaled to cores)",
    )
    valid: bool = True
    reasons: list[str] = Field(default_factory=list)


class SystemState(Strict):
    samples: int = 0
    sample_hz: float | None = None
    cpu_util_pct: float | None = None
    cpu_util_pct_per_core: list[float] = Field(default_factory=list)
    cpu_freq_mhz_mean: float | None = None
    cpu_freq_mhz_min: float | None = None
    cpu_freq_mhz_max: float | None = None
    temps_c_max: dict[str, float] = Field(default_factory=dict)
    throttled: bool | None = None
    throttle_reasons: list[str] = Field(default_factory=list)
    peak_rss_bytes: int | None = None
    model_load_rss_bytes: int | None = None


class OutputFingerprint(Strict):
    """One output tensor for one fidelity input."""

    top_k: list[int]
    top_scores: list[float]
    values: list[float] | None = Field(None, description="all dequantized values when small")
    sketch: list[float] | None = Field(
        None, description="seeded random projection of the values when too large to send"
    )


class Fidelity(Strict):
    seed: int
    input_source: str = Field(description="'seeded' or the user's inputs")
    n_inputs: int
    k: int
    outputs: dict[str, list[OutputFingerprint]]


class BenchmarkResult(Strict):
    """One benchmark run: the message on ``edgemeter/v1/{fleet}/{device_id}/result``."""

    schema_version: int = SCHEMA_VERSION
    run_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    device_id: str
    fleet: str = "default"
    role: Role = Role.EDGE
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    seq: int = Field(0, ge=0, description="per-device counter that only grows")
    agent_version: str | None = None
    device: DeviceManifest
    model: ModelInfo
    runtime: RuntimeInfo
    spec: RunSpecPair
    latency_ms: LatencySummary
    throughput_sps: float = Field(ge=0)
    gmacs_per_s: float | None = None
    init_ms: float
    first_inference_ms: float
    validity: Validity
    stability: Stability | None = None
    latencies: RawLatencies | None = None
    energy: EnergyReport | None = None
    system: SystemState | None = None
    fidelity: Fidelity | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    replayed: bool = Field(
        False, description="true when the agent sends this result again (no receipt came in time)"
    )

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(f"unsupported schema_version {value}")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a timezone (UTC)")
        return value.astimezone(timezone.utc)

    @field_validator("device_id", "fleet")
    @classmethod
    def _topic_level(cls, value: str) -> str:
        if not valid_level(value):
            raise ValueError("must be usable as one MQTT topic level (letters, digits, . _ : @ -)")
        return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`BenchmarkResult`, for non-Python consumers."""
    schema = BenchmarkResult.model_json_schema()
    schema["$id"] = f"https://edgemeter.invalid/schema/v{SCHEMA_VERSION}/result.json"
    schema["title"] = f"edgemeter BenchmarkResult v{SCHEMA_VERSION}"
    return schema
