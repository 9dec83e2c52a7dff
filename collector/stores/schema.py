"""Schema migrations with Alembic, configured in code: no ``alembic.ini`` is read at run time.

The revisions ship inside the package (``collector/stores/migrations/versions/``). A store brings
its database to the newest revision every time it opens (:func:`upgrade`), and
``edgemeter collector migrate --db URL`` does the same on its own. Each upgrade is one transaction;
on PostgreSQL it first takes an advisory lock, so collectors starting together migrate once.

A database whose revision this edgemeter does not know (made by a newer edgemeter) is refused
with :class:`~collector.errors.StoreError`, never downgraded. A database made before Alembic (the
old runner's ``schema_migrations`` table at version 1) is adopted by the first revision.

Developers add a revision with Alembic's own command against the shipped scripts::

    .venv/bin/python -c "from alembic import command; from collector.stores.schema import \\
alembic_config; command.revision(alembic_config(), 'add devices', rev_id='0002')"

then spell the new table out with ``op.create_table`` and add it to :mod:`collector.stores.tables`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from collector.errors import StoreError
from collector.stores.dialects import WRITE_OPTION, Database

__all__ = ["SchemaChange", "alembic_config", "current_revision", "head_revision", "upgrade"]

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class SchemaChange:
    """What :func:`upgrade` did: the revision before (None: an empty database) and after."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped scripts; ``env.py`` runs on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this edgemeter ships."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StoreError(f"no schema revisions found in {SCRIPT_LOCATION}: reinstall edgemeter")
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None when Alembic has never run on it."""
    heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if heads else None


def upgrade(database: Database) -> SchemaChange:
    """Bring the database to :func:`head_revision` in one transaction; a no-op once there."""
    head = head_revision()
    with database.serialised():
        try:
            conn = database.engine.connect().execution_options(**{WRITE_OPTION: True})
        except SQLAlchemyError as err:
            raise StoreError(database.connect_failed(err)) from err
        try:
            with conn.begin():
                database.lock_for_migration(conn)
                before = current_revision(conn)
                if before == head:
                    return SchemaChange(before, head)
                if before is not None and not _known(before):
                    raise StoreError(
                        f"{database.name} database {database.where} has schema revision "
                        f"{before}, newer than this edgemeter knows ({head}): upgrade edgemeter"
                    )
                logger.info("%s %s: migrating schema from %s to %s", database.name,
                            database.where, before or "(empty)", head)
                command.upgrade(alembic_config(conn), "head")
                return SchemaChange(before, current_revision(conn) or head)
        except SQLAlchemyError as err:
            raise StoreError(database.action_failed("migration", err)) from err
        except CommandError as err:
            raise StoreError(
                f"{database.name} database {database.where}: migration failed: {err}"
            ) from err
        finally:
            conn.close()


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False
