"""Every statement on the HTTP API's tokens. Repositories take the service's session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from preflight.db.models import ApiToken
from preflight.db.session import Database

BY_HASH: Final = (
    "SELECT id, name, token_hash, scopes, created_at, revoked_at FROM api_tokens"
    " WHERE token_hash = ?"
)


@dataclass(frozen=True)
class TokenRow:
    """A row of ``api_tokens`` as :class:`ApiToken` reads it, without the ORM."""

    id: int
    name: str
    token_hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def _row(token: ApiToken) -> TokenRow:
    return TokenRow(
        token.id,
        token.name,
        token.token_hash,
        tuple(token.scopes),
        token.created_at,
        token.revoked_at,
    )


def add(
    session: Session, *, name: str, token_hash: str, scopes: tuple[str, ...], now: datetime
) -> TokenRow:
    token = ApiToken(name=name, token_hash=token_hash, scopes=list(scopes), created_at=now)
    session.add(token)
    session.flush()
    return _row(token)


def _by_name(session: Session, name: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.name == name)).first()


def by_name(session: Session, name: str) -> TokenRow | None:
    token = _by_name(session, name)
    return None if token is None else _row(token)


def revoke(session: Session, name: str, *, clock: Callable[[], datetime]) -> TokenRow | None:
    """Revoke the token named ``name`` now (``clock``'s time) unless it is revoked already;
    the token as it is then, or None when there is none."""
    token = _by_name(session, name)
    if token is None:
        return None
    if token.revoked_at is None:
        token.revoked_at = clock()
        session.flush()
    return _row(token)


def peek_by_hash(database: Database, token_hash: str) -> TokenRow | None:
    """The token row whose hash is ``token_hash`` as committed now (an index lookup on a
    unique column): one statement outside any transaction, since a request is
    authenticated before its verb opens one, and every request is."""
    connector = database.connector
    row = database.peek(connector.sql(BY_HASH), (token_hash,))
    if row is None:
        return None
    pk, name, stored_hash, scopes, created_at, revoked_at = row
    # As the driver reads them, outside the column types: the connector reads them alike.
    created = connector.read_time(created_at)
    assert created is not None
    return TokenRow(
        pk,
        name,
        stored_hash,
        tuple(connector.read_json(scopes)),
        created,
        connector.read_time(revoked_at),
    )


def all_tokens(session: Session) -> list[TokenRow]:
    return [_row(token) for token in session.scalars(select(ApiToken).order_by(ApiToken.id))]
