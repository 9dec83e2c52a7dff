"""Wire schema: every result edgemeter publishes, as pydantic v2 models (version 2; 1 is read too).

Field names are a contract that other tools read (``edgemeter schema`` prints the JSON Schema).
Rules that keep it readable by non-Python consumers:

* units are in every numeric field name (``_ms``, ``_ns``, ``_w``, ``_j``, ``_sps``, ``_bytes``);
* unmeasured is ``null``, never ``0``;
* new optional fields may be added within a version; renaming or removing one is a new
  ``schema_version``;
* unknown fields are rejected (``extra="forbid"``) so a typo never passes silently;
* impossible measurements are refused, each with a reason naming the field: no float anywhere is
  NaN or infinite (JSON cannot carry them and no measurement is), times, rates, energies, powers
  and counts are not negative, integers fit 64 bits, percentiles are in order with ``min`` and
  ``max`` around them, a raw-latency histogram holds exactly ``latency_ms.count`` queries (and a
  v2 one has ``min`` and ``max`` in its first and last buckets), and a timestamp lies between
  :data:`EARLIEST_TIME` and :data:`MAX_CLOCK_SKEW` ahead of the reader's clock (see
  :func:`check_wire_time`).

Versions. The agent sends ``schema_version`` 2; every reader (ingest, compare, the HTTP run
detail, export) reads 1 and 2 alike through the same models. Version 2 changed two blocks, each
tagged so that a reader can tell the forms apart:

============== ================================================ ===================================
block          version 1                                        version 2 (lean)
============== ================================================ ===================================
``latencies``  :class:`RawLatencies`, ``"log-hist-v1"``: every  :class:`LatencyHistogram`,
               occupied 0.1 % bucket as index + count (grows     ``"log-hist-v2"``: 1 % buckets as
               with run length: 3,400 buckets, 28 KB for 10 s)  runs ``[first, counts...]``; grows
                                                                with the latencies' spread only
``fidelity``   :class:`Fidelity`: per input, an object with     :class:`FidelityDigest`,
               top-k, scores, all values (<= 256) or a 64-dim  ``"digest-v2"``: per output, rows of
               sketch                                           4-digit values (<= 16 elements) or
                                                                top-k + scores + 16-dim sketch,
                                                                and a sha256 of the full outputs
============== ================================================ ===================================

A version-1 message must use the version-1 forms (a version-1 reader could not read the others);
a version-2 message may use either, since each is tagged (``encoding``), but the agent sends the
lean ones. Both forms answer the same questions: :meth:`RawLatencies.quantile_ms` and
:meth:`LatencyHistogram.quantile_ms`, ``.occupied_ns()``, ``.span_ns()``; :meth:`Fidelity.
fingerprints` and :meth:`FidelityDigest.fingerprints`. Topic names keep their ``v1`` level: they
name the topic layout, which did not change.

Compression (:mod:`shared.payload`). A result payload is UTF-8 JSON, or that JSON compressed as one
zlib stream (RFC 1950) when that saves bytes on a payload over
:data:`shared.payload.COMPRESS_OVER_BYTES`. A zlib stream's first byte is ``0x78`` (``x``), which
no JSON text starts with, so the first byte says which it is: no MQTT v5 content type is needed,
and a 3.1.1 broker (or NATS) carries it unchanged. Readers accept both; the 1 MiB limit applies to
the payload and to the JSON inside it.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import Self

from shared import latency as latency_codec
from shared.topics import valid_level

SCHEMA_VERSION = 2
"""The version the agent sends."""
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2})
"""The versions every reader reads."""

MAX_MESSAGE_BYTES = 1_048_576
"""Largest message on the wire (1 MiB): ``model_validate_json`` refuses a longer one unread."""
INT64_MAX = 2**63 - 1
"""Largest integer on the wire: every count, size and sequence number must fit a database's BIGINT."""
MAX_CLOCK_SKEW = timedelta(minutes=10)
"""How far a message's timestamp may lie ahead of the reader's clock (boards drift; NTP fixes it)."""
EARLIEST_TIME = datetime(2020, 1, 1, tzinfo=timezone.utc)
"""No edgemeter message predates this: an earlier time means a board whose clock was never set."""
MEAN_REL_TOLERANCE = 1e-9
"""``latency_ms.mean`` may lie this far (relative) outside ``[min, max]``: float summation error."""
MAX_LATENCY_NS = 86_400e9
"""No single query takes longer than a day: the largest latency a histogram bucket may stand for."""
ABSOLUTE_ZERO_C = -273.15



def _number_not_text(value: Any) -> Any:
    """Refuse ``"2.5"`` and ``true`` where a number belongs (pydantic would quietly convert them)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    if isinstance(value, (str, bytes, bytearray)):
        raise ValueError("must be a number, not a string")
    return value


def _integer_not_float(value: Any) -> Any:
    """Refuse ``2.0`` where a version number belongs (pydantic would quietly take it as 2)."""
    if isinstance(value, float):
        raise ValueError("must be an integer, not a decimal number")
    return value


_NUMBER = BeforeValidator(_number_not_text)
# In the aliases below the bounds come before _NUMBER: bounds on the plain number become JSON
# Schema's minimum/maximum, while bounds on a validator-wrapped one would leak pydantic's own
# ge/le keys into `edgemeter schema`; a BeforeValidator runs first wherever it stands.
Real = Annotated[float, _NUMBER]
"""Any finite float (every model refuses NaN and infinities), given as a number."""
Integer = Annotated[int, Field(ge=-(2**63), le=INT64_MAX), _NUMBER]
"""Any integer within 64 bits, given as a number."""
NonNegative = Annotated[float, Field(ge=0), _NUMBER]
"""A time, rate, energy or power: finite and >= 0."""
Count = Annotated[int, Field(ge=0, le=INT64_MAX), _NUMBER]
"""A count, size or sequence number: >= 0 and within 64 bits."""
Threads = Annotated[int, Field(ge=0, le=65_536), _NUMBER]
Celsius = Annotated[float, Field(ge=ABSOLUTE_ZERO_C), _NUMBER]
Percent = Annotated[float, Field(ge=0, le=100), _NUMBER]
SchemaVersion = Annotated[int, Field(ge=1, le=INT64_MAX), BeforeValidator(_integer_not_float),
                          _NUMBER]
"""A ``schema_version``: an integer written as one (``2.0`` is refused, as are ``"2"`` and ``true``)."""
WireVersion = Annotated[Literal[1], BeforeValidator(_integer_not_float), _NUMBER]
"""``schema_version`` 1 of a fleet message, as the number 1 (not ``true``, not ``"1"``)."""


def check_wire_time(value: datetime, info: ValidationInfo) -> datetime:
    """A timestamp a board's clock wrote, as UTC: refused without a timezone, before
    :data:`EARLIEST_TIME`, or more than :data:`MAX_CLOCK_SKEW` ahead of the reader's clock.

    The reader's clock is the validation context's ``"now"`` (a timezone-aware datetime) when one
    is given, e.g. ``model_validate_json(data, context={"now": t})`` in a test or a replay, and the
    wall clock otherwise. Times in the past are never refused: results wait in outboxes.
    """
    if value.tzinfo is None:
        raise ValueError("must carry a timezone (UTC)")
    try:
        value = value.astimezone(timezone.utc)
    except OverflowError as err:
        raise ValueError("lies outside the years a UTC timestamp can hold") from err
    if value < EARLIEST_TIME:
        raise ValueError(
            f"{value.isoformat()} is before {EARLIEST_TIME:%Y-%m-%d}: the device's clock was never "
            "set (enable NTP on it)"
        )
    context = info.context if isinstance(info.context, dict) else {}
    now = context.get("now")
    if not isinstance(now, datetime) or now.tzinfo is None:
        now = datetime.now(timezone.utc)
    if value > now + MAX_CLOCK_SKEW:
        ahead_s = (value - now).total_seconds()
        raise ValueError(
            f"{value.isoformat()} is {ahead_s:.0f} s ahead of this clock (at most "
            f"{MAX_CLOCK_SKEW.total_seconds():.0f} s allowed): check the device's clock (NTP)"
        )
    return value


class Strict(BaseModel):
    """Base of every wire model: unknown fields, non-finite floats and JSON over
    :data:`MAX_MESSAGE_BYTES` are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Pydantic's ``model_validate_json``, after refusing input over :data:`MAX_MESSAGE_BYTES`
        (a ``ValidationError`` of type ``too_large``) before it is parsed."""
        size = len(json_data.encode("utf-8", "surrogatepass") if isinstance(json_data, str)
                   else json_data)
        if size > MAX_MESSAGE_BYTES:
            error = PydanticCustomError(
                "too_large",
                "message is {size} bytes, over the {limit}-byte limit of the wire",
                {"size": size, "limit": MAX_MESSAGE_BYTES},
            )
            raise ValidationError.from_exception_data(
                cls.__name__, [InitErrorDetails(type=error, loc=(), input=size)]
            )
        return super().model_validate_json(json_data, **kwargs)


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
    board: str | None = Field(
        None, description="the device tree's model; else /proc/cpuinfo's Model line; else a "
        "Jetson's L4T release (and module)")
    cpu_model: str | None = None
    cpu_cores: Annotated[int, Field(ge=1, le=1_048_576), _NUMBER] | None = Field(
        None, description="logical cores")
    ram_bytes: Count | None = None
    os: str | None = None
    kernel: str | None = None
    machine: str | None = Field(None, description="CPU architecture, e.g. aarch64")
    python: str | None = None
    hardware_key: str | None = Field(None, description="entry of the hardware catalogue")
    accelerators: list[str] = Field(default_factory=list)


class QuantParams(Strict):
    scale: list[Real]
    zero_point: list[Integer]


class TensorInfo(Strict):
    name: str
    dtype: str
    shape: list[Integer | str | None]
    quant: QuantParams | None = None


class MacsCoverage(Strict):
    """Which operator types ``macs`` covers, each mapped to its number of nodes in the graph.

    ``uncounted`` holds op types that may multiply-accumulate but have no MAC formula (a custom
    op, a loop, an FFT, ...): when it is not empty, ``macs`` is a lower bound. ``no_macs`` holds
    op types that carry no MACs by convention (element-wise, logic, memory and layout ops).
    """

    counted: dict[str, Count] = Field(
        default_factory=dict, description="op types whose multiply-accumulates are in macs"
    )
    uncounted: dict[str, Count] = Field(
        default_factory=dict,
        description="op types that may multiply-accumulate but are not counted: macs is a lower "
        "bound when this is not empty",
    )
    no_macs: dict[str, Count] = Field(
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
    size_bytes: Count
    precision: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    macs: Count | None = Field(None, description="multiply-accumulates per sample")
    params: Count | None = None
    macs_coverage: MacsCoverage | None = Field(
        None, description="which op types macs covers; null when MACs were not counted"
    )


class RuntimeInfo(Strict):
    name: str
    version: str
    threads: Threads | None = None
    providers: list[str] = Field(
        default_factory=list, description="execution providers or delegates actually used"
    )


class RunSpec(Strict):
    """The knobs of one run. ``spec.requested`` is what was asked, ``spec.effective`` what ran."""

    scenario: Scenario = Scenario.SINGLE_STREAM
    profile: str | None = None
    backend: str | None = None
    threads: Threads | None = None
    batch: Integer = Field(1, ge=1)
    streams: Integer = Field(1, ge=1)
    samples_per_query: Integer = Field(1, ge=1)
    iterations: Count | None = None
    duration_s: NonNegative | None = None
    warmup: Count | None = Field(None, description="warm-up iterations; null = until stable")
    min_queries: Count | None = None
    target_qps: NonNegative | None = None
    latency_bound_ms: NonNegative | None = None
    providers: list[str] | None = None
    delegate: str | None = None
    power: str | None = None
    power_hz: NonNegative | None = None
    idle_s: NonNegative | None = None
    fidelity: Count | None = None
    inputs: str | None = None
    seed: Integer = 0


class RunSpecPair(Strict):
    requested: RunSpec
    effective: RunSpec


class LatencySummary(Strict):
    """Per-query latency in milliseconds (percentiles by LoadGen's index, ``sorted[int(n * q)]``).

    All are taken from one sorted array, so ``min <= p50 <= p90 <= p95 <= p99 <= p999 <= max``
    holds exactly; ``mean`` lies in ``[min, max]`` up to :data:`MEAN_REL_TOLERANCE`.
    """

    p50: NonNegative
    p90: NonNegative
    p95: NonNegative
    p99: NonNegative
    p999: NonNegative
    mean: NonNegative
    std: NonNegative
    min: NonNegative
    max: NonNegative
    count: Integer = Field(ge=1)
    p90_early_stop: NonNegative | None = Field(
        None, description="MLPerf early-stopping conservative estimate of p90 (single-stream)"
    )
    p99_early_stop: NonNegative | None = Field(
        None, description="MLPerf early-stopping conservative estimate of p99 (every scenario "
        "but offline; single-stream reports it beside p90, as LoadGen does)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LatencySummary:
        chain = [("min", self.min), ("p50", self.p50), ("p90", self.p90), ("p95", self.p95),
                 ("p99", self.p99), ("p999", self.p999), ("max", self.max)]
        for (low_name, low), (high_name, high) in itertools.pairwise(chain):
            if low > high:
                raise ValueError(
                    f"{low_name} ({low:g} ms) is above {high_name} ({high:g} ms): percentiles of one "
                    "run must satisfy min <= p50 <= p90 <= p95 <= p99 <= p999 <= max"
                )
        slack = MEAN_REL_TOLERANCE * max(abs(self.max), 1.0)
        if not self.min - slack <= self.mean <= self.max + slack:
            raise ValueError(
                f"mean ({self.mean:g} ms) lies outside [min, max] = [{self.min:g}, {self.max:g}] ms"
            )
        return self


class RawLatencies(Strict):
    """Schema v1: every timed query as a 0.1 % log-bucketed histogram (see :mod:`shared.latency`)."""

    encoding: Literal["log-hist-v1"] = "log-hist-v1"
    rel_resolution: Real = Field(0.001, gt=0, le=1)
    buckets: list[Count] = Field(description="bucket indices, strictly ascending, >= 0 (1 ns)")
    counts: list[Count] = Field(description="queries in each bucket")

    @model_validator(mode="after")
    def _same_length(self) -> RawLatencies:
        if len(self.buckets) != len(self.counts):
            raise ValueError(
                f"buckets ({len(self.buckets)}) and counts ({len(self.counts)}) differ in length"
            )
        if any(hi <= lo for lo, hi in itertools.pairwise(self.buckets)):
            raise ValueError("buckets must be strictly ascending (each index once)")
        if self.buckets and self.buckets[-1] * math.log1p(self.rel_resolution) > math.log(MAX_LATENCY_NS):
            raise ValueError(
                f"bucket {self.buckets[-1]} stands for a latency over {MAX_LATENCY_NS / 1e9:.0f} s"
            )
        if sum(self.counts) > INT64_MAX:
            raise ValueError("counts add up to more than 64 bits hold")
        return self

    @property
    def rel_error(self) -> float:
        """Largest relative error of a latency read back from this histogram."""
        return math.sqrt(1.0 + self.rel_resolution) - 1.0

    @property
    def bucket_ratio(self) -> float:
        """Ratio of a bucket's upper to its lower bound."""
        return 1.0 + self.rel_resolution

    def occupied_ns(self) -> list[tuple[float, int]]:
        """``(representative latency in ns, queries)`` of each non-empty bucket, ascending."""
        rel = self.rel_resolution
        return [(latency_codec.bucket_value_ns(b, rel), c)
                for b, c in zip(self.buckets, self.counts, strict=True) if c]

    def span_ns(self) -> tuple[float, float] | None:
        """Lower bound of the fastest non-empty bucket, upper bound of the slowest (ns)."""
        occupied = [b for b, c in zip(self.buckets, self.counts, strict=True) if c]
        if not occupied:
            return None
        rel = self.rel_resolution
        return (latency_codec.bucket_bounds_ns(occupied[0], rel)[0],
                latency_codec.bucket_bounds_ns(occupied[-1], rel)[1])

    def quantile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) by LoadGen's index, within :attr:`rel_error` of the exact one."""
        return latency_codec.quantile(self.buckets, self.counts, q, self.rel_resolution) / 1e6

    @property
    def count(self) -> int:
        return int(sum(self.counts))


_LOG_HIST_MAX_INDEX = math.log(MAX_LATENCY_NS)


class LatencyHistogram(Strict):
    """Schema v2: every timed query in log buckets with a stated relative error (1 %), as runs.

    Bucket ``i`` holds the latencies in ``(g**(i-1), g**i]`` ns, ``g = (1 + rel_error) /
    (1 - rel_error)``, and reads back as ``2 g**i / (g + 1)``, within ``rel_error`` of each of
    them (:mod:`shared.latency`). ``runs`` lists consecutive buckets as ``[first_index, count,
    count, ...]``: ``[[612, 3, 10, 0, 4], [700, 1]]`` is 3 queries in bucket 612, 10 in 613, 4 in
    615 and 1 in 700. Runs are ascending and do not overlap; the counts add up to
    ``latency_ms.count``.
    """

    encoding: Literal["log-hist-v2"] = "log-hist-v2"
    rel_error: Real = Field(latency_codec.REL_ERROR, gt=0, le=0.5,
                            description="largest relative error of a latency read back")
    runs: list[list[Count]] = Field(
        description="[first bucket index, queries in it, in the next, ...], ascending, disjoint"
    )

    @model_validator(mode="after")
    def _runs_in_order(self) -> LatencyHistogram:
        end = -1  # one past the last bucket of the previous run
        total = 0
        for i, run in enumerate(self.runs):
            if len(run) < 2:
                raise ValueError(f"runs[{i}] needs a first index and at least one count")
            if run[0] < end:
                raise ValueError(
                    f"runs[{i}] starts at bucket {run[0]}, inside or before the previous run "
                    "(runs must be ascending and disjoint)"
                )
            end = run[0] + len(run) - 1
            total += sum(run[1:])
        if end > 0 and math.log(latency_codec.gamma(self.rel_error)) * (end - 2) > _LOG_HIST_MAX_INDEX:
            raise ValueError(
                f"bucket {end - 1} stands for a latency over {MAX_LATENCY_NS / 1e9:.0f} s"
            )
        if total > INT64_MAX:
            raise ValueError("counts add up to more than 64 bits hold")
        return self

    @classmethod
    def of(cls, latencies_ns: Sequence[float] | Any, rel_error: float = latency_codec.REL_ERROR
           ) -> LatencyHistogram:
        """The histogram of the given latencies (nanoseconds)."""
        return cls(rel_error=rel_error, runs=latency_codec.encode_runs(latencies_ns, rel_error))

    @property
    def bucket_ratio(self) -> float:
        """Ratio of a bucket's upper to its lower bound."""
        return latency_codec.gamma(self.rel_error)

    def buckets(self) -> tuple[list[int], list[int]]:
        """Non-empty bucket indices and their counts, ascending."""
        return latency_codec.from_runs(self.runs)

    def occupied_ns(self) -> list[tuple[float, int]]:
        """``(representative latency in ns, queries)`` of each non-empty bucket, ascending."""
        buckets, counts = self.buckets()
        return [(latency_codec.log_value_ns(b, self.rel_error), c)
                for b, c in zip(buckets, counts, strict=True)]

    def span_ns(self) -> tuple[float, float] | None:
        """Lower bound of the fastest non-empty bucket, upper bound of the slowest (ns)."""
        buckets, _ = self.buckets()
        if not buckets:
            return None
        return (latency_codec.log_bounds_ns(buckets[0], self.rel_error)[0],
                latency_codec.log_bounds_ns(buckets[-1], self.rel_error)[1])

    def quantile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) by LoadGen's index, within :attr:`rel_error` of the exact one."""
        occupied = self.occupied_ns()
        return latency_codec.quantile_ns([v for v, _ in occupied], [c for _, c in occupied],
                                         q) / 1e6

    @property
    def count(self) -> int:
        return int(sum(sum(run[1:]) for run in self.runs))


def _encoding_of(value: Any, default: str) -> str | None:
    if isinstance(value, dict):
        tag = value.get("encoding", default)
        return tag if isinstance(tag, str) else None
    return getattr(value, "encoding", default)


Latencies = Annotated[
    Annotated[RawLatencies, Tag("log-hist-v1")] | Annotated[LatencyHistogram, Tag("log-hist-v2")],
    Discriminator(lambda v: _encoding_of(v, "log-hist-v1")),
]
"""Either histogram form, told apart by ``encoding`` (absent: v1)."""


class LatencyBoundCheck(Strict):
    """The server scenario's latency test, as MLPerf LoadGen runs it (``early_stopping.cc``).

    The run passes when, with ``over_bound`` of ``queries`` slower than ``bound_ms``, it would be
    unlikely (below 1 - confidence) to see so few over-bound queries if the true rate were
    1 - ``percentile``; the percentile itself under the bound (LoadGen's performance constraint)
    is checked beside it, not instead of it.
    """

    bound_ms: NonNegative
    percentile: Real = Field(ge=0, le=1)
    queries: Count
    over_bound: Count = Field(description="queries slower than bound_ms")
    passed: bool
    queries_needed: Count | None = Field(
        None, description="queries the run needs to pass if every further one meets the bound"
    )
    early_stop_ms: NonNegative | None = Field(
        None, description="early-stopping estimate of the percentile; null below its minimum count"
    )

    @model_validator(mode="after")
    def _over_within_queries(self) -> LatencyBoundCheck:
        if self.over_bound > self.queries:
            raise ValueError(f"over_bound ({self.over_bound}) exceeds queries ({self.queries})")
        return self


class ServerQps(Strict):
    """The server scenario's rates, as MLPerf LoadGen reports them (``loadgen/results.cc``).

    ``scheduled_qps`` is (queries - 1) / the last query's scheduled arrival and ``completed_qps``
    (queries - 1) / the last completion, both from the start of the timed phase. The run keeps up
    (``passed``) when it completes at no less than ``min_ratio`` of the rate its queries arrived.
    """

    target_qps: NonNegative
    scheduled_qps: NonNegative
    completed_qps: NonNegative
    min_ratio: Real = Field(ge=0, le=1)
    passed: bool


class Validity(Strict):
    """The verdict, by MLPerf LoadGen's rules (minimum duration and queries, early stopping, the
    server's latency bound and rate); ``warnings`` are shown and warned about but do not make a
    run invalid (throughput stability, a warm-up that did not settle, outputs that do not depend
    on the input)."""

    valid: bool
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list, description="shown beside the verdict; never make a run invalid"
    )
    mlperf_valid: bool | None = Field(
        None, description="valid under MLPerf LoadGen's minimums; only the mlperf profile can be"
    )
    profile_minimums_met: bool | None = Field(
        None, description="the run lasted its profile's minimum duration and query count; false: "
        "a custom run (--iterations, --duration-s below them), never valid *for* the profile"
    )
    custom: str | None = Field(
        None, description="why the run is custom, e.g. \"custom: below the standard profile's "
        "10 s / 100 queries\""
    )
    latency_bound: LatencyBoundCheck | None = Field(
        None, description="server scenario: the early-stopping test against --latency-bound-ms"
    )
    server_qps: ServerQps | None = Field(
        None, description="server scenario: the completed rate against the scheduled one"
    )


class StabilityWindow(Strict):
    start_s: NonNegative
    queries: Count
    throughput_sps: NonNegative
    p50_ms: NonNegative


class Stability(Strict):
    warmup_iterations: Count
    warmup_settled: bool
    windows: list[StabilityWindow] = Field(default_factory=list)
    throughput_cv: NonNegative | None = Field(
        None, description="coefficient of variation over windows"
    )
    p50_cv: NonNegative | None = None
    stable: bool | None = Field(
        None, description="throughput_cv within cv_limit; null where not judged (a server run's "
        "Poisson arrivals, or windows too short). A verdict of its own: never makes a run invalid"
    )
    cv_limit: NonNegative | None = Field(None, description="the throughput CV stable is judged by")


class RailEnergy(Strict):
    name: str
    avg_power_w: NonNegative | None = None
    energy_j: NonNegative | None = None


class PowerTrace(Strict):
    t_s: list[Real] = Field(description="seconds since the timed phase began")
    power_w: list[NonNegative]

    @model_validator(mode="after")
    def _same_length(self) -> PowerTrace:
        if len(self.t_s) != len(self.power_w):
            raise ValueError(
                f"t_s ({len(self.t_s)}) and power_w ({len(self.power_w)}) differ in length"
            )
        return self


class EnergyReport(Strict):
    source: str
    scope: PowerScope
    estimated: bool
    rails: list[RailEnergy] = Field(default_factory=list)
    sample_hz: NonNegative | None = None
    samples: Count = 0
    coverage: Annotated[float, Field(ge=0, le=1.0001), _NUMBER] | None = None
    window_s: NonNegative | None = None
    avg_power_w: NonNegative | None = None
    peak_power_w: NonNegative | None = Field(
        None, description="highest power averaged over peak_window_ms (gauges: highest sample)"
    )
    peak_window_ms: NonNegative | None = Field(
        None, description="shortest span peak_power_w is averaged over (a gauge: its update period)"
    )
    idle_power_w: NonNegative | None = None
    energy_j: NonNegative | None = None
    joules_per_inference: NonNegative | None = None
    dynamic_joules_per_inference: Real | None = Field(
        None,
        description="joules_per_inference less the idle power's share; a difference of two "
        "measurements, so it may be slightly negative when idle and run power are within noise",
    )
    inferences_per_joule: NonNegative | None = None
    trace: PowerTrace | None = None
    notes: list[str] = Field(
        default_factory=list,
        description="what the figure covers and how it was made (e.g. an estimate scaled to cores)",
    )
    valid: bool = True
    reasons: list[str] = Field(default_factory=list)


class SystemState(Strict):
    samples: Count = 0
    sample_hz: NonNegative | None = None
    cpu_util_pct: Percent | None = None
    cpu_util_pct_per_core: list[Percent] = Field(default_factory=list)
    cpu_freq_mhz_mean: NonNegative | None = None
    cpu_freq_mhz_min: NonNegative | None = None
    cpu_freq_mhz_max: NonNegative | None = None
    temps_c_max: dict[str, Celsius] = Field(default_factory=dict)
    throttled: bool | None = None
    throttle_reasons: list[str] = Field(default_factory=list)
    peak_rss_bytes: Count | None = None
    model_load_rss_bytes: Count | None = None


class OutputFingerprint(Strict):
    """One output tensor for one fidelity input."""

    top_k: list[Count]
    top_scores: list[Real]
    values: list[Real] | None = Field(None, description="all dequantized values when small")
    sketch: list[Real] | None = Field(
        None, description="seeded random projection of the values when too large to send"
    )
    non_finite: Count = Field(
        0, description="outputs that were NaN or infinite, sent as 0 or the float64 extremes"
    )


class Fidelity(Strict):
    """Schema v1: one :class:`OutputFingerprint` per output and input."""

    seed: Integer
    input_source: str = Field(description="'seeded' or the user's inputs")
    n_inputs: Count
    k: Count
    outputs: dict[str, list[OutputFingerprint]]

    def fingerprints(self) -> dict[str, list[OutputFingerprint]]:
        """Per output name, one fingerprint per input (the form compare reads)."""
        return self.outputs


SHA256_HEX = r"^[0-9a-f]{64}$"


class OutputDigest(Strict):
    """Schema v2: one output tensor over every fidelity input, as rows (one per input).

    Either ``values`` (every element of the output, per input: the agent sends them for outputs
    of at most 16 elements, rounded as ``FidelityDigest.digits`` says, and for every output with
    ``bench --full-fidelity``, unrounded), or ``top_k`` and ``top_scores`` (the k
    largest elements, highest first) with ``sketch`` (a 16-value seeded random projection, the
    first rows of version 1's 64, so cosine similarity can be estimated against either version).
    ``sha256`` digests the full outputs (see :meth:`FidelityDigest.fingerprints`), so two runs can
    be checked for identical outputs without sending them.
    """

    size: Count = Field(description="elements of the output for one input")
    sha256: str = Field(
        pattern=SHA256_HEX,
        description="sha256 of the dequantized outputs as float64 little-endian, input by input",
    )
    values: list[list[Real]] | None = Field(None, description="per input, every element")
    top_k: list[list[Count]] | None = Field(None, description="per input, indices of the k largest")
    top_scores: list[list[Real]] | None = Field(None, description="per input, their values")
    sketch: list[list[Real]] | None = Field(
        None, description="per input, a seeded random projection of the values"
    )
    non_finite: Count = Field(
        0, description="elements that were NaN or infinite, sent as 0 or the float64 extremes"
    )

    @model_validator(mode="after")
    def _rows_fit(self) -> OutputDigest:
        if self.values is not None:
            for i, row in enumerate(self.values):
                if len(row) != self.size:
                    raise ValueError(f"values[{i}] has {len(row)} elements, not size {self.size}")
            return self
        if self.top_k is None or self.top_scores is None:
            raise ValueError("needs values, or top_k and top_scores")
        if len(self.top_k) != len(self.top_scores):
            raise ValueError(f"top_k ({len(self.top_k)} rows) and top_scores "
                             f"({len(self.top_scores)} rows) differ")
        for i, (top, scores) in enumerate(zip(self.top_k, self.top_scores, strict=True)):
            if len(top) != len(scores):
                raise ValueError(f"top_k[{i}] and top_scores[{i}] differ in length")
            if any(index >= self.size for index in top):
                raise ValueError(f"top_k[{i}] holds an index beyond size {self.size}")
        if self.sketch is not None and len(self.sketch) != len(self.top_k):
            raise ValueError(f"sketch ({len(self.sketch)} rows) and top_k ({len(self.top_k)} "
                             "rows) differ")
        return self

    @property
    def rows(self) -> int:
        return len(self.values if self.values is not None else self.top_k or [])

    def fingerprints(self, k: int) -> list[OutputFingerprint]:
        """One version-1 style fingerprint per input (top-k derived from values when sent)."""
        if self.values is not None:
            prints = []
            for row in self.values:
                top = sorted(range(len(row)), key=lambda j: -row[j])[:min(k, len(row))]
                prints.append(OutputFingerprint(top_k=top, top_scores=[row[j] for j in top],
                                                values=row))
            return prints
        assert self.top_k is not None and self.top_scores is not None  # checked on validation
        sketches: Sequence[list[float] | None] = self.sketch or [None] * len(self.top_k)
        return [OutputFingerprint(top_k=top, top_scores=scores, sketch=sketch)
                for top, scores, sketch in zip(self.top_k, self.top_scores, sketches, strict=True)]


class FidelityDigest(Strict):
    """Schema v2: outputs on the fixed input set, per output name (``"0"``, ``"1"``, ...)."""

    encoding: Literal["digest-v2"] = "digest-v2"
    seed: Integer
    input_source: str = Field(description="'seeded' or the user's inputs")
    n_inputs: Count
    k: Count
    digits: Annotated[int, Field(ge=1, le=17), _NUMBER] | None = Field(
        4,
        description="values, scores and sketches were rounded, row by row, to this many "
        "significant digits of the row's largest magnitude; null: unrounded (--full-fidelity)",
    )
    outputs: dict[str, OutputDigest]

    @model_validator(mode="after")
    def _one_row_per_input(self) -> FidelityDigest:
        for name, output in self.outputs.items():
            if output.rows != self.n_inputs:
                raise ValueError(f"output {name!r} has {output.rows} rows for {self.n_inputs} "
                                 "inputs")
        return self

    def fingerprints(self) -> dict[str, list[OutputFingerprint]]:
        """Per output name, one fingerprint per input (the form compare reads)."""
        return {name: output.fingerprints(self.k) for name, output in self.outputs.items()}


FidelityBlock = Annotated[
    Annotated[Fidelity, Tag("v1")] | Annotated[FidelityDigest, Tag("digest-v2")],
    Discriminator(lambda v: _encoding_of(v, "v1")),
]
"""Either fidelity form, told apart by ``encoding`` (absent: v1)."""


MAX_THERMAL_TRACE_POINTS = 1000


class ThermalTrace(Strict):
    """A sustained run's trace as parallel columns, one entry per sample: the end of the sample
    in seconds from the timed phase's start, its throughput, the hottest temperature sensor
    (null: none) and the board's throttle flag (null: it cannot say)."""

    t_s: list[NonNegative] = Field(max_length=MAX_THERMAL_TRACE_POINTS)
    throughput_sps: list[NonNegative] = Field(max_length=MAX_THERMAL_TRACE_POINTS)
    temperature_c: list[Celsius | None] = Field(max_length=MAX_THERMAL_TRACE_POINTS)
    throttled: list[bool | None] = Field(max_length=MAX_THERMAL_TRACE_POINTS)

    @model_validator(mode="after")
    def _columns_align(self) -> ThermalTrace:
        lengths = {len(self.t_s), len(self.throughput_sps), len(self.temperature_c),
                   len(self.throttled)}
        if len(lengths) > 1:
            raise ValueError("t_s, throughput_sps, temperature_c and throttled must have one "
                             "entry per sample each")
        return self


class SustainedRun(Strict):
    """What the ``sustained`` profile adds to a result: burst against sustained throughput.

    ``burst_sps`` is the throughput of the first ``burst_s`` seconds, ``sustained_sps`` the mean
    over the settled span at the end; ``time_to_first_throttle_s`` is null when the board never
    throttled or cannot say (``throttle_known``); ``temperature_sensors`` empty means the board
    has no temperature sensor, and only the throughput had to settle."""

    stopped: Literal["settled", "cap", "cancelled"]
    burst_s: NonNegative
    burst_sps: NonNegative | None = None
    sustained_sps: NonNegative | None = None
    time_to_first_throttle_s: NonNegative | None = None
    throttle_known: bool = False
    temperature_sensors: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list, max_length=256)
    trace: ThermalTrace


class BenchmarkResult(Strict):
    """One benchmark run: the message on ``edgemeter/v1/{fleet}/{device_id}/result``.

    ``schema_version`` 1 or 2 (see the module docstring); built in Python without one, it is 2.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    run_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    device_id: str
    fleet: str = "default"
    role: Role = Role.EDGE
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    seq: Count = Field(0, description="per-device counter that only grows")
    agent_version: str | None = None
    device: DeviceManifest
    model: ModelInfo
    runtime: RuntimeInfo
    spec: RunSpecPair
    latency_ms: LatencySummary
    throughput_sps: NonNegative
    gmacs_per_s: NonNegative | None = None
    init_ms: NonNegative
    first_inference_ms: NonNegative
    validity: Validity
    stability: Stability | None = None
    latencies: Latencies | None = None
    energy: EnergyReport | None = None
    system: SystemState | None = None
    fidelity: FidelityBlock | None = None
    sustained: SustainedRun | None = Field(
        None, description="the sustained profile's burst, sustained and thermal figures")
    labels: dict[str, str] = Field(default_factory=dict)
    replayed: bool = Field(
        False, description="true when the agent sends this result again (no receipt came in time)"
    )

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            readable = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
            raise ValueError(f"unsupported schema_version {value} (this reader reads {readable})")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        return check_wire_time(value, info)

    @field_validator("device_id", "fleet")
    @classmethod
    def _topic_level(cls, value: str) -> str:
        if not valid_level(value):
            raise ValueError("must be usable as one MQTT topic level (letters, digits, . _ : @ -)")
        return value

    @model_validator(mode="after")
    def _forms_of_version(self) -> BenchmarkResult:
        # A version-1 reader knows only the version-1 forms; version 2 reads both (each is tagged).
        if self.schema_version == 1:
            if isinstance(self.latencies, LatencyHistogram):
                raise ValueError("latencies: encoding log-hist-v2 needs schema_version 2")
            if isinstance(self.fidelity, FidelityDigest):
                raise ValueError("fidelity: encoding digest-v2 needs schema_version 2")
        return self

    @model_validator(mode="after")
    def _histogram_matches_summary(self) -> BenchmarkResult:
        # The agent encodes the very latencies it summarises, so the two counts agree exactly.
        raw = self.latencies
        if raw is None:
            return self
        if raw.count != self.latency_ms.count:
            raise ValueError(
                f"latencies holds {raw.count} queries but latency_ms.count is "
                f"{self.latency_ms.count}: the histogram must encode exactly the summarised queries"
            )
        if isinstance(raw, LatencyHistogram):
            _extremes_in_end_buckets(raw, self.latency_ms)
        return self


def _extremes_in_end_buckets(raw: LatencyHistogram, summary: LatencySummary) -> None:
    """``min`` lies in the fastest non-empty bucket and ``max`` in the slowest (one bucket of slack
    either way for the rounding of a latency that lies on a boundary, or printed in ms)."""
    buckets, _ = raw.buckets()
    if not buckets:
        return
    for name, value_ms, bucket in (("min", summary.min, buckets[0]),
                                   ("max", summary.max, buckets[-1])):
        index = latency_codec.log_index(value_ms * 1e6, raw.rel_error)
        if abs(index - bucket) > 1:
            low, high = latency_codec.log_bounds_ns(bucket, raw.rel_error)
            raise ValueError(
                f"latency_ms.{name} ({value_ms:g} ms) is not in the histogram's "
                f"{'fastest' if name == 'min' else 'slowest'} bucket ({low / 1e6:g} to "
                f"{high / 1e6:g} ms): the histogram must encode the summarised queries"
            )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`BenchmarkResult`, for non-Python consumers."""
    schema = BenchmarkResult.model_json_schema()
    schema["$id"] = f"https://edgemeter.invalid/schema/v{SCHEMA_VERSION}/result.json"
    schema["title"] = f"edgemeter BenchmarkResult v{SCHEMA_VERSION}"
    return schema
