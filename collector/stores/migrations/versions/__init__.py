"""Alembic revisions, oldest first by number; see :mod:`collector.stores.migrations`."""
