"""Results stores: one public surface over the SQL store for SQLite and PostgreSQL.

:func:`open_store` opens (and migrates) the database a URL names: ``sqlite:///relative.db``,
``sqlite:////abs/path.db``, ``sqlite:///:memory:``, ``postgresql://user@host/db``. Importing this
package imports neither SQLAlchemy nor a database driver; opening a store does.

Modules: :mod:`.base` (the Store protocol, filters, registry), :mod:`.sql` (the store),
:mod:`.tables` (the tables, once), :mod:`.columns` and :mod:`.dialects` (what differs between
SQLite and PostgreSQL), :mod:`.schema` and ``migrations/`` (Alembic).
"""

from __future__ import annotations

from collector.stores.base import STORES, ResultFilter, Store, open_store

__all__ = ["STORES", "ResultFilter", "Store", "open_store"]
