"""The Store interface the collector's commands and service use, and the registry that opens one.

A store keeps benchmark results (each ``run_id`` once: MQTT QoS 1 may deliver a message twice),
dead letters, and cited baselines. One implementation, :class:`collector.stores.sql.SqlStore`
(SQLAlchemy Core), serves every registered URL scheme: ``sqlite:///path.db``,
``postgresql://...`` and ``postgres://...``. It needs the ``collector`` extra (SQLAlchemy, Alembic;
psycopg for PostgreSQL), imported only when a store is opened, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from collector.records import CitedBaseline, DeadLetter, DeviceRecord, JobRecord, ModelRecord, SeqGap
from shared.errors import ConfigError, require_module
from shared.messages import JobAck, JobCommand, Status, Telemetry
from shared.monitoring import MonitorWindow
from shared.plugins import load_plugin
from shared.schema import BenchmarkResult

if TYPE_CHECKING:
    from collector.monitoring_settings import HistoryRetention
    from collector.stores.history import AlertRecord, HistoryPruneOutcome
    from collector.stores.partitions import PruneOutcome
    from collector.stores.schema import SchemaChange


@dataclass(frozen=True)
class ResultFilter:
    model: str | None = None
    """model name, network or sha256"""
    device_id: str | None = None
    role: str | None = None
    roles: frozenset[str] | None = None
    """keep only results of one of these roles (with ``role``: both must hold)"""
    fleet: str | None = None
    limit: int | None = None
    """keep only the newest ``limit`` results; they still come back oldest first"""
    per_series: int | None = None
    """keep only the newest ``per_series`` results of each series: one device's runs of one model
    (sha256) in one scenario (applied before ``limit``); how a compare of one device bounds its
    runs"""
    shares_model: frozenset[str] | None = None
    """keep only results whose model sha256 or network is one of these (a compare baseline
    matches an edge run by either)"""
    newest_per_hardware: bool = False
    """keep one result per hardware group, role, model (sha256) and scenario: the newest of the
    devices that share a ``device.hardware_key`` (a device without one is a group of its own),
    among the series the other fields keep (then ``limit``; not with ``per_series``). Read from
    the store's per-series table, so its cost follows the number of series, not of results; how
    ``compare`` picks its representative runs"""

    def __post_init__(self) -> None:
        if self.newest_per_hardware and self.per_series is not None:
            raise ValueError("newest_per_hardware and per_series cannot be combined")


@runtime_checkable
class Store(Protocol):
    url: str
    """the database URL, any password masked (for messages)"""

    def migrate(self) -> SchemaChange:
        """Create or upgrade the schema (Alembic revisions); a no-op once current."""

    def add_results(
        self, results: Sequence[BenchmarkResult], *, topics: Sequence[str] | None = None,
        payloads: Sequence[bytes] | None = None,
    ) -> int:
        """Store results in one transaction; returns how many were new (a known run_id is skipped).

        Only new results move a device's latest result and its series. A result whose run_id is
        known with other content (another device, a changed measurement; ``replayed`` aside) is
        refused: it becomes a dead letter with the reason "conflicting duplicate of run_id ..."
        in the same transaction, and the first one is kept.

        ``topics``, when given, holds the MQTT topic each result arrived on (same order).
        ``payloads``, when given, holds each result's JSON exactly as received (UTF-8, already
        validated into ``results``), stored as the result's document instead of serialising the
        model again. When this returns, the batch is committed: the collector acknowledges the
        messages to the broker.
        """

    def add_dead_letter(self, topic: str, reason: str, payload: bytes, *,
                        device_id: str | None = None, retained: bool = False) -> None:
        """Keep a rejected message: at most its first 64 KiB, with its full size and sha256; one
        row per ``(device_id, sha256)`` whose repeats bump ``count`` and ``last_seen`` (a
        ``retained`` message already stored is not counted again)."""

    def list_results(self, flt: ResultFilter | None = None) -> list[BenchmarkResult]:
        """Results, oldest first (with ``flt.limit``: the newest N, still oldest first)."""

    def iter_results(self, flt: ResultFilter | None = None) -> Iterator[BenchmarkResult]:
        """The same results as :meth:`list_results`, streamed from the database in batches."""

    def get_result(self, run_id: str) -> BenchmarkResult | None: ...

    def list_dead_letters(self, limit: int | None = None, *,
                          reason: str | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (with ``limit``: the newest N, still oldest first)."""

    def get_dead_letter(self, letter_id: int) -> DeadLetter | None: ...

    def count_dead_letters(self) -> list[tuple[str, int, int]]:
        """``(reason, rows, messages)`` per reason, most messages first."""

    def delete_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        """Delete these dead letters (None: all); returns how many went."""

    # -- devices, jobs, models, seq gaps ----------------------------------------------------

    def record_status(self, status: Status, received_at: datetime) -> bool:
        """Apply a birth/death that wins (:func:`shared.presence.status_wins`); True when the
        device's presence changed."""

    def record_telemetry(self, telemetry: Telemetry, received_at: datetime) -> None:
        """Keep the device's newest telemetry and move ``last_seen``; creates unknown devices."""

    def add_windows(self, windows: Sequence[MonitorWindow], *,
                    payloads: Sequence[bytes] | None = None) -> int:
        """Keep each monitor window once (by ``window_id``), in one transaction; how many were new."""

    def list_devices(self, *, fleet: str | None = None) -> list[DeviceRecord]:
        """Every device (of ``fleet``), by device_id, with its newest result's figures."""

    def record_job(self, job: JobCommand, *, device_id: str, fleet: str) -> None: ...

    def record_ack(self, ack: JobAck, received_at: datetime) -> None:
        """Update the job's state, reason and run_id (an older ack changes nothing)."""

    def list_jobs(self, *, device_id: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs, newest first."""

    def add_model(self, name: str, content: bytes) -> str:
        """Keep a model file by content; returns its sha256 (idempotent)."""

    def get_model(self, sha256: str) -> tuple[str, bytes] | None: ...

    def model_record(self, sha256: str) -> ModelRecord | None:
        """A stored model's name and size, without its content (None when not stored)."""

    def read_model(self, sha256: str, chunk_bytes: int = ...) -> Iterator[bytes]:
        """A stored model's content in chunks, never whole in memory (nothing when not stored)."""

    def list_models(self) -> list[ModelRecord]: ...

    def seq_gaps(self, *, device_id: str | None = None) -> list[SeqGap]:
        """Missing ``seq`` ranges between each device's stored results."""

    def prune(self, *, older_than_days: float) -> PruneOutcome:
        """Remove results created more than ``older_than_days`` ago (PostgreSQL: whole months)."""

    def add_cited_baselines(self, rows: Sequence[CitedBaseline]) -> int:
        """Store cited rows; returns how many were new (same content = same row)."""

    def list_cited_baselines(self) -> list[CitedBaseline]: ...

    # -- history: telemetry over time, monitor windows, alerts (collector.stores.history) -------

    def telemetry_points(self, device_id: str, *, since: datetime, until: datetime,
                         step_s: int) -> list[dict[str, Any]]:
        """One aligned point per ``step_s`` from ``since`` to ``until``; ValueError for a step
        under 1 s or too many points."""

    def list_windows(self, device_id: str, *, since: datetime, until: datetime,
                     name: str | None = None, limit: int = ...) -> list[MonitorWindow]:
        """A device's windows overlapping (``since``, ``until``), oldest first."""

    def newest_windows(self) -> dict[tuple[str, str], tuple[datetime, str]]:
        """(device_id, monitor name) -> (its newest window's end, fleet)."""

    def latest_window_figures(self) -> list[dict[str, Any]]:
        """The newest window of each (device, monitor): its headline figures."""

    def windows_after(self, after_id: int | None, *, limit: int = ...
                      ) -> tuple[int, list[MonitorWindow]]:
        """Windows stored after row ``after_id`` and the row to read on from (None: from now)."""

    def window_figures(self, since: datetime) -> list[dict[str, Any]]:
        """Each window's headline figures ending after ``since``, oldest first."""

    def window_throughputs(self, device_ids: Sequence[str], *, since: datetime,
                           until: datetime) -> dict[tuple[str, str], list[float]]:
        """(device_id, monitor name) -> the throughput of each window that ended in the span."""

    def window_trends(self, device_ids: Sequence[str], *, now: datetime, points: int = ...,
                      span: timedelta = ...) -> dict[str, dict[str, Any]]:
        """Per device: a p99 sparkline over ``span`` and whether it regressed."""

    def regressed_devices(self, *, now: datetime) -> set[str]:
        """Devices whose recent window p99 regressed against their 24 h baseline."""

    def open_alert(self, *, rule: str, device_id: str, fleet: str, severity: str, metric: str,
                   op: str, threshold: float, value: float | None, at: datetime) -> int:
        """Record a firing alert; returns its id."""

    def resolve_alert(self, alert_id: int, *, at: datetime, value: float | None = None) -> None:
        ...

    def list_alerts(self, *, state: str | None = None, device_id: str | None = None,
                    limit: int = 500) -> list[AlertRecord]:
        """Alerts, newest first."""

    def prune_history(self, retention: HistoryRetention | None = None) -> HistoryPruneOutcome:
        """Apply the history retention (telemetry, its aggregates, windows, resolved alerts)."""

    def close(self) -> None: ...


#: URL scheme -> ``module:Class`` of the store that opens it, imported on first use.
STORES: dict[str, str] = {
    "sqlite": "collector.stores.sql:SqlStore",
    "postgresql": "collector.stores.sql:SqlStore",
    "postgres": "collector.stores.sql:SqlStore",
}


def open_store(url: str, *, must_exist: bool = False, migrate: bool = True) -> Store:
    """Open the store a URL names and (unless ``migrate`` is False) bring its schema up to date.

    ``must_exist``: reading commands never create a database; a missing SQLite file is a
    :class:`ConfigError` naming the path that was looked at. Without the ``collector`` extra this
    raises :class:`shared.errors.MissingExtraError` with the pip command.
    """
    scheme = urlsplit(url).scheme.split("+")[0]
    target = STORES.get(scheme)
    if target is None:
        raise ConfigError(
            f"database URL {url!r} is not supported: use sqlite:///PATH.db or postgresql://..."
        )
    for module in ("sqlalchemy", "alembic"):
        require_module(module, "collector")
    if scheme in ("postgresql", "postgres"):
        require_module("psycopg", "collector")
    if must_exist and scheme == "sqlite":
        from collector.stores.dialects import sqlite_path

        path = sqlite_path(url)
        if path != ":memory:" and not Path(path).is_file():
            raise ConfigError(
                f"no results database at {Path(path).resolve()}: check --db (sqlite:///relative"
                ".db or sqlite:////absolute.db) or start 'edgemeter collector serve' first"
            )
    cls = load_plugin(STORES, scheme, kind="database")
    store: Store = cls(url)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
