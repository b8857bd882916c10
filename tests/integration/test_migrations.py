"""upgrade → the models match the migrated schema → downgrade, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

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


def test_0003_moves_a_stored_402s_cost_into_its_expected_cost_and_back(
    database_url: str,
) -> None:
    engine = build_engine(database_url)
    amount = sa.String() if engine.dialect.name == "sqlite" else sa.Numeric()
    select_costs = sa.text(
        "SELECT job_id, cost, expected_cost FROM outcomes ORDER BY job_id"
    ).columns(job_id=sa.String(), cost=amount, expected_cost=amount)

    def costs() -> dict[str, tuple[Decimal | None, Decimal | None]]:
        with engine.connect() as connection:
            return {
                job: (
                    None if cost is None else Decimal(str(cost)),
                    None if expected is None else Decimal(str(expected)),
                )
                for job, cost, expected in connection.execute(select_costs)
            }

    try:
        migrate.upgrade(engine, "0002")
        now = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": now},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified,"
                    " labels, created_at, last_activity_at)"
                    " VALUES (1, 'B', 1, 0, 'open', false, '{}', :t, :t)"
                ),
                {"t": now},
            )
            rows = [
                # job, status, http status, quota, cost, expected cost
                ("q-cost", "failed", 402, True, "100", None),
                ("q-both", "failed", 402, True, "100", "90"),
                ("q-none", "failed", 402, True, None, "40"),
                ("charged", "failed", 500, False, "5", None),
                ("ok", "succeeded", 200, False, "7", None),
            ]
            for job, status, http, quota, cost, expected in rows:
                connection.execute(
                    sa.text(
                        "INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status,"
                        " cost, expected_cost, quota_failure, occurred_at, recorded_at)"
                        " VALUES (1, :job, 1, :status, :http, :cost, :expected, :quota, :t, :t)"
                    ),
                    {
                        "job": job,
                        "status": status,
                        "http": http,
                        "cost": cost,
                        "expected": expected,
                        "quota": quota,
                        "t": now,
                    },
                )
        before = costs()

        migrate.upgrade(engine)
        after = costs()
        assert after["q-cost"] == (Decimal(0), Decimal(100))
        assert after["q-both"] == (Decimal(0), Decimal(90))  # a declared expected cost wins
        assert after["q-none"] == (None, Decimal(40))
        assert after["charged"] == before["charged"]  # not a quota failure: consumed
        assert after["ok"] == before["ok"]

        migrate.downgrade(engine, "0002")
        restored = costs()
        assert restored["q-cost"][0] == Decimal(100)
        assert restored["q-none"] == before["q-none"]
        assert restored["charged"] == before["charged"]
        assert restored["ok"] == before["ok"]
    finally:
        engine.dispose()
