"""The monitoring routes: a device's telemetry over time, its monitor windows, and alerts.

==============================================  ===================================================
``GET /api/devices/{id}/telemetry``             ``{"points": [...]}``: one point per ``step``
                                                (aligned to multiples of it), every series averaged
                                                over its bucket, ``null`` where nothing was measured
``GET /api/devices/{id}/monitor``               ``{"windows": [...]}``: the device's monitor
                                                windows (``name`` picks one monitor); with ``step``
                                                the windows of each step are merged exactly
                                                (histograms add)
``GET /api/alerts``                             ``{"alerts": [...]}``, newest first (``state``:
                                                ``firing`` or ``resolved``; ``device``)
``GET /api/fleet/trends?devices=a,b``            per device: the p99 of its monitor windows over
                                                the last hour (30 points), and ``regressed``: the
                                                last 10 minutes' mean p99 above 1.25 times the
                                                24 hours' before
==============================================  ===================================================

``since`` and ``until`` are ISO 8601 times (a time without a zone is UTC) or an age before now:
``90s``, ``15m``, ``24h``, ``7d``. Defaults: the last hour, and a ``step`` that gives at most
:data:`DEFAULT_POINTS` points (10 s at least; whole minutes past one minute). Plain ``def`` routes:
the store reads run in FastAPI's thread pool.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from collector.stores.base import Store
from collector.stores.history import MAX_POINTS, iter_window_spans
from collector.windows import window_json
from shared.monitoring import MonitorWindow, merge_windows

__all__ = ["DEFAULT_POINTS", "parse_time", "router"]

router = APIRouter()

MAX_TREND_DEVICES = 200
"""``/api/fleet/trends`` answers for one page of the fleet at a time."""
DEFAULT_POINTS = 360
"""A chart's default resolution: the step that gives about this many points."""
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_time(value: str | None, *, default: datetime, now: datetime, name: str) -> datetime:
    """An ISO 8601 time or an age before ``now`` (``15m``, ``24h``, ``7d``); 400 otherwise."""
    if value is None or value == "":
        return default
    age = _AGE.match(value.strip())
    if age:
        return now - timedelta(seconds=float(age.group(1)) * _UNIT_S[age.group(2)])
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}: {value[:40]!r} is neither an ISO 8601 time nor an "
                            "age such as 15m, 24h or 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _span(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    now = datetime.now(timezone.utc)
    end = parse_time(until, default=now, now=now, name="until")
    start = parse_time(since, default=end - timedelta(hours=1), now=now, name="since")
    if start >= end:
        raise HTTPException(400, "since must be before until")
    return start, end


def default_step_s(start: datetime, end: datetime) -> int:
    """At most :data:`DEFAULT_POINTS` points, 10 s at least, whole minutes past a minute."""
    step = max(10, math.ceil((end - start).total_seconds() / DEFAULT_POINTS))
    return step if step < 60 else math.ceil(step / 60) * 60


def _store(request: Request) -> Store:
    store: Store = request.app.state.api.store
    return store


@router.get("/api/devices/{device_id}/telemetry",
            summary="A device's telemetry over time: aligned points, one per step")
def get_telemetry(request: Request, device_id: str,
                  since: Annotated[str | None, Query(description="ISO time or age (24h)")] = None,
                  until: Annotated[str | None, Query(description="ISO time or age")] = None,
                  step: Annotated[int | None, Query(ge=1, le=86_400 * 31,
                                                    description="seconds per point")] = None,
                  ) -> dict[str, Any]:
    start, end = _span(since, until)
    step_s = step or default_step_s(start, end)
    try:
        points = _store(request).telemetry_points(device_id, since=start, until=end, step_s=step_s)
    except ValueError as err:
        raise HTTPException(400, f"{err} (at most {MAX_POINTS} points)") from None
    return {"device_id": device_id, "since": start.isoformat(), "until": end.isoformat(),
            "step_s": step_s if step_s < 60 else math.ceil(step_s / 60) * 60, "points": points}


@router.get("/api/devices/{device_id}/monitor",
            summary="A device's monitor windows (merged per step when step is given)")
def get_monitor(request: Request, device_id: str,
                since: Annotated[str | None, Query(description="ISO time or age (24h)")] = None,
                until: Annotated[str | None, Query(description="ISO time or age")] = None,
                name: Annotated[str | None, Query(max_length=128,
                                                  description="one monitor's windows")] = None,
                step: Annotated[int | None, Query(ge=1, le=86_400 * 31, description="merge the "
                                                  "windows of each step (seconds)")] = None,
                histograms: Annotated[bool, Query(description="include each window's latency "
                                                  "histogram")] = True,
                ) -> dict[str, Any]:
    start, end = _span(since, until)
    windows: list[MonitorWindow] = _store(request).list_windows(device_id, since=start,
                                                                until=end, name=name)
    if step is not None:
        merged = []
        by_name: dict[str, list[MonitorWindow]] = {}
        for window in windows:
            by_name.setdefault(window.name, []).append(window)
        for group in by_name.values():
            merged += [merge_windows(span) for span in iter_window_spans(group, step)]
        windows = sorted(merged, key=lambda w: (w.start, w.name))
    out = []
    for window in windows:
        item = window_json(window)
        if histograms and window.latencies is not None:
            item["latencies"] = window.latencies.model_dump()
        out.append(item)
    return {"device_id": device_id, "since": start.isoformat(), "until": end.isoformat(),
            "windows": out}


@router.get("/api/fleet/trends",
            summary="Per device: p99 sparkline of the last hour and whether it regressed")
def get_trends(request: Request,
               devices: Annotated[str, Query(max_length=20_000, description="comma-separated "
                                             "device ids (at most 200)")]) -> dict[str, Any]:
    ids = [d for d in (part.strip() for part in devices.split(",")) if d]
    if len(ids) > MAX_TREND_DEVICES:
        raise HTTPException(400, f"{len(ids)} devices asked for; at most {MAX_TREND_DEVICES}")
    now = datetime.now(timezone.utc)
    trends = _store(request).window_trends(ids, now=now)
    return {"now": now.isoformat(), "span_s": 3600, "devices": trends}


@router.get("/api/alerts", summary="Alerts, newest first: firing or resolved")
def get_alerts(request: Request,
               state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
               device: Annotated[str | None, Query(max_length=128)] = None,
               limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
    records = _store(request).list_alerts(state=state, device_id=device, limit=limit)
    return {"alerts": [record.to_json() for record in records]}
