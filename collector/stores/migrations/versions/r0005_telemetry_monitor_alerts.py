"""Telemetry history (raw and 1-minute aggregates), monitor windows and alerts.

Revision ID: 0005
Revises: 0004

``telemetry`` keeps every telemetry message's charted figures, one row per ``(device_id,
sent_at)``; ``telemetry_1m`` the same per device and minute as sums and counts. On PostgreSQL
both are partitioned by month (``RANGE (sent_at)``, ``RANGE (minute)``) with a ``..._default``
partition, like ``results`` (revision 0003); the store makes the month partitions
(:mod:`collector.stores.partitions`). SQLite has one table each.

``monitor_windows`` keeps each monitor window once (``window_id``), ``alerts`` each alert's
firing and resolution. All four start empty: nothing before this revision recorded them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from collector.stores.columns import BigCount, JsonText, RowId, UtcTimestamp

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "telemetry",
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("sent_at", UtcTimestamp(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("received_at", UtcTimestamp(), nullable=False),
        sa.Column("cpu_util_pct", sa.Double(), nullable=True),
        sa.Column("memory_used_bytes", BigCount, nullable=True),
        sa.Column("temperature_c", sa.Double(), nullable=True),
        sa.Column("throttled", sa.Boolean(), nullable=True),
        sa.Column("power_w", sa.Double(), nullable=True),
        sa.Column("power_source", sa.Text(), nullable=True),
        sa.Column("power_estimated", sa.Boolean(), nullable=True),
        sa.Column("spool_depth", BigCount, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "sent_at", name="telemetry_pkey"),
        postgresql_partition_by="RANGE (sent_at)",
    )
    op.create_index("telemetry_sent", "telemetry", ["sent_at"])
    op.create_table(
        "telemetry_1m",
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("minute", UtcTimestamp(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("messages", BigCount, nullable=False),
        sa.Column("cpu_util_pct_sum", sa.Double(), nullable=False),
        sa.Column("cpu_util_pct_n", BigCount, nullable=False),
        sa.Column("memory_used_bytes_sum", sa.Double(), nullable=False),
        sa.Column("memory_used_bytes_n", BigCount, nullable=False),
        sa.Column("temperature_c_sum", sa.Double(), nullable=False),
        sa.Column("temperature_c_n", BigCount, nullable=False),
        sa.Column("temperature_c_max", sa.Double(), nullable=True),
        sa.Column("power_w_sum", sa.Double(), nullable=False),
        sa.Column("power_w_n", BigCount, nullable=False),
        sa.Column("throttled_n", BigCount, nullable=False),
        sa.Column("spool_depth_max", BigCount, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "minute", name="telemetry_1m_pkey"),
        postgresql_partition_by="RANGE (minute)",
    )
    op.create_index("telemetry_1m_minute", "telemetry_1m", ["minute"])
    if postgres:
        op.execute("CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT")
        op.execute("CREATE TABLE telemetry_1m_default PARTITION OF telemetry_1m DEFAULT")
    op.create_table(
        "monitor_windows",
        sa.Column("id", RowId, sa.Identity(always=True), nullable=False),
        sa.Column("window_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("start_at", UtcTimestamp(), nullable=False),
        sa.Column("end_at", UtcTimestamp(), nullable=False),
        sa.Column("queries", BigCount, nullable=False),
        sa.Column("p50_ms", sa.Double(), nullable=True),
        sa.Column("p90_ms", sa.Double(), nullable=True),
        sa.Column("p99_ms", sa.Double(), nullable=True),
        sa.Column("throughput_sps", sa.Double(), nullable=True),
        sa.Column("power_w", sa.Double(), nullable=True),
        sa.Column("temperature_c", sa.Double(), nullable=True),
        sa.Column("throttled", sa.Boolean(), nullable=True),
        sa.Column("received_at", UtcTimestamp(), nullable=False),
        sa.Column("window", JsonText(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="monitor_windows_pkey"),
        sa.UniqueConstraint("window_id", name="monitor_windows_window_id_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("monitor_windows_device_start", "monitor_windows", ["device_id", "start_at"])
    op.create_index("monitor_windows_device_name_start", "monitor_windows",
                    ["device_id", "name", "start_at"])
    op.create_index("monitor_windows_end", "monitor_windows", ["end_at"])
    op.create_table(
        "alerts",
        sa.Column("id", RowId, sa.Identity(always=True), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("started_at", UtcTimestamp(), nullable=False),
        sa.Column("resolved_at", UtcTimestamp(), nullable=True),
        sa.Column("updated_at", UtcTimestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="alerts_pkey"),
        sqlite_autoincrement=True,
    )
    op.create_index("alerts_state", "alerts", ["state", "started_at"])
    op.create_index("alerts_device_started", "alerts", ["device_id", "started_at"])


def downgrade() -> None:
    raise NotImplementedError("edgemeter schemas are never downgraded; restore a backup")
