"""A pooled PostgreSQL connection the server ended is replaced at checkout (no pre-ping)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from preflight.db.session import Database

pytestmark = pytest.mark.postgres


def test_a_connection_the_server_terminated_is_replaced_before_use(postgres_url: str) -> None:
    database = Database.from_url(postgres_url)
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with database.read() as session:
            pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        # The connection is back in the pool, idle; the server ends its session.
        with admin.begin() as connection:
            assert connection.execute(
                sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
            ).scalar_one()
        time.sleep(0.2)  # the server's farewell reaches the idle socket

        with database.read() as session:
            new_pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

        assert new_pid != pid
    finally:
        admin.dispose()
        database.dispose()


def test_no_ping_is_spent_on_a_healthy_pooled_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database.from_url(postgres_url)
    pings: list[object] = []
    monkeypatch.setattr(database.engine.dialect, "do_ping", lambda conn: pings.append(conn))
    try:
        for _ in range(3):
            with database.read() as session:
                session.execute(sa.text("SELECT 1"))
    finally:
        database.dispose()
    assert pings == []
