"""The collector's ASGI app: JSON API, live events, Prometheus metrics and the dashboard.

:func:`create_app` builds it from what ``collector serve`` already has (the event bus, the metrics
registry, the MQTT connection as a publisher) plus a store opened for reading. Routes:

==========================  ==================================================================
``GET /api/devices``        every device (filters, sort, pages); :mod:`collector.http.api`
``GET /api/devices/{id}``   one device with telemetry, runs, seq gaps and jobs
``GET /api/runs``           run summaries, newest first, keyset pages
``GET /api/runs/{run_id}``  one result with histogram, CDF, power trace, catalogue peak
``GET /api/compare``        the compare engine's rows, with which way is better per metric
``GET|POST /api/jobs``      jobs sent to devices; POST sends one (token needed)
``GET /api/models``         models kept for jobs (sha256, name, size)
``GET /api/devices/{id}/telemetry``, ``.../monitor``, ``GET /api/alerts``: history, monitor
                            windows and alerts; :mod:`collector.http.monitoring`
``GET /models/{sha256}``    model bytes for agents' jobs
``GET /api/events``         Server-Sent Events from the bus; :mod:`collector.http.live`
``GET /metrics``            Prometheus text
``GET /``, ``/static/...``  the dashboard (``collector/http/static/``)
``GET /openapi.json``       the OpenAPI schema (no ``/docs``: Swagger UI would load from a CDN)
==========================  ==================================================================

Access rules: :mod:`collector.http.auth`. Errors are ``{"error": "<one line>"}``, with the statuses
the OpenAPI document lists for every route (:data:`ERROR_RESPONSES`). A request whose ``Host``
header names another server gets 400 (:class:`collector.http.auth.HostCheck`). Limits (503 with
``Retry-After`` beyond): ``[http] max_event_readers`` open event streams, ``[http] max_downloads``
model downloads at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector.config import HttpSettings
from collector.errors import StoreError
from collector.events import EventBus
from collector.http import api, live, monitoring
from collector.http.api import ApiContext, DownloadSlots, Publisher
from collector.http.auth import AccessPolicy, HostCheck, is_loopback, split_listen
from collector.http.fleet import DEVICE_CACHE_S, DeviceCache, ProgressBoard
from collector.http.live import ReaderSlots
from collector.http.store import ReadStore
from collector.metrics import CollectorMetrics
from collector.monitoring_metrics import register_device_metrics
from shared.catalogue import Catalogue, load_catalogue

__all__ = ["ERROR_RESPONSES", "STATIC_DIR", "ErrorAnswer", "create_app"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")


class ErrorAnswer(BaseModel):
    """Every refusal and failure: one line saying what went wrong and what to do."""

    error: str


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait (a limit was reached)",
                                "schema": {"type": "integer"}}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorAnswer, "description": "bad request: a Host header naming another "
          "server, a cursor this server did not give out"},
    401: {"model": ErrorAnswer, "description": "a bearer token is needed, or the one given is "
          "wrong"},
    403: {"model": ErrorAnswer, "description": "no token is configured for this request"},
    404: {"model": ErrorAnswer, "description": "no such device, run, model or route"},
    422: {"model": ErrorAnswer, "description": "a parameter or the body is invalid"},
    503: {"model": ErrorAnswer, "headers": _RETRY_AFTER,
          "description": "the database is unavailable, the broker refused a job, or a limit "
          "(event streams, model downloads) is reached"},
}
"""The error answers every route may give, as the OpenAPI document lists them."""


def create_app(
    read_store: ReadStore,
    *,
    events: EventBus,
    metrics: CollectorMetrics,
    publisher: Publisher,
    settings: HttpSettings,
    catalogue: Catalogue | None = None,
    static_dir: Path = STATIC_DIR,
    device_cache_s: float = DEVICE_CACHE_S,
) -> FastAPI:
    """The app; it does not own ``read_store`` (the caller closes it after the server stops).

    ``device_cache_s``: how old the device list may be (:class:`collector.http.fleet.DeviceCache`).
    """
    host, _ = split_listen(settings.listen)
    token = settings.token.get_secret_value() if settings.token else None
    models_token = settings.models_token.get_secret_value() if settings.models_token else None
    policy = AccessPolicy(loopback=is_loopback(host), token=token, models_token=models_token)
    hosts = HostCheck(host, settings.allowed_hosts)
    progress = ProgressBoard(events)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        stopping.set()
        progress.close()

    app = FastAPI(title="edgemeter collector", version=_version(), docs_url=None, redoc_url=None,
                  lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="The fleet's devices, runs, comparisons and jobs; live events as "
                  "Server-Sent Events; Prometheus metrics at /metrics.")
    stopping = threading.Event()
    app.state.api = ApiContext(store=read_store, publisher=publisher,
                               catalogue=catalogue or load_catalogue(), progress=progress,
                               devices=DeviceCache(read_store, device_cache_s))
    app.state.events = events
    app.state.metrics = metrics
    app.state.stopping = stopping
    app.state.policy = policy
    app.state.event_readers = ReaderSlots(settings.max_event_readers)
    app.state.downloads = DownloadSlots(settings.max_downloads)
    app.include_router(api.router)
    app.include_router(live.router)
    app.include_router(monitoring.router)  # telemetry history, monitor windows, alerts
    register_device_metrics(metrics.registry, read_store)  # per-device gauges on /metrics

    @app.middleware("http")
    async def check_access(request: Request,
                           call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not hosts.allows(request.headers.get("host")):
            return JSONResponse({"error": "this server is not reached by that name (Host header): "
                                 "use its address, or add the name to [http] allowed_hosts"},
                                status_code=400)
        refusal = policy.refusal(request.method, request.url.path,
                                 request.headers.get("authorization"),
                                 request.query_params.get("token"))
        if refusal is not None:
            status, reason = refusal
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"error": reason}, status_code=status, headers=headers)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return JSONResponse({"error": f"{where or 'request'}: {first.get('msg')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.error("HTTP API: %s %s failed", request.method, request.url.path, exc_info=err)
        return JSONResponse({"error": f"internal error ({type(err).__name__}); the collector's "
                             "log has the details"}, status_code=500)

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, err: StoreError) -> JSONResponse:
        logger.warning("HTTP API: %s", err)
        return JSONResponse({"error": str(err)}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
    def get_metrics() -> Response:
        return _metrics_response(metrics)

    @app.get("/", include_in_schema=False, response_model=None)
    def index() -> Any:
        page = static_dir / "index.html"
        if not page.is_file():
            return JSONResponse({"error": f"the dashboard is not installed ({page} is missing); "
                                 "the API is under /api and described at /openapi.json"},
                                status_code=404)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static_dir, check_dir=False), name="static")
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgemeter")
    except PackageNotFoundError:
        return "0.0.0+source"


def _metrics_response(metrics: CollectorMetrics) -> Response:
    """The service's registry as Prometheus text (it keeps ``devices_online`` itself)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
