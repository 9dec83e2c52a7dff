"""What the collector keeps besides the results themselves: devices, jobs, models, dead letters,
seq gaps and cited baselines. Read-only records the store returns (frozen dataclasses), plus the
pydantic models that are also written by users (:class:`CitedBaseline`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import AgentManifest, JobCommand, Telemetry
from shared.schema import Role, Scenario

DeviceStatus = Literal["online", "offline", "unknown"]


class DeadLetter(BaseModel):
    """A message the collector could not accept, kept with (the start of) its bytes and the reason.

    One row per distinct payload of a device: ``received_at`` is when it first came, ``last_seen``
    when it last came, ``count`` how many times. ``payload`` holds at most the first 64 KiB;
    ``size_bytes`` and ``sha256`` describe the whole message as received (``truncated`` says when
    the two differ). ``device_id`` is None when the topic named none.
    """

    id: int | None = None
    received_at: datetime
    topic: str
    reason: str
    payload: bytes
    device_id: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    count: int = 1
    last_seen: datetime | None = None

    @property
    def first_seen(self) -> datetime:
        return self.received_at

    @property
    def truncated(self) -> bool:
        return self.size_bytes is not None and self.size_bytes > len(self.payload)


@dataclass(frozen=True)
class DeviceRecord:
    """One device as the collector knows it, from its presence, telemetry and results.

    ``status`` is ``unknown`` until a birth or death has been stored (a device seen only through
    telemetry or results). ``manifest`` is the one of the last birth that won
    (:func:`shared.presence.status_wins`). ``latest_*`` describe the newest result by
    ``created_at``: its run_id, p50 latency, average power (None when unmeasured) and model file.
    """

    device_id: str
    fleet: str
    status: DeviceStatus
    bd_seq: int | None
    first_seen: datetime
    last_seen: datetime
    manifest: AgentManifest | None = None
    telemetry: Telemetry | None = None
    latest_run_id: str | None = None
    latest_p50_ms: float | None = None
    latest_power_w: float | None = None
    latest_model: str | None = None
    latest_created_at: datetime | None = None
    status_reason: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """A job sent to one device, and the last word its acks gave on it.

    ``state`` is ``sent`` until the first ack; ``command`` is None for a job this collector only
    knows from its acks (sent by another tool). ``updated_at`` is when the last ack was received.
    """

    job_id: str
    device_id: str
    fleet: str
    kind: str
    state: str
    created_at: datetime
    model_name: str | None = None
    model_sha256: str | None = None
    reason: str | None = None
    run_id: str | None = None
    updated_at: datetime | None = None
    command: JobCommand | None = None


@dataclass(frozen=True)
class ModelRecord:
    """A model file kept for remote jobs (its content stays in the store: ``get_model``)."""

    sha256: str
    name: str
    size_bytes: int
    added_at: datetime


@dataclass(frozen=True)
class SeqGap:
    """``seq`` numbers missing between two stored results of one device (both ends inclusive)."""

    device_id: str
    fleet: str
    first_missing: int
    last_missing: int

    @property
    def missing(self) -> int:
        return self.last_missing - self.first_missing + 1


SUBMISSION_FIELDS = ("mlperf_round", "division", "submitter", "system", "accelerators", "figure",
                     "figure_unit", "url")


class CitedBaseline(BaseModel):
    """A published result, imported with ``edgemeter baselines import`` (one row, one citation).

    ``network`` names the network the way agents do (``ModelInfo.network``) so a cited row can match
    an edge run of the same network in another format or precision. ``source`` is required.
    """

    model_config = ConfigDict(extra="forbid")

    network: str
    hardware: str = Field(description="what ran it, in words")
    hardware_key: str | None = Field(None, description="hardware catalogue key, if any")
    role: Role = Role.DATACENTER
    scenario: Scenario
    precision: str | None = None
    batch: int | None = None
    throughput_sps: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    avg_power_w: float | None = None
    joules_per_inference: float | None = None
    macs: int | None = None
    source: str = Field(min_length=5, description="citation: publication, table, URL or report id")
    published: str | None = Field(None, description="date of the publication (YYYY-MM-DD)")
    notes: str | None = None
    # Where a benchmark suite's results repository is cited (MLPerf Inference): what identifies
    # the submission, the figure as published for the whole system, and the file at a commit.
    # throughput_sps (or latency) then holds the per-accelerator figure the comparison uses.
    mlperf_round: str | None = Field(None, description="results round, e.g. v4.0")
    division: str | None = Field(None, description="closed or open")
    submitter: str | None = None
    system: str | None = Field(None, description="system name as submitted")
    accelerators: int | None = Field(None, ge=1, description="accelerators in the submitted system")
    figure: float | None = Field(None, description="the result as published, for the whole system")
    figure_unit: str | None = Field(None, description="its unit, e.g. samples/s or ms (90th percentile)")
    url: str | None = Field(None, description="the results file at a pinned commit")

    @property
    def baseline_id(self) -> str:
        """Stable id, so importing the same row twice stores it once (an unset submission field
        is left out, so rows written before those fields existed keep their ids)."""
        data = self.model_dump(mode="json")
        for key in SUBMISSION_FIELDS:
            if data[key] is None:
                del data[key]
        body = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]
