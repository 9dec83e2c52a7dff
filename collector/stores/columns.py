"""Column types that differ between SQLite and PostgreSQL, each defined once for both.

These are the only column types whose storage depends on the database; everything else in
:mod:`collector.stores.tables` is plain SQLAlchemy (``Text``, ``LargeBinary``). Alembic revisions
import them too, so a revision and the tables it creates use the same storage. Never change how a
shipped type stores its values: add a new type and a revision that converts the column.

``RowId``
    ``BIGINT GENERATED ALWAYS AS IDENTITY`` on PostgreSQL, ``INTEGER PRIMARY KEY AUTOINCREMENT`` on
    SQLite (give the table ``sqlite_autoincrement=True``); grows with every insert, never reused.
``BigCount``
    ``BIGINT`` on PostgreSQL, ``INTEGER`` (64-bit) on SQLite.
``UtcTimestamp``
    an aware :class:`~datetime.datetime`: ``TIMESTAMPTZ`` on PostgreSQL; on SQLite fixed-width
    ISO 8601 text in UTC (``2026-01-01T00:00:00.000000+00:00``), so text order is time order.
``JsonText``
    a JSON document that Python reads and writes as its text (pydantic parses and dumps it):
    ``JSONB`` on PostgreSQL (queryable, validated by the server), ``TEXT`` on SQLite.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Integer, Text, cast
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["BigCount", "JsonText", "RowId", "UtcTimestamp", "utc_text"]

RowId = BigInteger().with_variant(Integer(), "sqlite")
BigCount = BigInteger().with_variant(Integer(), "sqlite")


def utc_text(value: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so text sorts as time (SQLite's storage of timestamps)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone; use an aware one")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


class UtcTimestamp(TypeDecorator[datetime]):
    """An aware datetime: TIMESTAMPTZ on PostgreSQL, fixed-width UTC ISO text on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return utc_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(timezone.utc) if isinstance(value, datetime) else value


class JsonText(TypeDecorator[str]):
    """A JSON document as its text: JSONB on PostgreSQL, TEXT on SQLite; read back as ``str``."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(Text())

    def bind_processor(self, dialect: Dialect) -> None:
        """The text goes to the driver as it is (PostgreSQL casts it: ``%(p)s::JSONB``)."""
        return None

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[str]:
        """Selected as text (``CAST(... AS TEXT)``: JSONB's text form, a no-op on SQLite)."""
        return cast(colexpr, Text)
