"""upgrade → the models match the migrated schema → downgrade, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from preflight.db import migrate
from preflight.db.models import Base
from preflight.db.session import build_engine
from preflight.errors import SchemaMissingError


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_matches_models_then_downgrades(database_url: str) -> None:
    engine = build_engine(database_url)
    try:
        migrate.upgrade(engine)
        assert _tables(engine) == set(Base.metadata.tables)
        with engine.connect() as connection:
            assert migrate.current_revision(connection) == migrate.alembic_head()
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        migrate.downgrade(engine)
        assert _tables(engine) == set()
    finally:
        engine.dispose()


def test_schema_head_constant_is_alembics_head() -> None:
    assert migrate.alembic_head() == migrate.SCHEMA_HEAD


def test_sqlite_upgrades_itself_on_first_use(sqlite_url: str) -> None:
    engine = build_engine(sqlite_url)
    try:
        migrate.ensure_schema(engine)
        assert _tables(engine) == set(Base.metadata.tables)
        migrate.ensure_schema(engine)  # a second use is a no-op
    finally:
        engine.dispose()


def test_postgres_needs_an_explicit_upgrade(postgres_url: str) -> None:
    engine = build_engine(postgres_url)
    try:
        with pytest.raises(SchemaMissingError, match="preflight db upgrade"):
            migrate.ensure_schema(engine)
        migrate.upgrade(engine)
        migrate.ensure_schema(engine)
    finally:
        engine.dispose()
