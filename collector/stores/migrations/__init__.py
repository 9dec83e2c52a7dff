"""Versioned schema migrations, one list for every store, with one SQL dialect per database.

Each :class:`Migration` has a version number; a store records the versions it has applied in its
``schema_migrations`` table and applies the missing ones in order, each in one transaction, so
calling ``migrate()`` on every start is a no-op once the schema is current.

Rules: append a new migration with the next version; never edit or renumber one that has shipped.
Both dialects of a migration describe the same logical schema, so the stores stay interchangeable:

``results``
    one row per ``run_id`` (UNIQUE), with the columns the dashboard and compare filter and sort on
    (device_id, fleet, role, created_at, model_name, model_sha256, network, scenario, seq,
    received_at, topic) and the whole wire result as JSON (TEXT on SQLite, JSONB on PostgreSQL).
    ``id`` grows with every insert and breaks ties in ``created_at`` (received order).
``dead_letters``
    messages the collector rejected: id, received_at, topic, reason and the raw payload bytes.
``cited_baselines``
    published results imported by hand, one row per ``baseline_id`` (a hash of the content).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

__all__ = ["MIGRATIONS", "Dialect", "Migration", "latest_version", "pending"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


# Index names are shared by both dialects.
_INDEXES = (
    "CREATE INDEX results_device_seq ON results (device_id, seq)",
    "CREATE INDEX results_created ON results (created_at, id)",
    "CREATE INDEX results_fleet ON results (fleet)",
    "CREATE INDEX results_role ON results (role)",
    "CREATE INDEX results_model_name ON results (model_name)",
    "CREATE INDEX results_model_sha256 ON results (model_sha256)",
    "CREATE INDEX results_network ON results (network)",
    "CREATE INDEX results_scenario ON results (scenario)",
    "CREATE INDEX results_received ON results (received_at)",
    "CREATE INDEX results_topic ON results (topic)",
    "CREATE INDEX dead_letters_received ON dead_letters (received_at)",
    "CREATE INDEX cited_baselines_network ON cited_baselines (network)",
)

_V1_SQLITE = (
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        device_id TEXT NOT NULL,
        fleet TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL,
        model_name TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        network TEXT,
        scenario TEXT NOT NULL,
        seq INTEGER NOT NULL,
        received_at TEXT NOT NULL,
        topic TEXT,
        result TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE cited_baselines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        baseline_id TEXT NOT NULL UNIQUE,
        network TEXT NOT NULL,
        scenario TEXT NOT NULL,
        added_at TEXT NOT NULL,
        baseline TEXT NOT NULL
    )
    """,
    *_INDEXES,
)

_V1_POSTGRESQL = (
    """
    CREATE TABLE results (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        device_id TEXT NOT NULL,
        fleet TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        model_name TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        network TEXT,
        scenario TEXT NOT NULL,
        seq BIGINT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        topic TEXT,
        result JSONB NOT NULL
    )
    """,
    """
    CREATE TABLE dead_letters (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_at TIMESTAMPTZ NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BYTEA NOT NULL
    )
    """,
    """
    CREATE TABLE cited_baselines (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        baseline_id TEXT NOT NULL UNIQUE,
        network TEXT NOT NULL,
        scenario TEXT NOT NULL,
        added_at TIMESTAMPTZ NOT NULL,
        baseline JSONB NOT NULL
    )
    """,
    *_INDEXES,
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results, dead letters and cited baselines", _V1_SQLITE, _V1_POSTGRESQL),
)


def latest_version() -> int:
    return MIGRATIONS[-1].version


def pending(applied: Collection[int]) -> list[Migration]:
    """The migrations not yet in ``applied``, in version order."""
    return [m for m in sorted(MIGRATIONS, key=lambda m: m.version) if m.version not in applied]
