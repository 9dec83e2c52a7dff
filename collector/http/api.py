"""The JSON routes under ``/api`` and ``/models``: the contract the dashboard codes against.

Every error is ``{"error": "<one line>"}`` with a 4xx/5xx status. Times are ISO 8601 in UTC.
Blocking store reads run in FastAPI's thread pool (the routes are plain ``def``), so a slow query
never stalls the event loop that streams ``/api/events``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.types import Receive, Scope, Send

from collector.compare import ComparisonRow, CostSettings, cited_baselines, compare
from collector.compare.baselines import RUNS_PER_SERIES, compare_runs, measured_baselines
from collector.compare.matching import Baseline
from collector.http.detail import run_detail
from collector.http.fleet import SORT_KEYS, DeviceCache, ProgressBoard, device_object, select_devices, sort_and_filter
from collector.http.runs import BadCursor, RunQuery, decode_cursor, encode_cursor, list_runs
from collector.http.store import ReadStore
from collector.stores.base import ResultFilter, Store
from shared.capability import refusal, split
from shared.catalogue import Catalogue
from shared.errors import BrokerError
from shared.messages import JobCommand, JobSettings, ModelRef
from shared.schema import BenchmarkResult, Role
from shared.topics import TopicKind, Topics

__all__ = ["BETTER", "COMPARE_CHUNK_RUNS", "DOWNLOAD_RETRY_AFTER_S", "ApiContext", "CompareAnswer",
           "DownloadSlots", "JobRequest", "Publisher", "compare_answer", "compare_stream", "router"]

logger = logging.getLogger(__name__)

Publisher = Callable[[str, bytes], None]
"""Publishes one payload on a topic at QoS 1 and returns once the broker has it (raises
:class:`shared.errors.BrokerError` otherwise): the collector's own MQTT connection in ``serve``."""

DEVICE_RUNS = 50
DEVICE_JOBS = 20
COMPARE_CHUNK_RUNS = 200
"""Edge runs compared at a time when a compare streams every run (``runs_per_series=0``)."""
DOWNLOAD_RETRY_AFTER_S = 5
"""What a model download refused for want of a slot is told to wait."""

BETTER: dict[str, Literal["lower", "higher"]] = {
    "latency_p50_ms": "lower",
    "latency_p90_ms": "lower",
    "throughput_sps": "higher",
    "avg_power_w": "lower",
    "joules_per_inference": "lower",
    "inferences_per_joule": "higher",
    "macs_per_s": "higher",
    "ops_per_s": "higher",
    "utilisation": "higher",
    "cost_per_million_usd": "lower",
    "cloud_per_million_usd": "lower",
    "ratios.latency_p50": "lower",
    "ratios.latency_p90": "lower",
    "ratios.throughput": "higher",
    "ratios.joules_per_inference": "lower",
    "fidelity.top1_agreement": "higher",
    "fidelity.mae": "lower",
    "fidelity.cosine": "higher",
}
"""Which way is better for each metric of a compare row (``edge_metrics`` and
``baseline_metrics`` fields by name; ratios are edge / baseline)."""


@dataclass
class ApiContext:
    """What the routes share; one per app, on ``app.state.api``."""

    store: ReadStore
    publisher: Publisher
    catalogue: Catalogue
    progress: ProgressBoard
    devices: DeviceCache


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    return ctx


router = APIRouter()


# -- devices ------------------------------------------------------------------------------------


@router.get("/api/devices", summary="Every device: presence, board, job progress, latest result")
def get_devices(
    request: Request,
    fleet: str | None = None,
    status: Literal["online", "offline", "unknown"] | None = None,
    q: Annotated[str | None, Query(description="substring of id, board, runtime, model, fleet")] = None,
    sort: Annotated[str, Query(description=f"one of {', '.join(SORT_KEYS)}; '-' first: descending")]
    = "device_id",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    regressed: Annotated[bool, Query(description="only devices whose monitor p99 of the last 10 "
                                     "minutes is over 1.25 times its mean of the 24 hours "
                                     "before")] = False,
) -> dict[str, Any]:
    if sort.lstrip("-") not in SORT_KEYS:
        raise HTTPException(422, f"sort must be one of {', '.join(SORT_KEYS)} (prefix - to reverse)")
    offset = 0
    if cursor:
        try:
            values = decode_cursor("devices", cursor)
            offset = int(values[0])
        except (BadCursor, IndexError, TypeError, ValueError) as err:
            raise HTTPException(400, "cursor is not one this server gave out; start from the first "
                                "page") from err
    ctx = _ctx(request)
    devices = sort_and_filter(ctx.devices.objects(ctx.progress.snapshot(), fleet=fleet),
                              status=status, q=q, sort=sort)
    if regressed:
        ids = ctx.store.regressed_devices(now=datetime.now(timezone.utc))
        devices = [d for d in devices if d["device_id"] in ids]
    page = devices[offset: offset + limit]
    more = offset + limit < len(devices)
    return {"devices": page, "next_cursor": encode_cursor("devices", offset + limit) if more else None,
            "total": len(devices)}


@router.get("/api/devices/{device_id}", summary="One device with telemetry, runs, seq gaps, jobs")
def get_device(request: Request, device_id: str) -> dict[str, Any]:
    ctx = _ctx(request)
    row = ctx.devices.row(device_id)
    if row is None:
        raise HTTPException(404, f"no device {device_id!r}: it has not published a status, "
                            "telemetry or result to this collector")
    device = device_object(row, ctx.progress.snapshot().get(device_id))
    runs, _ = list_runs(ctx.store, RunQuery(device_id=device_id, limit=DEVICE_RUNS))
    device["telemetry"] = row.telemetry.model_dump(mode="json") if row.telemetry else None
    device["runs"] = runs
    device["gaps"] = [{"first_missing": g.first_missing, "last_missing": g.last_missing}
                      for g in ctx.store.seq_gaps(device_id=device_id)]
    device["jobs"] = [_plain(job) for job in ctx.store.list_jobs(device_id=device_id,
                                                                  limit=DEVICE_JOBS)]
    return device


# -- runs ---------------------------------------------------------------------------------------


@router.get("/api/runs", summary="Run summaries, newest first, filtered, one page at a time")
def get_runs(
    request: Request,
    device: str | None = None,
    fleet: str | None = None,
    model: Annotated[str | None, Query(description="file name, network or sha256")] = None,
    role: Role | None = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = RunQuery(device_id=device, fleet=fleet, model=model,
                     role=role.value if role else None, since=_aware(since, "since"),
                     until=_aware(until, "until"), limit=limit, cursor=cursor)
    try:
        runs, next_cursor = list_runs(_ctx(request).store, query)
    except BadCursor as err:
        raise HTTPException(400, str(err)) from err
    return {"runs": runs, "next_cursor": next_cursor}


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, f"{name} needs a time zone, e.g. 2026-01-31T12:00:00Z")
    return value


@router.get("/api/runs/{run_id}", summary="One result with its histogram, CDF and power trace")
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    ctx = _ctx(request)
    result = ctx.store.get_result(run_id)
    if result is None:  # a short id, as the results table prints it
        result = _by_short_id(ctx.store, run_id)
    if result is None:
        raise HTTPException(404, f"no run {run_id!r} in this collector's database")
    return run_detail(result, ctx.catalogue)


def _by_short_id(store: ReadStore, short: str) -> BenchmarkResult | None:
    from collector.http.short_ids import AmbiguousRunId, resolve_run_id

    try:
        full = resolve_run_id(store, short)
    except AmbiguousRunId as err:
        raise HTTPException(409, str(err)) from err
    return store.get_result(full) if full else None


class CompareAnswer(BaseModel):
    """``GET /api/compare``: the engine's rows, which way is better for each metric, each measured
    baseline's role by run_id, and the ``runs_per_series`` bound used."""

    model_config = ConfigDict(extra="forbid")

    rows: list[ComparisonRow]
    better: dict[str, Literal["lower", "higher"]]
    roles: dict[str, str] = Field(description="run_id -> datacenter or hpc")
    runs_per_series: int


def compare_answer(store: Store, catalogue: Catalogue, *, model: str | None = None,
                   device: str | None = None,
                   role: Literal["datacenter", "hpc", "cited"] | None = None,
                   runs_per_series: int = RUNS_PER_SERIES) -> bytes:
    """The JSON body of ``GET /api/compare`` (also what ``bench/store.py`` times): serialised by
    pydantic in one pass (dicts of every row that FastAPI then encoded took about 4x as long:
    41 against 9 ms for 765 rows)."""
    if runs_per_series == 0:
        return b"".join(compare_stream(store, catalogue, model=model, device=device, role=role))
    edges, measured = compare_runs(store, model=model, device=device, per_series=runs_per_series)
    baselines: list[Baseline] = []
    if role in (None, "datacenter", "hpc"):
        baselines += [b for b in measured if role is None or b.role.value == role]
    if role in (None, "cited"):
        baselines += [row for row, _ in cited_baselines(store, include_shipped=True)]
    rows = compare(edges, baselines, catalogue.entries, CostSettings())
    return CompareAnswer(rows=rows, better=BETTER,
                         roles={str(r.run_id): r.role.value for r in measured},
                         runs_per_series=runs_per_series).model_dump_json().encode()


def compare_stream(store: Store, catalogue: Catalogue, *, model: str | None = None,
                   device: str | None = None,
                   role: Literal["datacenter", "hpc", "cited"] | None = None,
                   chunk_runs: int = COMPARE_CHUNK_RUNS) -> Iterator[bytes]:
    """The body of ``GET /api/compare?runs_per_series=0``: every edge run (of ``device``, or of
    the fleet) against the baselines, in pieces. The edge runs are read from a streaming query and
    compared ``chunk_runs`` at a time, so memory holds the baselines and one chunk whatever the
    store's size. The baselines are read first, the same as every compare's: each hardware
    group's newest measured run per model and scenario among those sharing a model with the edge
    runs, and the cited rows."""
    measured: list[BenchmarkResult] = []
    if role in (None, "datacenter", "hpc"):
        names = _edge_model_names(store, model=model, device=device)
        if names:
            measured = [b for b in measured_baselines(store, representatives=True,
                                                      shares_model=names)
                        if role is None or b.role.value == role]
    baselines: list[Baseline] = list(measured)
    if role in (None, "cited"):
        baselines += [row for row, _ in cited_baselines(store, include_shipped=True)]
    settings = CostSettings()
    yield b'{"rows":['
    first = True
    chunk: list[BenchmarkResult] = []
    edges = store.iter_results(ResultFilter(model=model, device_id=device, role=Role.EDGE.value))
    try:
        for edge in edges:
            chunk.append(edge)
            if len(chunk) < chunk_runs:
                continue
            piece = _rows_json(compare(chunk, baselines, catalogue.entries, settings), first)
            first = first and not piece
            chunk = []
            if piece:
                yield piece
        if chunk:
            piece = _rows_json(compare(chunk, baselines, catalogue.entries, settings), first)
            if piece:
                yield piece
    finally:
        close = getattr(edges, "close", None)
        if close is not None:
            close()
    tail = CompareAnswer(rows=[], better=BETTER, roles={str(r.run_id): r.role.value
                                                        for r in measured}, runs_per_series=0)
    yield b"]," + tail.model_dump_json(exclude={"rows"}).encode()[1:]


def _rows_json(rows: list[ComparisonRow], first: bool) -> bytes:
    if not rows:
        return b""
    body = b",".join(row.model_dump_json().encode() for row in rows)
    return body if first else b"," + body


def _edge_model_names(store: Store, *, model: str | None, device: str | None) -> frozenset[str]:
    """Every model sha256 and network among the edge runs asked for (read from the per-series
    table, never from the runs themselves): what a baseline must share to match any of them."""
    representatives = store.list_results(ResultFilter(model=model, role=Role.EDGE.value,
                                                      newest_per_hardware=True))
    if device is not None:
        representatives = store.list_results(ResultFilter(model=model, device_id=device,
                                                          role=Role.EDGE.value, per_series=1))
    return frozenset({r.model.sha256 for r in representatives}
                     | {r.model.network for r in representatives if r.model.network})


@router.get("/api/compare", summary="Edge runs against datacenter, HPC and cited baselines",
            response_model=CompareAnswer)
def get_compare(
    request: Request,
    model: Annotated[str | None, Query(description="file name, network or sha256")] = None,
    device: Annotated[str | None, Query(
        description="edge device id: its newest runs_per_series runs per model and scenario "
        "(without it: each edge hardware group's newest run per model and scenario)")] = None,
    role: Annotated[Literal["datacenter", "hpc", "cited"] | None,
                    Query(description="only baselines of this kind")] = None,
    runs_per_series: Annotated[int, Query(
        ge=0, le=100_000, description="with device: that device's newest N runs per model and "
        f"scenario (default {RUNS_PER_SERIES}); 0: every edge run (of the device, or of the whole "
        "fleet), streamed in chunks, against the usual baselines (slow with many results)")]
        = RUNS_PER_SERIES,
) -> Response:
    """The rows of ``edgemeter compare --json`` (the same engine), and ``better``: which way is
    better for each metric. Baselines: each hardware group's newest datacenter and HPC run per
    model and scenario, stored cited rows and the shipped citations; edge runs: each hardware
    group's newest (with ``device``: that device's newest ``runs_per_series``, echoed in the
    answer). See :func:`collector.compare.baselines.compare_runs`. ``roles``: each measured
    baseline's role by run_id (datacenter or hpc)."""
    ctx = _ctx(request)
    if runs_per_series == 0:
        return StreamingResponse(compare_stream(ctx.store, ctx.catalogue, model=model,
                                                device=device, role=role),
                                 media_type="application/json")
    return Response(compare_answer(ctx.store, ctx.catalogue, model=model, device=device,
                                   role=role, runs_per_series=runs_per_series),
                    media_type="application/json")


# -- jobs and models ----------------------------------------------------------------------------


class JobRequest(BaseModel):
    """``POST /api/jobs``: which devices (ids, or a ``fleet run`` selector), which model, how."""

    model_config = ConfigDict(extra="forbid")

    devices: list[str] | None = Field(None, min_length=1, max_length=10_000)
    selector: str | None = Field(None, min_length=1, max_length=1000,
                                 description="ids or globs, fleet=NAME, board=TEXT; comma-separated")
    model: ModelRef
    settings: JobSettings = Field(default_factory=JobSettings)

    @model_validator(mode="after")
    def _one_target(self) -> JobRequest:
        if (self.devices is None) == (self.selector is None):
            raise ValueError("give either devices (a list of ids) or selector, not both")
        return self


@router.get("/api/jobs", summary="Jobs sent to devices, newest first, with their last state")
def get_jobs(request: Request, device: str | None = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    jobs = _ctx(request).store.list_jobs(device_id=device, limit=limit)
    return {"jobs": [_plain(job) for job in jobs]}


@router.post("/api/jobs", summary="Send a benchmark job to devices (needs the bearer token)")
def post_jobs(request: Request, body: JobRequest) -> dict[str, Any]:
    """Publishes one :class:`shared.messages.JobCommand` per device on its ``cmd`` topic (QoS 1)
    and records it; returns ``{"job_ids": [...], "jobs": [{"job_id", "device_id", "fleet"}],
    "skipped": [...], "offline": [...]}``. Unknown device ids are refused (404), and a model the
    collector does not keep (422), before anything is sent; devices whose birth says they cannot
    run the model are skipped (``skipped``: device_id, fleet, reason), and when none can the
    request is refused (422) naming each device and what it lacks; ``offline`` lists the chosen
    devices not online now (their job waits in the broker until they connect)."""
    ctx = _ctx(request)
    if ctx.store.model_record(body.model.sha256) is None:
        raise HTTPException(422, f"model.sha256 {body.model.sha256[:12]}... is not a model this "
                            "collector keeps, so no device could fetch it: `edgemeter models add "
                            "FILE --db URL` first")
    known = ctx.store.list_devices()  # not the cache: a device that just appeared counts
    if body.selector is not None:
        chosen = select_devices(known, body.selector)
        if not chosen:
            raise HTTPException(404, f"no device matches the selector {body.selector!r}")
    else:
        by_id = {row.device_id: row for row in known}
        wanted = list(dict.fromkeys(body.devices or []))
        unknown = [d for d in wanted if d not in by_id]
        if unknown:
            raise HTTPException(404, f"unknown device(s): {', '.join(unknown[:10])}"
                                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
        chosen = [by_id[d] for d in wanted]
    chosen, skipped = split(chosen, body.model.name, body.settings, lambda row: row.manifest)
    if not chosen:
        raise HTTPException(422, refusal(body.model.name, [(row.device_id, why) for row, why in skipped]))
    sent: list[dict[str, str]] = []
    for row in chosen:
        job = JobCommand(model=body.model, settings=body.settings)
        topic = Topics.build(row.fleet, row.device_id, TopicKind.CMD)
        try:
            ctx.publisher(topic, job.model_dump_json(exclude_none=True).encode())
        except BrokerError as err:
            raise HTTPException(503, f"job not sent to {row.device_id} ({len(sent)} sent before): "
                                f"{err}") from err
        ctx.store.record_job(job, device_id=row.device_id, fleet=row.fleet)
        logger.info("job %s sent to %s/%s", job.job_id, row.fleet, row.device_id)
        sent.append({"job_id": job.job_id, "device_id": row.device_id, "fleet": row.fleet})
    offline = [row.device_id for row in chosen if row.status != "online"]
    if offline:
        logger.warning("job sent to %d device(s) not online (it waits in the broker until they "
                       "connect): %s", len(offline), ", ".join(offline[:10]))
    return {"job_ids": [s["job_id"] for s in sent], "jobs": sent,
            "skipped": [{"device_id": row.device_id, "fleet": row.fleet, "reason": why} for row, why in skipped],
            "offline": offline}


@router.get("/api/models", summary="Models the collector keeps for jobs (sha256, name, size)")
def get_models(request: Request) -> dict[str, Any]:
    """``{"models": [{"sha256", "name", "size_bytes", "added_at"}]}``, as ``edgemeter models ls``."""
    return {"models": [_plain(model) for model in _ctx(request).store.list_models()]}


class DownloadSlots:
    """How many model downloads run at once, at most ``limit`` (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


class _Download(StreamingResponse):
    """A model's bytes as the store reads them, chunk by chunk; the download slot and the read
    transaction are given back however the response ends."""

    def __init__(self, chunks: Iterator[bytes], headers: dict[str, str],
                 slots: DownloadSlots) -> None:
        super().__init__(chunks, media_type="application/octet-stream", headers=headers)
        self._chunks = chunks
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.give_back()
            close = getattr(self._chunks, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # still running in a worker: it ends there
                    close()


@router.get("/models/{sha256}", summary="A model file by content (agents fetch jobs' models here)",
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def get_model(request: Request, sha256: str) -> Response:
    """The model's bytes, streamed (never whole in memory). Off loopback it needs the models
    token (``[http] models_token``); at most ``[http] max_downloads`` run at once (503 with
    ``Retry-After`` beyond)."""
    ctx = _ctx(request)
    record = ctx.store.model_record(sha256.lower())
    if record is None:
        raise HTTPException(404, f"no model {sha256[:64]!r} here: "
                            "`edgemeter models add FILE --db URL` stores one")
    slots: DownloadSlots = request.app.state.downloads
    if not slots.take():
        return JSONResponse({"error": f"{slots.limit} model downloads are running, the most this "
                             "collector serves at once ([http] max_downloads); try again later"},
                            status_code=503,
                            headers={"Retry-After": str(DOWNLOAD_RETRY_AFTER_S)})
    safe = "".join(c for c in record.name if c.isalnum() or c in "._-") or "model"
    return _Download(ctx.store.read_model(record.sha256), slots=slots, headers={
        "Content-Disposition": f'attachment; filename="{safe}"',
        "Content-Length": str(record.size_bytes)})


def _plain(record: Any) -> dict[str, Any]:
    """A store record (dataclass or pydantic model) as JSON-ready data."""
    import dataclasses

    from fastapi.encoders import jsonable_encoder

    if isinstance(record, BaseModel):
        return dict(record.model_dump(mode="json"))
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        data = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
        return dict(jsonable_encoder(data))
    return dict(jsonable_encoder(record))

