"""``build_engine("sqlite://")``: one in-memory database for every session and thread, set up
like a file database (foreign keys, the exact ``decimal_sum``); and the fixture's copy of the
migrated schema."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from preflight.db import migrate
from preflight.db.models import Account, Base
from preflight.db.session import Database, build_engine, decimal_sum


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_every_session_and_thread_sees_the_one_in_memory_database(url: str) -> None:
    database = Database(build_engine(url))
    try:
        with database.write() as session:
            session.execute(sa.text("CREATE TABLE t (x TEXT)"))
            session.execute(sa.text("INSERT INTO t VALUES ('0.1'), ('0.2')"))
        seen: list[object] = []

        def read() -> None:
            with database.read() as session:
                seen.append(
                    session.scalar(
                        sa.select(decimal_sum(sa.column("x"))).select_from(sa.table("t"))
                    )
                )

        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        read()
        assert seen == [Decimal("0.3"), Decimal("0.3")]  # exact: never 0.30000000000000004
    finally:
        database.dispose()


def test_foreign_keys_are_enforced_in_memory() -> None:
    engine = build_engine("sqlite://")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_each_test_gets_the_migrated_schema_and_nothing_else(database: Database) -> None:
    with database.read() as session:
        tables = set(sa.inspect(session.connection()).get_table_names())
        assert migrate.current_revision(session.connection()) == migrate.SCHEMA_HEAD
        assert session.scalar(sa.select(sa.func.count()).select_from(Account)) == 0
    assert tables == {*Base.metadata.tables, "alembic_version"}
    migrate.ensure_schema(database.engine)  # at head: nothing to do, no Alembic run
