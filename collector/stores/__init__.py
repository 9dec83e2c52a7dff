"""Results stores: one public surface over the SQLite and PostgreSQL implementations.

:func:`open_store` picks the implementation by URL scheme and imports only its driver
(``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``postgresql://user@host/db``).

The helpers below (:func:`result_row`, :func:`filter_sql`, :func:`utc_text`) hold what both SQL
implementations share, so the two stay one logical schema; they are not meant for other callers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from collector.stores.base import STORES, ResultFilter, Store, open_store
from shared.schema import BenchmarkResult

__all__ = ["STORES", "ResultFilter", "Store", "open_store"]

#: The indexed columns of ``results``, in insert order (``id`` is generated).
RESULT_COLUMNS = (
    "run_id",
    "device_id",
    "fleet",
    "role",
    "created_at",
    "model_name",
    "model_sha256",
    "network",
    "scenario",
    "seq",
    "received_at",
    "topic",
    "result",
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_text(value: datetime) -> str:
    """Fixed-width ISO 8601 in UTC (``0001-01-01T00:00:00.000000+00:00``), so text sorts as time."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def result_row(
    result: BenchmarkResult,
    topic: str | None,
    received_at: datetime,
    time_value: Callable[[datetime], Any],
) -> tuple[Any, ...]:
    """The values of :data:`RESULT_COLUMNS` for one result; ``time_value`` adapts datetimes."""
    return (
        str(result.run_id),
        result.device_id,
        result.fleet,
        result.role.value,
        time_value(result.created_at),
        result.model.name,
        result.model.sha256,
        result.model.network,
        result.spec.effective.scenario.value,
        result.seq,
        time_value(received_at),
        topic,
        result.model_dump_json(),
    )


def filter_sql(flt: ResultFilter | None, param: str) -> tuple[str, list[Any]]:
    """``WHERE`` clause (possibly empty) and its parameters; ``param`` is ``?`` or ``%s``."""
    if flt is None:
        return "", []
    clauses: list[str] = []
    args: list[Any] = []
    if flt.model:
        clauses.append(f"(model_name = {param} OR network = {param} OR model_sha256 = {param})")
        args += [flt.model, flt.model, flt.model]
    for column, value in (("device_id", flt.device_id), ("role", flt.role), ("fleet", flt.fleet)):
        if value:
            clauses.append(f"{column} = {param}")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def newest_first_limited(
    select: str, order: str, limit: int | None, param: str
) -> tuple[str, list[Any]]:
    """Wrap ``select`` so ``limit`` keeps the newest rows and they still come back oldest first."""
    if limit is None:
        return f"{select} ORDER BY {order}", []
    desc = ", ".join(f"{col.strip()} DESC" for col in order.split(","))
    return (
        f"SELECT * FROM ({select} ORDER BY {desc} LIMIT {param}) AS newest ORDER BY {order}",
        [max(int(limit), 0)],
    )
