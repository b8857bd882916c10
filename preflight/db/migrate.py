"""Alembic, driven from code: ``preflight db upgrade`` and the embedded SQLite self-upgrade."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from preflight.db.connectors import connector_of
from preflight.db.driver import SCHEMA_HEAD, storage_errors
from preflight.errors import SchemaMissingError

__all__ = [
    "SCHEMA_HEAD",
    "alembic_head",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "migrations_dir",
    "upgrade",
]


def migrations_dir() -> Path:
    """``preflight/_migrations`` inside a wheel; ``migrations/`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    bundled = package / "_migrations"
    return bundled if bundled.is_dir() else package.parent / "migrations"


@cache
def _alembic() -> SimpleNamespace:
    """Alembic's modules used here (~0.1 s to import), loaded on first use."""
    from alembic import command, config, script  # cold path: only a migration loads Alembic

    return SimpleNamespace(command=command, config=config, script=script)


def _config(connection: Connection | None = None) -> Any:
    config = _alembic().config.Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def alembic_head() -> str:
    """The head according to the migration scripts themselves (slow: imports Alembic)."""
    head = _alembic().script.ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return str(head)


def current_revision(connection: Connection) -> str | None:
    """The schema revision stored in the database, or None when there is none yet."""
    try:
        with connection.begin_nested() if connection.in_transaction() else connection.begin():
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    except DBAPIError:
        return None
    return None if row is None else str(row[0])


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (SQLite: one writer at a time)."""
    with storage_errors(DBAPIError), engine.begin() as connection:
        _alembic().command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with storage_errors(DBAPIError), engine.begin() as connection:
        _alembic().command.downgrade(_config(connection), revision)


def ensure_schema(engine: Engine) -> None:
    """Make sure the schema is at head before use.

    The embedded SQLite database upgrades itself on first use: concurrent first
    uses are safe because the migration runs inside one ``BEGIN IMMEDIATE``
    transaction and re-reads the version under that lock. PostgreSQL is shared by
    many hosts, so its schema changes only with an explicit ``preflight db upgrade``
    (the dialect's connector says which: :mod:`preflight.db.connectors`).
    """
    with storage_errors(DBAPIError), engine.connect() as connection:
        current = current_revision(connection)
    head = SCHEMA_HEAD
    if current == head:
        return
    if connector_of(engine).upgrades_itself:
        upgrade(engine)
        return
    state = "has no preflight schema" if current is None else f"is at revision {current}"
    raise SchemaMissingError(
        f"the database {state}, preflight needs {head}: run `preflight db upgrade`"
    )
