"""Hypothesis strategies for the wire: valid messages, and hostile payloads that must be refused.

Valid strategies (:func:`results`, :func:`telemetry`, :func:`statuses`, :func:`progress`,
:func:`job_commands`, :func:`job_acks`, :func:`receipts`; :data:`VALID` maps each model to its
strategy) build messages the way a real agent or collector would: latency summaries are
percentiles (LoadGen's index convention) of one drawn sample with its histogram encoded from the same sample,
timestamps lie between 2020 and :data:`LATEST`, every number is finite and in range.

:func:`hostile_payloads` turns a strategy of valid messages into ``(what, bytes)`` pairs that no
model may accept: random bytes, truncated JSON, deep nesting, huge and non-finite numbers,
strings and booleans where numbers belong, unknown schema versions, unknown fields, and
payloads far over :data:`shared.schema.MAX_MESSAGE_BYTES`. Each is built so that it is invalid
whatever the drawn message (e.g. a number is only swapped for a string where the schema allows
no string).

Settings: :data:`SETTINGS` (200 derandomized examples, no deadline) keeps ``make test`` short and
repeatable on noisy shared cores.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from shared import latency
from shared.messages import (
    AgentManifest,
    JobAck,
    JobCommand,
    JobSettings,
    ModelRef,
    Progress,
    Receipt,
    Status,
    Telemetry,
)
from shared.schema import (
    EARLIEST_TIME,
    INT64_MAX,
    MAX_MESSAGE_BYTES,
    BenchmarkResult,
    DeviceManifest,
    EnergyReport,
    LatencySummary,
    ModelInfo,
    PowerScope,
    PowerTrace,
    RailEnergy,
    RawLatencies,
    Role,
    RunSpec,
    RunSpecPair,
    RuntimeInfo,
    Scenario,
    Stability,
    StabilityWindow,
    Strict,
    SystemState,
    TensorInfo,
    Validity,
)

M = TypeVar("M", bound=Strict)

SETTINGS = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""For every property test here: repeatable (derandomized), small enough for ``make test``.

How many examples comes from the Hypothesis profile (tests/conftest.py): 200 in ``full``, the
default, and 25 in ``fast``, which ``make test-fast`` loads.
"""

LATEST = datetime(2026, 1, 1)
"""Valid timestamps are drawn up to this (naive, read as UTC), safely before any reader's now."""

_LEVEL_CHARS = string.ascii_letters + string.digits + "._:@-"
levels = st.text(_LEVEL_CHARS, min_size=1, max_size=24)
"""Fleet names and device ids: one MQTT topic level."""
times = st.datetimes(min_value=EARLIEST_TIME.replace(tzinfo=None), max_value=LATEST,
                     timezones=st.just(timezone.utc))
plain_text = st.text(st.characters(codec="utf-8"), max_size=24)
non_negative = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=INT64_MAX)
small_counts = st.integers(min_value=0, max_value=10_000)
uuids = st.uuids()


def summarize(latencies_ns: list[int]) -> tuple[LatencySummary, RawLatencies]:
    """The summary and histogram an agent sends for these latencies (LoadGen's percentiles, one array)."""
    ms = np.sort(np.asarray(latencies_ns, dtype=np.float64)) / 1e6
    summary = LatencySummary(
        p50=latency.percentile(ms, 0.50),
        p90=latency.percentile(ms, 0.90),
        p95=latency.percentile(ms, 0.95),
        p99=latency.percentile(ms, 0.99),
        p999=latency.percentile(ms, 0.999),
        mean=float(ms.mean()),
        std=float(ms.std()),
        min=float(ms[0]),
        max=float(ms[-1]),
        count=len(ms),
    )
    buckets, bucket_counts = latency.encode(np.asarray(latencies_ns))
    return summary, RawLatencies(buckets=buckets, counts=bucket_counts)


latency_samples = st.lists(st.integers(min_value=1, max_value=10**11), min_size=1, max_size=300)


@st.composite
def energy_reports(draw: st.DrawFn) -> EnergyReport:
    points = draw(st.integers(min_value=0, max_value=20))
    return EnergyReport(
        source=draw(st.sampled_from(["rapl", "nvml", "jetson", "estimate"])),
        scope=draw(st.sampled_from(list(PowerScope))),
        estimated=draw(st.booleans()),
        rails=draw(st.lists(st.builds(RailEnergy, name=plain_text, avg_power_w=non_negative,
                                      energy_j=non_negative), max_size=3)),
        sample_hz=draw(st.none() | non_negative),
        samples=draw(small_counts),
        coverage=draw(st.none() | st.floats(min_value=0, max_value=1)),
        window_s=draw(st.none() | non_negative),
        avg_power_w=draw(st.none() | non_negative),
        peak_power_w=draw(st.none() | non_negative),
        idle_power_w=draw(st.none() | non_negative),
        energy_j=draw(st.none() | non_negative),
        joules_per_inference=draw(st.none() | non_negative),
        dynamic_joules_per_inference=draw(st.none() | st.floats(-1, 1)),
        inferences_per_joule=draw(st.none() | non_negative),
        trace=None if points == 0 else PowerTrace(
            t_s=draw(st.lists(non_negative, min_size=points, max_size=points)),
            power_w=draw(st.lists(non_negative, min_size=points, max_size=points))),
    )


system_states = st.builds(
    SystemState,
    samples=small_counts,
    sample_hz=st.none() | non_negative,
    cpu_util_pct=st.none() | st.floats(0, 100),
    cpu_util_pct_per_core=st.lists(st.floats(0, 100), max_size=8),
    cpu_freq_mhz_mean=st.none() | non_negative,
    temps_c_max=st.dictionaries(plain_text, st.floats(-40, 125), max_size=3),
    throttled=st.none() | st.booleans(),
    peak_rss_bytes=st.none() | counts,
)

stabilities = st.builds(
    Stability,
    warmup_iterations=small_counts,
    warmup_settled=st.booleans(),
    windows=st.lists(st.builds(StabilityWindow, start_s=non_negative, queries=small_counts,
                               throughput_sps=non_negative, p50_ms=non_negative), max_size=5),
    throughput_cv=st.none() | non_negative,
)

run_specs = st.builds(
    RunSpec,
    scenario=st.sampled_from(list(Scenario)),
    threads=st.none() | st.integers(1, 64),
    batch=st.integers(1, 64),
    streams=st.integers(1, 8),
    iterations=st.none() | st.integers(1, 10**7),
    duration_s=st.none() | non_negative,
    target_qps=st.none() | non_negative,
    seed=st.integers(-(2**63), INT64_MAX),
)


@st.composite
def results(draw: st.DrawFn) -> BenchmarkResult:
    """A result an agent could have measured: every block optional where the schema allows."""
    summary, histogram = summarize(draw(latency_samples))
    name = draw(st.text(_LEVEL_CHARS, min_size=1, max_size=20)) + draw(
        st.sampled_from([".onnx", ".tflite"]))
    return BenchmarkResult(
        run_id=draw(uuids),
        device_id=draw(levels),
        fleet=draw(levels),
        role=draw(st.sampled_from(list(Role))),
        created_at=draw(times),
        seq=draw(counts),
        device=DeviceManifest(hostname=draw(plain_text), cpu_cores=draw(st.none() | st.integers(1, 256)),
                              ram_bytes=draw(st.none() | counts)),
        model=ModelInfo(
            name=name, sha256=draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
            format="onnx" if name.endswith(".onnx") else "tflite", size_bytes=draw(counts),
            precision=draw(st.sampled_from(["int8", "float32", "mixed"])),
            inputs=[TensorInfo(name="input", dtype="int8",
                               shape=draw(st.lists(st.none() | st.integers(-1, 4096) | levels,
                                                   max_size=4)))],
            outputs=[TensorInfo(name="output", dtype="int8", shape=[1, 2])],
            macs=draw(st.none() | counts), params=draw(st.none() | counts)),
        runtime=RuntimeInfo(name="litert", version="1.4.0", threads=draw(st.none() | st.integers(0, 64))),
        spec=RunSpecPair(requested=draw(run_specs), effective=draw(run_specs)),
        latency_ms=summary,
        throughput_sps=draw(non_negative),
        gmacs_per_s=draw(st.none() | non_negative),
        init_ms=draw(non_negative),
        first_inference_ms=draw(non_negative),
        validity=Validity(valid=draw(st.booleans()), reasons=draw(st.lists(plain_text, max_size=2))),
        stability=draw(st.none() | stabilities),
        latencies=draw(st.sampled_from([histogram, None])),
        energy=draw(st.none() | energy_reports()),
        system=draw(st.none() | system_states),
        labels=draw(st.dictionaries(plain_text, plain_text, max_size=3)),
        replayed=draw(st.booleans()),
    )


@st.composite
def telemetry(draw: st.DrawFn) -> Telemetry:
    total = draw(st.none() | counts)
    used = None if total is None else draw(st.integers(0, total))
    return Telemetry(
        device_id=draw(levels), fleet=draw(levels), sent_at=draw(times),
        uptime_s=draw(non_negative), cpu_util_pct=draw(st.none() | st.floats(0, 100)),
        memory_used_bytes=used, memory_total_bytes=total,
        temps_c=draw(st.dictionaries(plain_text, st.floats(-273.15, 200), max_size=3)),
        throttled=draw(st.none() | st.booleans()), power_w=draw(st.none() | non_negative),
        spool_depth=draw(small_counts), spool_dropped_total=draw(small_counts),
        jobs_queued=draw(small_counts),
    )


@st.composite
def statuses(draw: st.DrawFn) -> Status:
    online = draw(st.booleans())
    manifest = AgentManifest(
        agent_version="0.1.0", device=DeviceManifest(hostname=draw(plain_text)),
        telemetry_s=draw(st.floats(0.5, 3600)), keepalive_s=draw(st.integers(1, 65_535)),
    ) if online else None
    return Status(device_id=draw(levels), fleet=draw(levels),
                  status="online" if online else "offline", bd_seq=draw(counts),
                  sent_at=draw(st.none() | times), manifest=manifest)


progress = st.builds(
    Progress, device_id=levels, fleet=levels, job_id=levels, sent_at=times,
    phase=st.sampled_from(["fetch", "load", "warmup", "idle", "measure", "fidelity", "publish"]),
    iterations_done=counts, running_p50_ms=st.none() | non_negative,
    power_w=st.none() | non_negative,
)

job_commands = st.builds(
    JobCommand, kind=st.just("benchmark"), job_id=levels, created_at=times,
    model=st.builds(ModelRef, sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
                    name=st.sampled_from(["vww_96_int8.tflite", "kws.onnx"]),
                    size_bytes=st.none() | st.integers(1, INT64_MAX)),
    settings=st.builds(JobSettings, iterations=st.none() | st.integers(1, 10_000_000),
                       duration_s=st.none() | st.floats(0.1, 3600), batch=st.integers(1, 1024),
                       seed=st.none() | st.integers(0, 2**31 - 1)),
    labels=st.dictionaries(plain_text, plain_text, max_size=3),
) | st.builds(JobCommand, kind=st.just("cancel"), job_id=levels, created_at=times)

job_acks = st.builds(
    JobAck, device_id=levels, fleet=levels, job_id=levels,
    state=st.sampled_from(["accepted", "rejected", "running", "done", "failed", "cancelled"]),
    sent_at=times, reason=st.none() | plain_text, run_id=st.none() | uuids,
)

receipts = st.builds(Receipt, run_ids=st.lists(uuids, min_size=1, max_size=20), stored_at=times,
                     collector=st.none() | plain_text)

VALID: dict[type[Strict], st.SearchStrategy[Any]] = {
    BenchmarkResult: results(),
    Telemetry: telemetry(),
    Status: statuses(),
    Progress: progress,
    JobCommand: job_commands,
    JobAck: job_acks,
    Receipt: receipts,
}


# hostile ---------------------------------------------------------------------------------------

_HOLE = "__edgemeter_hostile__"
NON_FINITE = [b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000,
              b"1" + b"0" * 400]
"""Tokens no number field may take: not JSON, or beyond a double."""
BEYOND_INT64 = [b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616",
                b"1" + b"0" * 30]
"""Integers no integer field may take: beyond 64 bits (every int on the wire fits one)."""
TEXT_FOR_NUMBER = [b'"2.5"', b'"1"', b'"0"', b'"fast"', b'""', b"true", b"false"]
_FREE_STRING_PARENTS = {"shape"}  # list[int | str | None]: a string is as valid as a number there


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every number in a JSON document (bools excluded), with its path."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [(path, value)]
    return []


def _replace(doc: Any, path: tuple[Any, ...], token: bytes) -> bytes:
    """``doc`` as JSON with the value at ``path`` replaced by the raw ``token`` bytes."""
    copy = json.loads(json.dumps(doc))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = _HOLE
    return json.dumps(copy).encode().replace(json.dumps(_HOLE).encode(), token, 1)


def _wire(message: Strict) -> bytes:
    return message.model_dump_json().encode()


@st.composite
def _number_swapped(draw: st.DrawFn, valid: st.SearchStrategy[Strict], kind: str) -> tuple[str, bytes]:
    doc = json.loads(_wire(draw(valid)))
    leaves = [(p, v) for p, v in _leaves(doc)
              if kind != "text" or not _FREE_STRING_PARENTS.intersection(map(str, p))]
    path, value = draw(st.sampled_from(leaves))
    if kind == "non-finite":
        tokens = NON_FINITE
    elif kind == "huge":
        tokens = BEYOND_INT64 if isinstance(value, int) else NON_FINITE
    else:
        tokens = TEXT_FOR_NUMBER
    token = draw(st.sampled_from(tokens))
    where = ".".join(map(str, path))
    return f"{kind} {token[:20]!r} at {where}", _replace(doc, path, token)


@st.composite
def _truncated(draw: st.DrawFn, valid: st.SearchStrategy[Strict]) -> tuple[str, bytes]:
    payload = _wire(draw(valid))
    cut = draw(st.integers(0, len(payload) - 1))
    return f"truncated at {cut} of {len(payload)}", payload[:cut]


@st.composite
def _deep(draw: st.DrawFn) -> tuple[str, bytes]:
    depth = draw(st.sampled_from([1_000, 10_000, 100_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return f"nested {depth} deep", opener * depth + b"1" + closer * depth


@st.composite
def _deep_inside(draw: st.DrawFn, valid: st.SearchStrategy[Strict]) -> tuple[str, bytes]:
    doc = json.loads(_wire(draw(valid)))
    key = draw(st.sampled_from(sorted(doc)))
    depth = draw(st.sampled_from([1_000, 100_000]))
    return f"{key} nested {depth} deep", _replace(doc, (key,), b"[" * depth + b"]" * depth)


@st.composite
def _version(draw: st.DrawFn, valid: st.SearchStrategy[Strict]) -> tuple[str, bytes]:
    doc = json.loads(_wire(draw(valid)))
    version = draw(st.integers(-(2**63), 2**63 - 1).filter(lambda v: v not in (1, 2))
                   | st.sampled_from(["1", "v1", 1.5, True, None, [1]]))
    doc["schema_version"] = version
    return f"schema_version {version!r}", json.dumps(doc).encode()


@st.composite
def _extra(draw: st.DrawFn, valid: st.SearchStrategy[Strict]) -> tuple[str, bytes]:
    message = draw(valid)
    doc = json.loads(_wire(message))
    fields = set(type(message).model_fields)
    key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in fields))
    doc[key] = draw(st.none() | st.integers() | plain_text)
    return f"unknown field {key!r}", json.dumps(doc).encode()


@st.composite
def _oversized(draw: st.DrawFn, valid: st.SearchStrategy[Strict]) -> tuple[str, bytes]:
    payload = _wire(draw(valid))
    size = draw(st.sampled_from([MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES, 8 * MAX_MESSAGE_BYTES]))
    how = draw(st.sampled_from(["whitespace", "string"]))
    if how == "whitespace":  # still a valid message, only too long
        return f"{size} bytes of padding", payload + b" " * (size - len(payload))
    doc = json.loads(payload)
    key = draw(st.sampled_from(sorted(doc)))
    return f"{size}-byte string at {key}", _replace(doc, (key,), b'"' + b"x" * size + b'"')


def hostile_payloads(valid: st.SearchStrategy[M]) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(what it tries, payload)`` pairs that no model may accept, made from ``valid`` messages."""
    as_strict: st.SearchStrategy[Strict] = valid
    return st.one_of(
        st.binary(max_size=2048).map(lambda b: (f"{len(b)} random bytes", b)),
        _truncated(as_strict),
        _deep(),
        _deep_inside(as_strict),
        _number_swapped(as_strict, "non-finite"),
        _number_swapped(as_strict, "huge"),
        _number_swapped(as_strict, "text"),
        _version(as_strict),
        _extra(as_strict),
        _oversized(as_strict),
    )


def with_changes(message: M, change: Callable[[dict[str, Any]], None]) -> bytes:
    """``message`` as JSON after ``change`` edited its plain-dict form in place."""
    doc = json.loads(_wire(message))
    change(doc)
    return json.dumps(doc).encode()


__all__ = [
    "LATEST", "NON_FINITE", "SETTINGS", "VALID", "hostile_payloads", "job_acks", "job_commands",
    "progress", "receipts", "results", "statuses", "summarize", "telemetry", "with_changes",
]
