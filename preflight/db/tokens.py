"""Every statement on the HTTP API's tokens. Repositories take the service's session."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from preflight.db.models import ApiToken


def add(
    session: Session, *, name: str, token_hash: str, scopes: tuple[str, ...], now: datetime
) -> ApiToken:
    row = ApiToken(name=name, token_hash=token_hash, scopes=list(scopes), created_at=now)
    session.add(row)
    session.flush()
    return row


def by_name(session: Session, name: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.name == name)).first()


def by_hash(session: Session, token_hash: str) -> ApiToken | None:
    """The token row whose hash is ``token_hash`` (an index lookup on a unique column)."""
    return session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def all_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))
