"""Four ``results`` indexes that no query reads are dropped, so storing a result updates fewer.

Revision ID: 0007
Revises: 0006

``results_role`` and ``results_scenario`` index columns of three or four values (a filter on
them is answered from ``results_created`` or a device's or model's index), and nothing selects
results by ``received_at`` or ``topic``. Each index cost every insert a B-tree update: without
them SQLite stores a result about an eighth faster (``bench/ingest.py``). On PostgreSQL dropping
a partitioned table's index drops its partitions' too.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNREAD = ("results_role", "results_scenario", "results_received", "results_topic")


def upgrade() -> None:
    for name in UNREAD:
        op.drop_index(name, table_name="results", if_exists=True)


def downgrade() -> None:
    raise NotImplementedError("edgemeter schemas are never downgraded; restore a backup")
