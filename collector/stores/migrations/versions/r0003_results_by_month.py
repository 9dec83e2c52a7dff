"""Results partitioned by month on PostgreSQL, run_ids kept once in ``result_ids``, dashboard indexes.

Revision ID: 0003
Revises: 0002

PostgreSQL: ``results`` becomes a table partitioned by ``RANGE (created_at)``: a ``results_default``
partition takes any time, and one partition per calendar month (UTC) that holds rows,
``results_yYYYYmMM``, is made here; the store makes the current and next months' when it opens
and others as results arrive. A unique constraint on a partitioned table must include the
partition key, so ``run_id`` is kept unique in ``result_ids`` instead. The existing rows are copied
into the new table (ids kept, the identity continues after the largest), in place, in the
migration's one transaction.

SQLite has no partitions: its ``results`` stays as it is (``run_id`` unique in it), and there
is no ``result_ids``; only the indexes change.

Indexes on both: a device's history ``(device_id, created_at)``, runs of one model
``(model_name | model_sha256 | network, created_at)`` replacing the single-column ones; on
PostgreSQL also ``run_id`` (not unique: the partitioned table cannot have that).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from collector.stores.columns import BigCount, JsonText, RowId, UtcTimestamp

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "results_unpartitioned"
COLUMNS = ("id", "run_id", "device_id", "fleet", "role", "created_at", "model_name",
           "model_sha256", "network", "scenario", "seq", "received_at", "topic", "result")
OLD_INDEXES = ("results_device_seq", "results_created", "results_fleet", "results_role",
               "results_model_name", "results_model_sha256", "results_network", "results_scenario",
               "results_received", "results_topic")
NEW_INDEXES = (
    ("results_run_id", ["run_id"]),
    ("results_device_seq", ["device_id", "seq"]),
    ("results_device_created", ["device_id", "created_at"]),
    ("results_created", ["created_at", "id"]),
    ("results_fleet", ["fleet"]),
    ("results_role", ["role"]),
    ("results_model_name_created", ["model_name", "created_at"]),
    ("results_model_sha256_created", ["model_sha256", "created_at"]),
    ("results_network_created", ["network", "created_at"]),
    ("results_scenario", ["scenario"]),
    ("results_received", ["received_at"]),
    ("results_topic", ["topic"]),
)


SQLITE_INDEX_CHANGES = (
    ("results_device_created", ["device_id", "created_at"], None),
    ("results_model_name_created", ["model_name", "created_at"], "results_model_name"),
    ("results_model_sha256_created", ["model_sha256", "created_at"], "results_model_sha256"),
    ("results_network_created", ["network", "created_at"], "results_network"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name, columns_of, replaces in SQLITE_INDEX_CHANGES:
            if replaces is not None:
                op.drop_index(replaces, table_name="results")
            op.create_index(name, "results", columns_of)
        return
    _set_aside_old_results()
    op.create_table(
        "results",
        sa.Column("id", RowId, sa.Identity(always=True), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", UtcTimestamp(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_sha256", sa.Text(), nullable=False),
        sa.Column("network", sa.Text(), nullable=True),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("seq", BigCount, nullable=False),
        sa.Column("received_at", UtcTimestamp(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=True),
        sa.Column("result", JsonText(), nullable=False),
        sa.PrimaryKeyConstraint("id", "created_at", name="results_pkey"),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_table(
        "result_ids",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("created_at", UtcTimestamp(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="result_ids_pkey"),
    )
    _create_partitions()
    columns = ", ".join(COLUMNS)
    op.execute(f"INSERT INTO results ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {OLD}")
    op.execute(f"INSERT INTO result_ids (run_id, created_at) SELECT run_id, created_at FROM {OLD}")
    # the identity goes on after the copied ids
    op.execute("SELECT setval(pg_get_serial_sequence('results', 'id'), "
                   "COALESCE((SELECT max(id) FROM results), 0) + 1, false)")
    op.drop_table(OLD)
    for name, columns_of in NEW_INDEXES:  # after the copy: cheaper than growing them row by row
        op.create_index(name, "results", columns_of)


def downgrade() -> None:
    raise NotImplementedError("edgemeter schemas are never downgraded; restore a backup")


def _set_aside_old_results() -> None:
    """Rename the old table and free the names the new one takes (indexes, key, sequence)."""
    op.rename_table("results", OLD)
    bind = op.get_bind()
    existing = {ix["name"] for ix in sa.inspect(bind).get_indexes(OLD)}
    for name in OLD_INDEXES:
        if name in existing:
            op.drop_index(name, table_name=OLD)
    op.execute(f"ALTER TABLE {OLD} DROP CONSTRAINT results_pkey")
    sequence = bind.execute(sa.text(f"SELECT pg_get_serial_sequence('{OLD}', 'id')")).scalar()
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} RENAME TO {OLD}_id_seq")


def _create_partitions() -> None:
    """The DEFAULT partition, and one per month (UTC) that the old rows fall in."""
    op.execute("CREATE TABLE results_default PARTITION OF results DEFAULT")
    months = op.get_bind().execute(sa.text(
        f"SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC') FROM {OLD}"
    )).scalars().all()
    for month in months:
        start = month.replace(tzinfo=timezone.utc)
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=timezone.utc)
        op.execute(
            f"CREATE TABLE results_y{start.year:04d}m{start.month:02d} PARTITION OF results "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
