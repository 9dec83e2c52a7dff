"""Monitor windows and telemetry for tests: valid by construction, with the fields a test cares
about as keywords."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from shared.messages import Telemetry
from shared.monitoring import MonitorWindow, window_latency
from shared.schema import LatencyHistogram

T0 = datetime(2026, 3, 15, 11, 0, tzinfo=timezone.utc)


def make_window(latencies_ms: Sequence[float] | np.ndarray = (2.0, 2.5, 3.0), *,
                start: datetime = T0, length_s: float = 10.0, device_id: str = "pi-01",
                fleet: str = "default", name: str = "vww", **extra: Any) -> MonitorWindow:
    values = np.asarray(latencies_ms, dtype=float)
    histogram = LatencyHistogram.of(values * 1e6) if len(values) else None
    fields: dict[str, Any] = dict(
        device_id=device_id, fleet=fleet, name=name, start=start,
        end=start + timedelta(seconds=length_s), queries=len(values), latencies=histogram,
        latency_ms=window_latency(histogram), throughput_sps=len(values) / length_s)
    fields.update(extra)
    return MonitorWindow.model_validate(fields)


def make_telemetry(sent_at: datetime, *, device_id: str = "pi-01", fleet: str = "default",
                   **extra: Any) -> Telemetry:
    fields: dict[str, Any] = dict(device_id=device_id, fleet=fleet, sent_at=sent_at, uptime_s=1.0)
    fields.update(extra)
    return Telemetry.model_validate(fields)
