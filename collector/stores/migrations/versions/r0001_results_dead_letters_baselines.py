"""Results, dead letters and cited baselines; adopts a database the pre-Alembic runner made.

Revision ID: 0001
Revises: (none)

Before Alembic, edgemeter kept its schema version in a ``schema_migrations`` table, and version 1
of that runner made exactly the tables below. Such a database is adopted as it is: its rows stay,
``schema_migrations`` goes (``alembic_version`` is the one record from now on), and nothing is
created. A ``schema_migrations`` naming a version the old runner never shipped came from some newer
edgemeter and is refused. An empty database gets the tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from collector.errors import StoreError
from collector.stores.columns import BigCount, JsonText, RowId, UtcTimestamp

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_VERSION_TABLE = "schema_migrations"
OLD_VERSIONS_KNOWN = {1}
TABLES = ("results", "dead_letters", "cited_baselines")


def upgrade() -> None:
    if _adopted_old_layout():
        return
    op.create_table(
        "results",
        _id(),
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
        sa.PrimaryKeyConstraint("id", name="results_pkey"),
        sa.UniqueConstraint("run_id", name="results_run_id_key"),
        sqlite_autoincrement=True,
    )
    for name, columns in (
        ("results_device_seq", ["device_id", "seq"]),
        ("results_created", ["created_at", "id"]),
        ("results_fleet", ["fleet"]),
        ("results_role", ["role"]),
        ("results_model_name", ["model_name"]),
        ("results_model_sha256", ["model_sha256"]),
        ("results_network", ["network"]),
        ("results_scenario", ["scenario"]),
        ("results_received", ["received_at"]),
        ("results_topic", ["topic"]),
    ):
        op.create_index(name, "results", columns)
    op.create_table(
        "dead_letters",
        _id(),
        sa.Column("received_at", UtcTimestamp(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="dead_letters_pkey"),
        sqlite_autoincrement=True,
    )
    op.create_index("dead_letters_received", "dead_letters", ["received_at"])
    op.create_table(
        "cited_baselines",
        _id(),
        sa.Column("baseline_id", sa.Text(), nullable=False),
        sa.Column("network", sa.Text(), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("added_at", UtcTimestamp(), nullable=False),
        sa.Column("baseline", JsonText(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="cited_baselines_pkey"),
        sa.UniqueConstraint("baseline_id", name="cited_baselines_baseline_id_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("cited_baselines_network", "cited_baselines", ["network"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)


def _id() -> sa.Column[int]:
    return sa.Column("id", RowId, sa.Identity(always=True), nullable=False)


def _adopted_old_layout() -> bool:
    """Adopt a database at the pre-Alembic runner's version 1; False when there is none."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(OLD_VERSION_TABLE):
        return False
    versions = {int(v) for v in bind.execute(sa.text(f"SELECT version FROM {OLD_VERSION_TABLE}"))
                .scalars()}
    unknown = versions - OLD_VERSIONS_KNOWN
    if unknown:
        raise StoreError(
            f"the database has schema version {max(unknown)} of the pre-Alembic runner, newer "
            "than this edgemeter knows: upgrade edgemeter"
        )
    if versions:
        missing = [t for t in TABLES if not inspector.has_table(t)]
        if missing:
            raise StoreError(
                f"the database says it has schema version 1 but lacks {', '.join(missing)}: "
                "it was changed by hand; restore it from a backup or use a new database"
            )
    op.drop_table(OLD_VERSION_TABLE)
    return bool(versions)
