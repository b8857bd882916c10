"""Alembic environment: the URL comes from preflight's settings, types are compared."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from preflight.db.models import Base
from preflight.db.session import build_engine

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: later migrations copy-and-move tables.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        # Called from preflight.db.migrate inside its own transaction.
        _configure(connection)
        context.run_migrations()
        return
    from preflight.settings import load_settings

    url = context.config.get_main_option("sqlalchemy.url") or load_settings().database_url
    engine = build_engine(url)
    with engine.begin() as connection:
        _configure(connection)
        context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
