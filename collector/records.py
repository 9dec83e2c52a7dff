"""What the collector keeps besides the results themselves: dead letters and cited baselines."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.schema import Role, Scenario


class DeadLetter(BaseModel):
    """A message the collector could not accept, kept with its raw bytes and the reason."""

    id: int | None = None
    received_at: datetime
    topic: str
    reason: str
    payload: bytes


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

    @property
    def baseline_id(self) -> str:
        """Stable id, so importing the same row twice stores it once."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]
