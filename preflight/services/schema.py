"""``db upgrade``: migrate the configured database (needed once for PostgreSQL)."""

from __future__ import annotations

from preflight.db import migrate
from preflight.db.session import build_engine, translate_db_errors
from preflight.errors import SchemaMissingError
from preflight.services.runtime import Runtime
from preflight.settings import Settings


def upgrade_schema(settings: Settings, revision: str = "head") -> str | None:
    """Migrate the database in ``settings`` to ``revision``; the revision it is at after.

    Needs no vendor token: a migration job reads only the database URL.
    """
    engine = build_engine(settings.database_url)
    try:
        migrate.upgrade(engine, revision)
        with translate_db_errors(), engine.connect() as connection:
            return migrate.current_revision(connection)
    finally:
        engine.dispose()


def ready_revision(rt: Runtime) -> str:
    """The database's schema revision, once it is reachable and at head; else StorageError
    (or SchemaMissingError): what a readiness probe asks."""
    engine = rt.database.engine
    with translate_db_errors(), engine.connect() as connection:
        current = migrate.current_revision(connection)
    if current != migrate.SCHEMA_HEAD:
        raise SchemaMissingError(
            f"the database is at revision {current}, preflight needs {migrate.SCHEMA_HEAD}"
        )
    return current
