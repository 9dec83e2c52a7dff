"""The minute rows' figures in an index, so a device's chart over days reads the index only.

Revision ID: 0006
Revises: 0005

A fleet's telemetry arrives interleaved in time, so one device's ``telemetry_1m`` rows of a week
lie one per table page: its 7-day chart read 10,080 pages. On PostgreSQL
``telemetry_1m_device_figures`` keys the rows by ``(device_id, minute)`` and carries every figure
the chart sums (``INCLUDE``), so the chart is an index-only scan of about 200 pages. It takes
about as much disk as the table itself. Building it on an existing database holds each month
partition's writes while that partition is indexed (seconds per million rows). SQLite, where
fleets are small, has no such index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIGURES = ("messages", "throttled_n", "spool_depth_max", "temperature_c_max",
           "cpu_util_pct_sum", "cpu_util_pct_n", "memory_used_bytes_sum", "memory_used_bytes_n",
           "temperature_c_sum", "temperature_c_n", "power_w_sum", "power_w_n")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index("telemetry_1m_device_figures", "telemetry_1m", ["device_id", "minute"],
                    postgresql_include=list(FIGURES))


def downgrade() -> None:
    raise NotImplementedError("edgemeter schemas are never downgraded; restore a backup")
