"""The HTTP edge: what a request must show before the server reads its body.

An ASGI middleware in front of every route (FastAPI reads a route's JSON body *before* it
resolves the route's dependencies, so a dependency is too late):

- **A body needs a valid token first.** A request that announces a body (a
  ``Content-Length`` above zero, or a ``Transfer-Encoding``) is answered 401 unless its
  bearer token is active, before a byte of the body is read: an anonymous client cannot
  make the server hold, parse or even wait for its upload. The token is looked up once;
  the route's scope check reuses it (:data:`preflight.http.auth.VERIFIED_TOKEN`). Requests
  without a body are authenticated by their route as before (``/healthz`` needs nothing).
- **A body read whole is capped** at ``PREFLIGHT_HTTP_MAX_BODY_BYTES``: 413 problem+json
  when the ``Content-Length`` says more (nothing read), or as soon as a body without one
  (chunked) goes past it. A route marked :func:`streams_body` (the outcomes import) is not
  capped in total when the body is JSON Lines: it reads line by line, each line capped by
  the importer (:data:`preflight.domain.outcome.MAX_LINE_BYTES`), never the whole.

A refused body is not read by the application; the server discards what the client still
sends, so the client gets the answer once it has sent it (memory stays flat either way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preflight.http import auth
from preflight.http.bodies import NDJSON_TYPES
from preflight.http.problems import PROBLEM_JSON, TOO_LARGE, Kind, problem
from preflight.services.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute :func:`streams_body` sets on a route's endpoint.
_STREAMS: Final = "__preflight_streams_body__"


def streams_body(endpoint: F) -> F:
    """Mark a route that reads a JSON Lines body as a stream (line by line, each line
    capped): such a body is exempt from the total cap."""
    setattr(endpoint, _STREAMS, True)
    return endpoint


def problem_response(kind: Kind, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response (a 401 says which scheme it wants, RFC 9110)."""
    headers = {"WWW-Authenticate": "Bearer"} if kind.status == 401 else None
    return JSONResponse(
        problem(kind, detail, **extra),
        status_code=kind.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def too_large_detail(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes (PREFLIGHT_HTTP_MAX_BODY_BYTES); "
        "outcomes in any number stream as application/x-ndjson"
    )


class BodyTooLarge(HTTPException):
    """A body read whole went past the cap. An ``HTTPException``, so that the framework,
    which reads the body, lets it through to the app's handler (a 413 problem)."""

    def __init__(self, limit: int) -> None:
        super().__init__(TOO_LARGE.status, too_large_detail(limit))


class EdgeGuard:
    """The middleware (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.max_body_bytes = runtime.settings.http_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = _content_length(headers)
        if length == 0 and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: the route authenticates
            return
        try:
            view = await anyio.to_thread.run_sync(self._verify, headers.get("authorization"))
        except auth.AuthProblem as refused:
            await _refuse(scope, receive, send, problem_response(refused.kind, refused.detail))
            return
        scope.setdefault("state", {})[auth.VERIFIED_TOKEN] = view
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media in NDJSON_TYPES and getattr(_endpoint(scope), _STREAMS, False):
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        if length is not None and length > limit:
            too_large = problem_response(TOO_LARGE, too_large_detail(limit))
            await _refuse(scope, receive, send, too_large)
            return
        await self._capped(scope, receive, send, limit)

    def _verify(self, authorization: str | None) -> Any:
        scheme, _, presented = (authorization or "").strip().partition(" ")
        return auth.verify(self.runtime, scheme, presented.strip())

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge:
            # Raised where no handler of the app saw it (the app's own handler answers
            # the usual case): answer here unless a response has begun.
            if started:
                raise
            await problem_response(TOO_LARGE, too_large_detail(limit))(scope, receive, send)


def _content_length(headers: Headers) -> int | None:
    """The announced body length; None when there is none to go by (chunked)."""
    text = headers.get("content-length")
    if text is None:
        return None if "transfer-encoding" in headers else 0
    try:
        return int(text)
    except ValueError:
        return None  # the server's parser refuses it before we see it; cap as we read


def _route(scope: Scope) -> Any:
    """The route this request goes to (as the app's router would pick it), or None."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, _child = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def _endpoint(scope: Scope) -> Any:
    return getattr(_route(scope), "endpoint", None)


async def _refuse(scope: Scope, receive: Receive, send: Send, response: JSONResponse) -> None:
    """Answer for the route, unread: named in the scope as the router would, so that the
    HTTP metrics count the refusal under its route's template."""
    route = _route(scope)
    if route is not None:
        scope["route"] = route
    await response(scope, receive, send)
