"""Alembic, driven from code: ``preflight db upgrade`` and the embedded SQLite self-upgrade."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from preflight.db.driver import storage_errors
from preflight.errors import SchemaMissingError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

#: The newest migration. Every command compares the database against it, and reading it
#: from Alembic's script directory would import Alembic (~0.1 s) on every start-up;
#: tests/integration/test_migrations.py pins it to Alembic's actual head.
SCHEMA_HEAD: Final = "0008"


def migrations_dir() -> Path:
    """``preflight/_migrations`` inside a wheel; ``migrations/`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    bundled = package / "_migrations"
    return bundled if bundled.is_dir() else package.parent / "migrations"


def _config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config  # cold path: only a migration loads Alembic

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def alembic_head() -> str:
    """The head according to the migration scripts themselves (slow: imports Alembic)."""
    from alembic.script import ScriptDirectory  # cold path: only a migration loads Alembic

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(connection: Connection) -> str | None:
    """The schema revision stored in the database, or None when there is none yet."""
    from sqlalchemy import text  # cold path: the embedded check loads no SQLAlchemy
    from sqlalchemy.exc import DBAPIError  # cold path: the embedded check loads no SQLAlchemy

    try:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    except DBAPIError:
        return None
    return None if row is None else str(row[0])


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (SQLite: one writer at a time)."""
    from alembic import command  # cold path: only a migration loads Alembic
    from sqlalchemy.exc import DBAPIError  # cold path: the embedded check loads no SQLAlchemy

    with storage_errors(DBAPIError), engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command  # cold path: only a migration loads Alembic
    from sqlalchemy.exc import DBAPIError  # cold path: the embedded check loads no SQLAlchemy

    with storage_errors(DBAPIError), engine.begin() as connection:
        command.downgrade(_config(connection), revision)


def ensure_schema(engine: Engine) -> None:
    """Make sure the schema is at head before use.

    The embedded SQLite database upgrades itself on first use: concurrent first
    uses are safe because the migration runs inside one ``BEGIN IMMEDIATE``
    transaction and re-reads the version under that lock. PostgreSQL is shared by
    many hosts, so its schema changes only with an explicit ``preflight db upgrade``.
    """
    from sqlalchemy.exc import DBAPIError  # cold path: the embedded check loads no SQLAlchemy

    with storage_errors(DBAPIError), engine.connect() as connection:
        current = current_revision(connection)
    head = SCHEMA_HEAD
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    state = "has no preflight schema" if current is None else f"is at revision {current}"
    raise SchemaMissingError(
        f"the database {state}, preflight needs {head}: run `preflight db upgrade`"
    )
