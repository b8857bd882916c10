"""Bearer authentication of the HTTP API, with scopes.

Every route but ``/healthz`` (and the API's own description: ``/openapi.json``, ``/docs``)
needs ``Authorization: Bearer <token>`` with a token made by ``preflight token create``.
The token is hashed and looked up by its SHA-256 (see :mod:`preflight.services.tokens` for
why that is constant-time where it matters); only hashes are stored. A missing, unknown or
revoked token is a 401; a valid token without the route's scope is a 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Final

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from preflight.domain.tokens import grants
from preflight.http.problems import FORBIDDEN, UNAUTHORIZED, Kind
from preflight.secret import is_valid_token
from preflight.services import tokens
from preflight.services.runtime import Runtime
from preflight.services.tokens import TokenView

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from `preflight token create --scope ...`.",
)


class AuthProblem(Exception):
    """401 or 403, answered as problem+json (with ``WWW-Authenticate`` on a 401)."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


#: Where :mod:`preflight.http.edge` leaves the token it verified before a request's body
#: was read (in the request's state), so that the route does not look it up again.
VERIFIED_TOKEN: Final = "preflight_verified_token"  # noqa: S105 - a key, not a secret


def verify(rt: Runtime, scheme: str | None, presented: str | None) -> TokenView:
    """The active token presented as ``Authorization: <scheme> <presented>``; a 401
    ``AuthProblem`` otherwise."""
    if not scheme or not presented or scheme.lower() != "bearer":
        raise AuthProblem(UNAUTHORIZED, "send an Authorization header with a Bearer token")
    view = tokens.authenticate(rt, presented) if is_valid_token(presented) else None
    if view is None:
        raise AuthProblem(UNAUTHORIZED, "the bearer token is unknown or revoked")
    return view


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> TokenView:
    """The request's active token: the one the edge verified before reading the body, or
    looked up now (in a worker thread: a database read)."""
    view: TokenView | None = getattr(request.state, VERIFIED_TOKEN, None)
    if view is None:
        view = await anyio.to_thread.run_sync(
            verify,
            runtime_of(request),
            credentials.scheme if credentials else None,
            credentials.credentials if credentials else None,
        )
    request.state.token_name = view.name
    return view


def require(scope: str | None) -> Callable[..., Awaitable[TokenView]]:
    """A dependency: an active token, with ``scope`` (None: any valid token). Async, so
    that a token the edge already verified costs no trip to the thread pool."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> TokenView:
        view = await authenticate(request, credentials)
        if scope is not None and not grants(view.scopes, scope):
            raise AuthProblem(FORBIDDEN, f"this needs a token with the {scope!r} scope")
        return view

    dependency.__name__ = f"require_{scope or 'token'}"
    return dependency
