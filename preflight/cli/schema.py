"""Setting up: ``db upgrade`` migrates the configured database (Alembic)."""

from __future__ import annotations

import click

from preflight.cli.support import load_cli_settings
from preflight.services.schema import upgrade_schema


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> int:
    """Migrate the database in PREFLIGHT_DATABASE_URL (needed once for PostgreSQL)."""
    current = upgrade_schema(load_cli_settings(tokens=False), revision)
    click.echo(f"database schema at revision {current}")
    return 0
