"""Fleet messages besides the result: presence, telemetry, progress, jobs, acks and receipts.

Topics (``edgemeter/v1/{fleet}/{device_id}/{kind}``, built in :mod:`shared.topics`):

==========  ====================  =======  ========  ==============================================
kind        model                 QoS      retained  written by
==========  ====================  =======  ========  ==============================================
status      :class:`Status`       1        yes       agent: birth on connect, death on a clean stop,
                                                     and the same death as its Last Will
telemetry   :class:`Telemetry`    0        no        agent, every ``telemetry_s``
progress    :class:`Progress`     0        no        agent, about once a second while a job runs
cmd         :class:`JobCommand`   1        no        the operator (``fleet run``, the dashboard)
ack         :class:`JobAck`       1        no        agent: accepted, rejected, running, done, ...
receipt     :class:`Receipt`      1        no        collector: the run_ids and final job acks it has committed
==========  ====================  =======  ========  ==============================================

Presence follows Sparkplug B's idea of a birth/death sequence number: every (re)connect the agent
increments a persisted ``bd_seq``, registers ``Status(status="offline", bd_seq=n)`` as its Last
Will and then publishes ``Status(status="online", bd_seq=n, manifest=...)``. A reader keeps the
highest ``bd_seq`` it has seen per device and ignores a death whose ``bd_seq`` is older than the
current birth's (the broker may fire a stale Will after the device has already reconnected).

Same rules as :mod:`shared.schema`: units in names, ``null`` for unmeasured, unknown fields refused,
and nothing impossible: floats finite, times, rates, powers and counts not negative, integers within
64 bits, and ``sent_at`` (``created_at``, ``stored_at``) between 2020 and
:data:`shared.schema.MAX_CLOCK_SKEW` ahead of the reader's clock (:func:`shared.schema.check_wire_time`).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_serializer, field_validator, model_validator

from shared.run_settings import RunSettings
from shared.schema import (
    Celsius,
    Count,
    DeviceManifest,
    Integer,
    NonNegative,
    Percent,
    Real,
    Strict,
    WireVersion,
    check_wire_time,
)
from shared.topics import valid_level

MESSAGES_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}\.(onnx|tflite)$")


def _level(value: str) -> str:
    if not valid_level(value):
        raise ValueError("must be usable as one MQTT topic level (letters, digits, . _ : @ -)")
    return value


Level = Annotated[str, AfterValidator(_level)]
UtcTime = Annotated[datetime, AfterValidator(check_wire_time)]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AgentManifest(Strict):
    """What a birth message says about the device: board, runtimes, power sources, version."""

    agent_version: str
    device: DeviceManifest
    runtimes: dict[str, str] = Field(
        default_factory=dict, description="inference runtime name -> version, for those installed"
    )
    power_sources: list[str] = Field(
        default_factory=list, description="power sources usable here (the estimate always is)"
    )
    formats: list[str] = Field(
        default_factory=list, max_length=16,
        description="model formats a runtime here can load (onnx, tflite); empty: not said (older agents)",
    )
    backends: dict[str, str] = Field(
        default_factory=dict, description="usable backend name (onnxruntime, litert) -> runtime version",
    )
    delegates: list[str] = Field(
        default_factory=list, max_length=16, description="LiteRT delegates whose library loads here (edgetpu)",
    )
    execution_providers: list[str] = Field(
        default_factory=list, max_length=32,
        description="ONNX Runtime execution providers this build offers (CPUExecutionProvider, ...)",
    )
    telemetry_s: Real | None = Field(None, gt=0, le=86_400)
    keepalive_s: Integer | None = Field(None, gt=0, le=65_535, description="MQTT's largest keepalive")


class Status(Strict):
    """Birth (``online``) or death (``offline``) of one agent connection."""

    schema_version: WireVersion = 1
    device_id: Level
    fleet: Level
    status: Literal["online", "offline"]
    bd_seq: Count = Field(description="birth/death sequence number; grows on every connect")
    sent_at: UtcTime | None = Field(None, description="null in a Last Will (fixed at connect)")
    reason: str | None = Field(None, max_length=200, description="why offline, when known")
    manifest: AgentManifest | None = Field(
        None, description="on births; agents send it on deaths too, so a retained death still "
        "names the board and runtimes (older agents: births only)")


class Telemetry(Strict):
    """The device's state every ``telemetry_s`` seconds."""

    schema_version: WireVersion = 1
    device_id: Level
    fleet: Level
    sent_at: UtcTime = Field(default_factory=_now)
    uptime_s: NonNegative
    cpu_util_pct: Percent | None = None
    memory_used_bytes: Count | None = None
    memory_total_bytes: Count | None = None
    temps_c: dict[str, Celsius] = Field(default_factory=dict)
    throttled: bool | None = None
    throttle_reasons: list[str] = Field(default_factory=list)
    power_w: NonNegative | None = None
    power_source: str | None = None
    power_estimated: bool | None = None
    spool_depth: Count = Field(0, description="results waiting for a receipt")
    spool_dropped_total: Count = Field(0, description="results dropped by the spool's size cap")
    current_job: str | None = None
    jobs_queued: Count = 0

    @model_validator(mode="after")
    def _used_within_total(self) -> Telemetry:
        used, total = self.memory_used_bytes, self.memory_total_bytes
        if used is not None and total is not None and used > total:
            raise ValueError(f"memory_used_bytes ({used}) is above memory_total_bytes ({total})")
        return self


class Progress(Strict):
    """About once a second while a job runs."""

    schema_version: WireVersion = 1
    device_id: Level
    fleet: Level
    job_id: Level
    sent_at: UtcTime = Field(default_factory=_now)
    phase: Literal["fetch", "load", "warmup", "idle", "measure", "fidelity", "publish"]
    iterations_done: Count = 0
    running_p50_ms: NonNegative | None = None
    power_w: NonNegative | None = None


class ModelRef(Strict):
    """A model a job needs, by content: the agent fetches it by sha256 and verifies it."""

    sha256: str = Field(description="hex sha256 of the model file")
    name: str = Field(description="file name, for its format and for display (x.onnx, y.tflite)")
    size_bytes: Integer | None = Field(None, ge=1)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower()
        if not _SHA256.match(value):
            raise ValueError("must be 64 hex digits (a sha256)")
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _MODEL_NAME.match(value):
            raise ValueError("must be a plain file name ending in .onnx or .tflite (no folders)")
        return value


JobSettings = RunSettings
"""The settings a remote job carries: :class:`shared.run_settings.RunSettings`, declared there."""


class MonitorSpec(Strict):
    """What a monitoring job (``JobCommand(kind="monitor")``) does: run the model continuously at
    ``rate_qps`` and publish a window (:mod:`shared.monitoring`) every ``window_s``, until it is
    cancelled or ``duration_s`` is over (``null``: until cancelled)."""

    rate_qps: Real = Field(gt=0, le=100_000, description="queries per second to aim at")
    window_s: Real = Field(10.0, ge=1, le=3600, description="seconds per window")
    duration_s: Real | None = Field(None, gt=0, le=366 * 86_400,
                                    description="end after this long; null: until cancelled")
    name: Level | None = Field(None, description="the windows' monitor name (default: the "
                               "model file's name without its extension)")


class JobCommand(Strict):
    """A message on ``.../cmd``: run a benchmark, start a monitoring job, or cancel either."""

    schema_version: WireVersion = 1
    kind: Literal["benchmark", "cancel", "monitor"] = "benchmark"
    job_id: Level = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: UtcTime = Field(default_factory=_now)
    model: ModelRef | None = None
    settings: JobSettings = Field(default_factory=JobSettings)
    labels: dict[str, str] = Field(default_factory=dict)
    monitor: MonitorSpec | None = Field(None, description="a monitoring job's rate and windows")

    @field_serializer("settings")
    def _only_what_the_job_sets(self, settings: RunSettings) -> dict[str, Any]:
        """A job carries the settings its sender gave; the agent's defaults fill the rest."""
        return settings.job_fields()

    @model_validator(mode="after")
    def _benchmark_names_a_model(self) -> JobCommand:
        if self.kind in ("benchmark", "monitor") and self.model is None:
            raise ValueError(f"a {self.kind} job needs a model (sha256 and name)")
        if self.kind == "monitor" and self.monitor is None:
            raise ValueError("a monitor job needs its monitor settings (rate_qps, window_s)")
        if self.kind != "monitor" and self.monitor is not None:
            raise ValueError("monitor settings belong to monitor jobs only")
        return self


JobState = Literal["accepted", "rejected", "running", "done", "failed", "cancelled"]


class JobAck(Strict):
    """The agent's word on a job, on ``.../ack``: one message per state change."""

    schema_version: WireVersion = 1
    device_id: Level
    fleet: Level
    job_id: str = Field(max_length=128)
    state: JobState
    sent_at: UtcTime = Field(default_factory=_now)
    reason: str | None = Field(None, max_length=500)
    run_id: uuid.UUID | None = None


class Receipt(Strict):
    """The collector's word that it has committed these results and job states (``.../receipt``).

    ``run_ids`` releases results, and monitor windows by their ``window_id``
    (:mod:`shared.monitoring`), from the agent's spool; ``job_ids`` releases final job acks
    (``done``, ``failed``, ``cancelled``) the agent keeps and re-announces after every reconnect
    until the collector has stored them. At least one of the two lists is non-empty.
    """

    schema_version: WireVersion = 1
    run_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10_000)
    job_ids: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list, max_length=10_000,
        description="jobs whose final ack (done, failed or cancelled) the collector has stored")
    stored_at: UtcTime = Field(default_factory=_now)
    collector: str | None = None

    @model_validator(mode="after")
    def _names_something(self) -> Receipt:
        if not self.run_ids and not self.job_ids:
            raise ValueError("a receipt names at least one run_id or job_id")
        return self
