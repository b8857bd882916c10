"""A request's token is looked up by its hash in one statement outside any transaction: what
that reads is what the ORM reads, a revocation by another process is seen at the very next
request, and on PostgreSQL a broken pooled connection falls back to a read transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa

from preflight.db import tokens as store
from preflight.domain.tokens import token_hash
from preflight.services.runtime import Runtime
from preflight.services.tokens import authenticate, create_token, revoke_token
from preflight.settings import load_settings
from tests.support import upgrade_schema


def _runtime(url: str) -> Runtime:
    return Runtime(load_settings({"PREFLIGHT_DATABASE_URL": url}))


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    upgrade_schema(database_url)
    with _runtime(database_url) as rt:
        yield rt


def test_the_lookup_reads_what_the_orm_reads(runtime: Runtime) -> None:
    create_token(runtime, "kept", "check,read")
    create_token(runtime, "gone", "admin")
    revoke_token(runtime, "gone")
    with runtime.database.read() as session:
        stored = [
            (row.id, row.name, row.token_hash, tuple(row.scopes), row.created_at, row.revoked_at)
            for row in store.all_tokens(session)
        ]

    for pk, name, digest, scopes, created_at, revoked_at in stored:
        found = store.peek_by_hash(runtime.database, digest)
        assert found == store.TokenRow(pk, name, digest, scopes, created_at, revoked_at)
        assert found.created_at.tzinfo is UTC
        assert found.revoked_at is None or found.revoked_at.tzinfo is UTC
    assert [row[5] is None for row in stored] == [True, False]
    assert store.peek_by_hash(runtime.database, token_hash("pft_unknown")) is None


def test_a_token_revoked_by_another_process_is_refused_at_its_next_request(
    runtime: Runtime, database_url: str
) -> None:
    token = create_token(runtime, "soon-revoked", "read").token.reveal()
    for _ in range(3):  # the server's pooled connection has read the token, and is idle
        assert authenticate(runtime, token) is not None

    with _runtime(database_url) as elsewhere:  # its own engine and pool: another process
        revoke_token(elsewhere, "soon-revoked")

    assert authenticate(runtime, token) is None


@pytest.mark.postgres
def test_a_broken_pooled_connection_falls_back_to_a_read_transaction(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_schema(postgres_url)
    with _runtime(postgres_url) as rt:
        token = create_token(rt, "t", "read").token.reveal()
        engine = rt.database.engine
        checkout = engine.raw_connection
        broken: list[Any] = []

        def closed_under_us() -> Any:
            pooled = checkout()
            pooled.driver_connection.close()  # as if the server had gone since the checkout
            broken.append(pooled)
            return pooled

        monkeypatch.setattr(engine, "raw_connection", closed_under_us)
        view = authenticate(rt, token)

        assert view is not None
        assert view.name == "t"
        assert len(broken) == 1

        def refused() -> Any:
            raise sa.exc.OperationalError("connect", None, Exception("refused"))

        monkeypatch.setattr(engine, "raw_connection", refused)
        assert authenticate(rt, token) is not None
