"""Run listings for the API: keyset pages over ``results``, newest first, as small summaries.

A page is ``ORDER BY created_at DESC, id DESC LIMIT n + 1`` after the row-value condition
``(created_at, id) < (cursor)``, which the ``(created_at, id)`` index answers without counting or
skipping rows, so page 1,000 costs what page 1 costs, and a result stored while someone pages
never shifts or repeats a row. The cursor is opaque to clients (:func:`encode_cursor`).

Summaries are read from the stored wire JSON with :func:`json.loads` (no schema validation: the
store only holds validated results), which keeps a page of 500 cheap.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, literal, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from collector.errors import StoreError
from collector.http.store import ReadStore
from collector.stores.columns import UtcTimestamp
from collector.stores.tables import results

__all__ = ["BadCursor", "RunQuery", "decode_cursor", "encode_cursor", "list_runs", "summary"]


class BadCursor(ValueError):
    """A cursor this server did not make (or a different kind of listing's)."""


@dataclass(frozen=True)
class RunQuery:
    device_id: str | None = None
    fleet: str | None = None
    model: str | None = None
    """model file name, network or sha256"""
    role: str | None = None
    since: datetime | None = None
    """created at or after"""
    until: datetime | None = None
    """created before"""
    limit: int = 50
    cursor: str | None = None


def encode_cursor(kind: str, *values: Any) -> str:
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError) as err:
        raise BadCursor("cursor is not one this server gave out; start from the first page") from err
    if not isinstance(values, list) or not values or values[0] != kind:
        raise BadCursor("cursor is not one this server gave out; start from the first page")
    return values[1:]


def _where(query: RunQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.model:
        where.append((results.c.model_name == query.model) | (results.c.network == query.model)
                     | (results.c.model_sha256 == query.model))
    for column, value in (("device_id", query.device_id), ("fleet", query.fleet),
                          ("role", query.role)):
        if value:
            where.append(results.c[column] == value)
    if query.since is not None:
        where.append(results.c.created_at >= query.since)
    if query.until is not None:
        where.append(results.c.created_at < query.until)
    if query.cursor:
        values = decode_cursor("runs", query.cursor)
        try:
            created_at = datetime.fromisoformat(values[0])
            row_id = int(values[1])
        except (IndexError, TypeError, ValueError) as err:
            raise BadCursor("cursor is not one this server gave out; start from the first page") \
                from err
        where.append(tuple_(results.c.created_at, results.c.id)
                     < tuple_(literal(created_at, UtcTimestamp()), literal(row_id)))
    return where


def _statement(query: RunQuery) -> Select[Any]:
    return (
        select(results.c.id, results.c.created_at, results.c.result)
        .where(*_where(query))
        .order_by(results.c.created_at.desc(), results.c.id.desc())
        .limit(query.limit + 1)
    )


def list_runs(store: ReadStore, query: RunQuery) -> tuple[list[dict[str, Any]], str | None]:
    """One page of run summaries, newest first, and the cursor of the next page (or ``None``)."""
    statement = _statement(query)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(statement).all()
    except SQLAlchemyError as err:
        raise StoreError(f"listing runs in {store.url} failed: {str(err).splitlines()[0]}") from err
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    runs = [summary(json.loads(row.result)) for row in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        created = last.created_at.astimezone(timezone.utc).isoformat()
        next_cursor = encode_cursor("runs", created, int(last.id))
    return runs, next_cursor


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The run summary of one wire result (a JSON object), as ``/api/runs`` lists it."""
    model = result.get("model") or {}
    latency = result.get("latency_ms") or {}
    energy = result.get("energy") or {}
    spec = (result.get("spec") or {}).get("effective") or {}
    return {
        "run_id": result.get("run_id"),
        "device_id": result.get("device_id"),
        "fleet": result.get("fleet"),
        "role": result.get("role"),
        "created_at": result.get("created_at"),
        "model_name": model.get("name"),
        "network": model.get("network"),
        "scenario": spec.get("scenario", "single-stream"),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "throughput_sps": result.get("throughput_sps"),
        "joules_per_inference": energy.get("joules_per_inference"),
        "avg_power_w": energy.get("avg_power_w"),
        "energy_estimated": energy.get("estimated") if energy else None,
        "valid": (result.get("validity") or {}).get("valid"),
    }
