"""The results database's tables, defined once for SQLite and PostgreSQL (SQLAlchemy Core).

This module is the current layout, used to build queries. The Alembic revisions in
:mod:`collector.stores.migrations` create it; ``tests/collector/test_migrations.py`` checks that a
database upgraded to the newest revision has exactly these tables, columns and indexes.

``results``
    one row per ``run_id`` (MQTT QoS 1 may deliver a message twice), with the columns the
    commands filter and sort on and the whole wire result as JSON. ``id`` grows with every insert
    and breaks ties in ``created_at`` (received order). On PostgreSQL the table is partitioned by
    month of ``created_at`` (``results_yYYYYmMM`` partitions and ``results_default``, made by
    :mod:`collector.stores.partitions`), so its primary key is ``(id, created_at)`` there (Alembic
    does not compare primary keys) and no unique constraint can hold ``run_id`` alone:
``result_ids`` (PostgreSQL only)
    every stored ``run_id`` once (primary key) with its ``created_at``; a result is inserted only
    together with its new row here, in one statement, so a run_id is stored once even when a
    re-send carries another ``created_at`` (another partition). SQLite, which has no partitions,
    keeps the unique constraint on ``results.run_id`` instead: one index fewer to write.

What exists on one database only says so in its ``info`` (:func:`only_on`, :func:`exists_on`); the
migration test compares each database with what :func:`exists_on` keeps for it.
``dead_letters``
    messages the collector rejected: when (first and last), on which topic, why, and the first
    64 KiB of the payload with its full size and sha256; one row per ``(device_id, sha256)``
    (``device_id`` is ``''`` when the topic named no device, so the key is never NULL).
``devices``
    one row per ``device_id``: presence (status, ``bd_seq``, the last birth's manifest), the latest
    telemetry, and the newest result's headline figures (kept by ``add_results``).
``jobs``
    one row per ``(device_id, job_id)``: the command sent and the last ack's state.
``models``
    model files for remote jobs, by sha256 of their content.
``cited_baselines``
    published results imported by hand, one row per ``baseline_id`` (a hash of the content).
``series``
    one row per series, ``(device_id, model_sha256, scenario)``: which of its results is the
    newest (``latest_run_id``, ``latest_created_at``; ties: the larger run_id) and that result's
    fleet, role, model name, network and ``device.hardware_key``. ``add_results`` keeps it in the
    batch's transaction, so a compare picks its runs from this small table instead of ranking the
    results (:attr:`collector.stores.base.ResultFilter.newest_per_hardware`).

``telemetry``
    every telemetry message, one row per ``(device_id, sent_at)`` with the figures the charts
    draw (the whole message stays in ``devices.telemetry`` for the newest one only); kept 48 h
    by default. On PostgreSQL partitioned by month of ``sent_at`` like ``results``.
``telemetry_1m``
    the same per device and minute, as sums and counts (so any longer step averages exactly),
    the highest temperature and spool depth, and how many messages said throttled; kept 90 days
    by default. Partitioned like ``telemetry`` on PostgreSQL, where ``telemetry_1m_device_figures``
    also holds every figure by ``(device_id, minute)``, so a device's chart reads the index only.
``monitor_windows``
    one row per monitor window (``window_id`` once): its device, monitor name, job, span,
    headline figures, and the whole window (with its latency histogram) as JSON.
``alerts``
    one row per alert: a rule that started to hold for a device (``firing``) until it stops
    (``resolved``); :mod:`collector.alerts`.

Maintained by :mod:`collector.stores.history`.

To add a table: define it here on :data:`metadata` (types that differ by database come from
:mod:`collector.stores.columns`; constraints and indexes get their names from the convention
below unless named), then add a revision under ``migrations/versions/`` that creates it with
``op.create_table`` spelled out in full (a revision is frozen: it never imports this module, which
keeps changing). The migration test fails until the two agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from collector.stores.columns import BigCount, JsonText, RowId, UtcTimestamp

__all__ = [
    "alerts",
    "cited_baselines",
    "dead_letters",
    "devices",
    "exists_on",
    "jobs",
    "metadata",
    "models",
    "monitor_windows",
    "only_on",
    "result_ids",
    "results",
    "series",
    "telemetry",
    "telemetry_1m",
]

#: PostgreSQL's own default names, so a database the pre-Alembic runner made and one Alembic made
#: name their constraints alike and a later revision can drop or alter them by name on both.
NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "ck": "%(table_name)s_%(constraint_name)s_check",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def only_on(*dialects: str) -> dict[str, Any]:
    """``info`` of a table, index or constraint that exists on these databases only."""
    return {"dialects": frozenset(dialects)}


def exists_on(item: Any, dialect: str) -> bool:
    """Whether a table, index or constraint of :data:`metadata` exists on ``dialect``."""
    info = getattr(item, "info", None) or {}
    return dialect in info.get("dialects", (dialect,))


def _id() -> Column[int]:
    return Column("id", RowId, Identity(always=True), primary_key=True)


results = Table(
    "results",
    metadata,
    _id(),
    Column("run_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("model_sha256", Text, nullable=False),
    Column("network", Text),
    Column("scenario", Text, nullable=False),
    Column("seq", BigCount, nullable=False),
    Column("received_at", UtcTimestamp, nullable=False),
    Column("topic", Text),
    Column("result", JsonText, nullable=False),
    UniqueConstraint("run_id", name="results_run_id_key", info=only_on("sqlite")),
    Index("results_run_id", "run_id", info=only_on("postgresql")),
    Index("results_device_seq", "device_id", "seq"),
    Index("results_device_created", "device_id", "created_at"),
    Index("results_created", "created_at", "id"),
    Index("results_fleet", "fleet"),
    Index("results_model_name_created", "model_name", "created_at"),
    Index("results_model_sha256_created", "model_sha256", "created_at"),
    Index("results_network_created", "network", "created_at"),
    sqlite_autoincrement=True,
    postgresql_partition_by="RANGE (created_at)",
)

result_ids = Table(
    "result_ids",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("created_at", UtcTimestamp, nullable=False),
    info=only_on("postgresql"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    _id(),
    Column("received_at", UtcTimestamp, nullable=False),
    Column("topic", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("size_bytes", BigCount, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("count", BigCount, nullable=False),
    Column("last_seen", UtcTimestamp, nullable=False),
    UniqueConstraint("device_id", "sha256", name="dead_letters_device_sha256_key"),
    Index("dead_letters_received", "received_at"),
    Index("dead_letters_reason", "reason"),
    sqlite_autoincrement=True,
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", Text, primary_key=True),
    Column("fleet", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("bd_seq", BigCount),
    Column("status_reason", Text),
    Column("first_seen", UtcTimestamp, nullable=False),
    Column("last_seen", UtcTimestamp, nullable=False),
    Column("manifest", JsonText),
    Column("telemetry", JsonText),
    Column("telemetry_sent_at", UtcTimestamp),
    Column("latest_run_id", Text),
    Column("latest_created_at", UtcTimestamp),
    Column("latest_p50_ms", Double),
    Column("latest_power_w", Double),
    Column("latest_model", Text),
    Index("devices_fleet", "fleet"),
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    Column("job_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("model_name", Text),
    Column("model_sha256", Text),
    Column("command", JsonText),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("run_id", Text),
    Column("ack_sent_at", UtcTimestamp),
    Column("updated_at", UtcTimestamp),
    UniqueConstraint("device_id", "job_id", name="jobs_device_job_key"),
    Index("jobs_created", "created_at", "id"),
    sqlite_autoincrement=True,
)

models = Table(
    "models",
    metadata,
    Column("sha256", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("size_bytes", BigCount, nullable=False),
    Column("added_at", UtcTimestamp, nullable=False),
    Column("content", LargeBinary, nullable=False),
)

cited_baselines = Table(
    "cited_baselines",
    metadata,
    _id(),
    Column("baseline_id", Text, nullable=False, unique=True),
    Column("network", Text, nullable=False),
    Column("scenario", Text, nullable=False),
    Column("added_at", UtcTimestamp, nullable=False),
    Column("baseline", JsonText, nullable=False),
    Index("cited_baselines_network", "network"),
    sqlite_autoincrement=True,
)

series = Table(
    "series",
    metadata,
    Column("device_id", Text, nullable=False),
    Column("model_sha256", Text, nullable=False),
    Column("scenario", Text, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("network", Text),
    Column("hardware_key", Text),
    Column("latest_run_id", Text, nullable=False),
    Column("latest_created_at", UtcTimestamp, nullable=False),
    PrimaryKeyConstraint("device_id", "model_sha256", "scenario", name="series_pkey"),
    Index("series_model_sha256", "model_sha256"),
    Index("series_network", "network"),
    Index("series_model_name", "model_name"),
)

telemetry = Table(
    "telemetry",
    metadata,
    Column("device_id", Text, nullable=False),
    Column("sent_at", UtcTimestamp, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("received_at", UtcTimestamp, nullable=False),
    Column("cpu_util_pct", Double),
    Column("memory_used_bytes", BigCount),
    Column("temperature_c", Double),
    Column("throttled", Boolean),
    Column("power_w", Double),
    Column("power_source", Text),
    Column("power_estimated", Boolean),
    Column("spool_depth", BigCount, nullable=False),
    PrimaryKeyConstraint("device_id", "sent_at", name="telemetry_pkey"),
    Index("telemetry_sent", "sent_at"),
    postgresql_partition_by="RANGE (sent_at)",
)

telemetry_1m = Table(
    "telemetry_1m",
    metadata,
    Column("device_id", Text, nullable=False),
    Column("minute", UtcTimestamp, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("messages", BigCount, nullable=False),
    Column("cpu_util_pct_sum", Double, nullable=False),
    Column("cpu_util_pct_n", BigCount, nullable=False),
    Column("memory_used_bytes_sum", Double, nullable=False),
    Column("memory_used_bytes_n", BigCount, nullable=False),
    Column("temperature_c_sum", Double, nullable=False),
    Column("temperature_c_n", BigCount, nullable=False),
    Column("temperature_c_max", Double),
    Column("power_w_sum", Double, nullable=False),
    Column("power_w_n", BigCount, nullable=False),
    Column("throttled_n", BigCount, nullable=False),
    Column("spool_depth_max", BigCount, nullable=False),
    PrimaryKeyConstraint("device_id", "minute", name="telemetry_1m_pkey"),
    Index("telemetry_1m_minute", "minute"),
    # a device's chart reads only this index (revision 0006)
    Index("telemetry_1m_device_figures", "device_id", "minute",
          postgresql_include=["messages", "throttled_n", "spool_depth_max", "temperature_c_max",
                              "cpu_util_pct_sum", "cpu_util_pct_n", "memory_used_bytes_sum",
                              "memory_used_bytes_n", "temperature_c_sum", "temperature_c_n",
                              "power_w_sum", "power_w_n"],
          info=only_on("postgresql")),
    postgresql_partition_by="RANGE (minute)",
)

monitor_windows = Table(
    "monitor_windows",
    metadata,
    _id(),
    Column("window_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("job_id", Text),
    Column("start_at", UtcTimestamp, nullable=False),
    Column("end_at", UtcTimestamp, nullable=False),
    Column("queries", BigCount, nullable=False),
    Column("p50_ms", Double),
    Column("p90_ms", Double),
    Column("p99_ms", Double),
    Column("throughput_sps", Double),
    Column("power_w", Double),
    Column("temperature_c", Double),
    Column("throttled", Boolean),
    Column("received_at", UtcTimestamp, nullable=False),
    Column("window", JsonText, nullable=False),
    UniqueConstraint("window_id", name="monitor_windows_window_id_key"),
    Index("monitor_windows_device_start", "device_id", "start_at"),
    Index("monitor_windows_device_name_start", "device_id", "name", "start_at"),
    Index("monitor_windows_end", "end_at"),
    sqlite_autoincrement=True,
)

alerts = Table(
    "alerts",
    metadata,
    _id(),
    Column("rule", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("fleet", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("op", Text, nullable=False),
    Column("threshold", Double, nullable=False),
    Column("value", Double),
    Column("state", Text, nullable=False),
    Column("started_at", UtcTimestamp, nullable=False),
    Column("resolved_at", UtcTimestamp),
    Column("updated_at", UtcTimestamp, nullable=False),
    Index("alerts_state", "state", "started_at"),
    Index("alerts_device_started", "device_id", "started_at"),
    sqlite_autoincrement=True,
)
