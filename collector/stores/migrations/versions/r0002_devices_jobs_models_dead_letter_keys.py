"""Devices, jobs and models; dead letters de-duplicated per (device_id, sha256) with counts.

Revision ID: 0002
Revises: 0001

Existing dead letters stay readable: each gets its device (from its topic,
``edgemeter/v1/{fleet}/{device_id}/{kind}``, else ``''``), its size and the sha256 of its payload,
``count`` 1 and ``last_seen`` = ``received_at``; rows of one device with the same payload are merged
into the oldest (count = how many, last_seen = the newest). Old payloads are kept whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from collector.stores.columns import BigCount, JsonText, RowId, UtcTimestamp

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_LETTER_COLUMNS = ("device_id", "size_bytes", "sha256", "count", "last_seen")


def upgrade() -> None:
    _dead_letter_keys()
    op.create_table(
        "devices",
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("bd_seq", BigCount, nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("first_seen", UtcTimestamp(), nullable=False),
        sa.Column("last_seen", UtcTimestamp(), nullable=False),
        sa.Column("manifest", JsonText(), nullable=True),
        sa.Column("telemetry", JsonText(), nullable=True),
        sa.Column("telemetry_sent_at", UtcTimestamp(), nullable=True),
        sa.Column("latest_run_id", sa.Text(), nullable=True),
        sa.Column("latest_created_at", UtcTimestamp(), nullable=True),
        sa.Column("latest_p50_ms", sa.Double(), nullable=True),
        sa.Column("latest_power_w", sa.Double(), nullable=True),
        sa.Column("latest_model", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("device_id", name="devices_pkey"),
    )
    op.create_index("devices_fleet", "devices", ["fleet"])
    op.create_table(
        "jobs",
        sa.Column("id", RowId, sa.Identity(always=True), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", UtcTimestamp(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=True),
        sa.Column("model_sha256", sa.Text(), nullable=True),
        sa.Column("command", JsonText(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("ack_sent_at", UtcTimestamp(), nullable=True),
        sa.Column("updated_at", UtcTimestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="jobs_pkey"),
        sa.UniqueConstraint("device_id", "job_id", name="jobs_device_job_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("jobs_created", "jobs", ["created_at", "id"])
    op.create_table(
        "models",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("size_bytes", BigCount, nullable=False),
        sa.Column("added_at", UtcTimestamp(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="models_pkey"),
    )


def downgrade() -> None:
    for table in ("models", "jobs", "devices"):
        op.drop_table(table)
    with op.batch_alter_table("dead_letters", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint("dead_letters_device_sha256_key", type_="unique")
        batch.drop_index("dead_letters_reason")
        for name in NEW_LETTER_COLUMNS:
            batch.drop_column(name)


def _dead_letter_keys() -> None:
    op.add_column("dead_letters", sa.Column("device_id", sa.Text(), nullable=True))
    op.add_column("dead_letters", sa.Column("size_bytes", BigCount, nullable=True))
    op.add_column("dead_letters", sa.Column("sha256", sa.Text(), nullable=True))
    op.add_column("dead_letters", sa.Column("count", BigCount, nullable=True))
    op.add_column("dead_letters", sa.Column("last_seen", UtcTimestamp(), nullable=True))
    _fill_old_letters()
    with op.batch_alter_table("dead_letters", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("device_id", existing_type=sa.Text(), nullable=False)
        batch.alter_column("size_bytes", existing_type=BigCount, nullable=False)
        batch.alter_column("sha256", existing_type=sa.Text(), nullable=False)
        batch.alter_column("count", existing_type=BigCount, nullable=False)
        batch.alter_column("last_seen", existing_type=UtcTimestamp(), nullable=False)
        batch.create_unique_constraint("dead_letters_device_sha256_key", ["device_id", "sha256"])
    op.create_index("dead_letters_reason", "dead_letters", ["reason"])


def _device_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) == 5 and parts[0] == "edgemeter" else ""


def _fill_old_letters() -> None:
    bind = op.get_bind()
    letters = sa.table(
        "dead_letters", sa.column("id", RowId), sa.column("topic", sa.Text()),
        sa.column("payload", sa.LargeBinary()), sa.column("received_at", UtcTimestamp()),
        sa.column("device_id", sa.Text()), sa.column("size_bytes", BigCount),
        sa.column("sha256", sa.Text()), sa.column("count", BigCount),
        sa.column("last_seen", UtcTimestamp()),
    )
    groups: dict[tuple[str, str], list[Any]] = {}
    rows = bind.execute(sa.select(letters.c.id, letters.c.topic, letters.c.payload,
                                  letters.c.received_at).order_by(letters.c.id))
    for row in rows:
        payload = bytes(row.payload)
        key = (_device_of(row.topic), hashlib.sha256(payload).hexdigest())
        groups.setdefault(key, []).append((row.id, len(payload), row.received_at))
    for (device_id, sha256), members in groups.items():
        first_id, size, _ = members[0]
        bind.execute(
            letters.update().where(letters.c.id == first_id).values(
                device_id=device_id, size_bytes=size, sha256=sha256, count=len(members),
                last_seen=max(m[2] for m in members),
            )
        )
        if len(members) > 1:
            bind.execute(letters.delete().where(letters.c.id.in_([m[0] for m in members[1:]])))
