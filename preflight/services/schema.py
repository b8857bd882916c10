"""``db upgrade``: migrate the configured database (needed once for PostgreSQL)."""

from __future__ import annotations

from preflight.settings import Settings


def upgrade_schema(settings: Settings, revision: str = "head") -> str | None:
    """Migrate the database in ``settings`` to ``revision``; the revision it is at after.

    Needs no vendor token: a migration job reads only the database URL.
    """
    from preflight.db import migrate
    from preflight.db.session import build_engine, translate_db_errors

    engine = build_engine(settings.database_url)
    try:
        migrate.upgrade(engine, revision)
        with translate_db_errors(), engine.connect() as connection:
            return migrate.current_revision(connection)
    finally:
        engine.dispose()
