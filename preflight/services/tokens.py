"""``token create | list | revoke`` and the HTTP API's authentication of a bearer token.

The token itself is returned once, by :func:`create_token`; the database keeps only its
SHA-256. A request is authenticated by hashing the presented token and looking the hash
up (a unique index): the lookup's timing depends on the *hash*, which an attacker cannot
steer towards a stored one without a SHA-256 preimage, so it leaks nothing useful about
any token. The found row's hash is still compared with ``hmac.compare_digest``, so no
byte-by-byte comparison of secrets happens anywhere in Python either.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from preflight.db import tokens as store
from preflight.domain.tokens import new_token, parse_scopes, token_hash, validate_name
from preflight.domain.wire import time_text
from preflight.errors import ConflictError, NotFoundError
from preflight.logs import get_logger
from preflight.secret import Secret
from preflight.services.runtime import Runtime

log = get_logger("preflight.tokens")


@dataclass(frozen=True)
class TokenView:
    """A stored token, without the token: its name, scopes and state."""

    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": time_text(self.created_at),
            "revoked_at": time_text(self.revoked_at),
            "active": self.active,
        }


@dataclass(frozen=True)
class CreatedToken:
    """A new token: ``token`` is its only copy (a :class:`Secret`: never in a repr or log)."""

    view: TokenView
    token: Secret


def _view(row: store.TokenRow) -> TokenView:
    return TokenView(row.id, row.name, tuple(row.scopes), row.created_at, row.revoked_at)


def create_token(rt: Runtime, name: str, scopes: str | list[str]) -> CreatedToken:
    """A new token named ``name`` with ``scopes``; ConflictError when the name is taken."""
    validate_name(name)
    granted = parse_scopes(scopes)
    token = new_token()
    with rt.database.write() as session:
        if store.by_name(session, name) is not None:
            raise ConflictError(f"name: a token named {name!r} exists (revoke it, or pick another)")
        row = store.add(
            session, name=name, token_hash=token_hash(token), scopes=granted, now=rt.clock()
        )
        view = _view(row)
    log.info("api_token_created", name=name, scopes=list(granted))
    return CreatedToken(view, Secret(token))


def list_tokens(rt: Runtime) -> list[TokenView]:
    with rt.database.read() as session:
        return [_view(row) for row in store.all_tokens(session)]


def revoke_token(rt: Runtime, name: str) -> TokenView:
    """Revoke the token named ``name`` (idempotent: a revoked token stays revoked)."""
    with rt.database.write() as session:
        row = store.revoke(session, name, clock=rt.clock)
        if row is None:
            raise NotFoundError(f"no token named {name!r}")
        view = _view(row)
    log.info("api_token_revoked", name=name)
    return view


def authenticate(rt: Runtime, presented: str) -> TokenView | None:
    """The active token ``presented`` is, or None (unknown or revoked: the same to a caller)."""
    digest = token_hash(presented)
    # Read as committed at this request, never cached: a token revoked by any process is
    # refused from its next request on.
    row = store.peek_by_hash(rt.database, digest)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    view = _view(row)
    return view if view.active else None
