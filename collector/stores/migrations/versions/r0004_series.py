"""Series: each device's newest result of each model (sha256) and scenario, kept at ingest.

Revision ID: 0004
Revises: 0003

``series`` has one row per ``(device_id, model_sha256, scenario)`` naming the newest result of
that series (``latest_run_id``, ``latest_created_at``; ties in ``created_at``: the larger
``run_id``, a rule that does not depend on the order of arrival) with that result's fleet, role,
model name, network and ``device.hardware_key`` (from the stored JSON document). ``add_results``
keeps it up to date in each batch's transaction; ``compare`` picks its runs from it instead of
ranking the results.

The existing results fill it here (:func:`rebuild_series`), on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection

from collector.stores.columns import UtcTimestamp

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("device_id", "model_sha256", "scenario")
SERIES_COLUMNS = (*KEY, "fleet", "role", "model_name", "network", "hardware_key",
                  "latest_run_id", "latest_created_at")


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("model_sha256", sa.Text(), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("fleet", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("network", sa.Text(), nullable=True),
        sa.Column("hardware_key", sa.Text(), nullable=True),
        sa.Column("latest_run_id", sa.Text(), nullable=False),
        sa.Column("latest_created_at", UtcTimestamp(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name="series_pkey"),
    )
    rebuild_series(op.get_bind())
    # after the fill: cheaper than growing them row by row
    op.create_index("series_model_sha256", "series", ["model_sha256"])
    op.create_index("series_network", "series", ["network"])
    op.create_index("series_model_name", "series", ["model_name"])


def downgrade() -> None:
    raise NotImplementedError("edgemeter schemas are never downgraded; restore a backup")


def rebuild_series(conn: Connection) -> int:
    """Empty ``series`` and fill it from ``results`` in ``conn``'s transaction; returns its rows.

    Used by this revision, and by tools that load ``results`` behind the store's back
    (``bench/store.py`` fills a million rows by COPY). The newest result of each series is found
    on the indexed columns alone; only the winners' JSON documents are read, for
    ``device.hardware_key``.
    """
    results = sa.table("results", *(sa.column(name) for name in (
        "id", "run_id", "device_id", "fleet", "role", "created_at", "model_name", "model_sha256",
        "network", "scenario")), sa.column("result"))
    rank = sa.func.row_number().over(
        partition_by=[results.c[name] for name in KEY],
        order_by=[results.c.created_at.desc(), results.c.run_id.desc()],
    ).label("series_rank")
    ranked = sa.select(results.c.id, results.c.created_at, rank).subquery("ranked")
    hardware_key = sa.type_coerce(results.c.result, sa.JSON)[("device", "hardware_key")].as_string()
    newest = sa.select(
        *(results.c[name] for name in (*KEY, "fleet", "role", "model_name", "network")),
        hardware_key, results.c.run_id, results.c.created_at,
    ).join_from(results, ranked, sa.and_(ranked.c.id == results.c.id,
                                         ranked.c.created_at == results.c.created_at)) \
        .where(ranked.c.series_rank == 1)
    series = sa.table("series", *(sa.column(name) for name in SERIES_COLUMNS))
    conn.execute(sa.delete(series))
    conn.execute(sa.insert(series).from_select(list(SERIES_COLUMNS), newest))
    return int(conn.execute(sa.select(sa.func.count()).select_from(series)).scalar() or 0)
