"""Every error as an RFC 9457 problem answer: the app's exception handlers.

:mod:`preflight.http.problems` decides the status and type; this sends them.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from preflight.errors import PreflightError
from preflight.http.auth import AuthProblem
from preflight.http.edge import problem_response
from preflight.http.problems import (
    HTTP_KINDS,
    INTERNAL,
    VALIDATION,
    Kind,
    kind_of,
)
from preflight.logs import get_logger

log = get_logger("preflight.http")


async def _preflight_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PreflightError)
    kind = kind_of(exc)
    event = log.warning if kind.status >= 500 else log.info
    event("request_failed", status=kind.status, type=kind.type, error=str(exc))
    return problem_response(kind, str(exc))


async def _auth_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthProblem)
    return problem_response(exc.kind, exc.detail)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Never the input itself: it may be anything, secrets included.
    errors = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg"))}
        for error in exc.errors()
    ][:20]
    shown = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
    return problem_response(VALIDATION, shown or "invalid request", errors=errors)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    kind = HTTP_KINDS.get(exc.status_code) or Kind(exc.status_code, "http", "HTTP error")
    response = problem_response(kind, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _internal_error(_request: Request, exc: Exception) -> Response:
    log.error("internal_error", error=type(exc).__name__, exc_info=exc)
    return problem_response(INTERNAL, "internal error: the server log has the details")


def install(app: FastAPI) -> None:
    """Answer every error with its problem."""
    app.add_exception_handler(PreflightError, _preflight_error)
    app.add_exception_handler(AuthProblem, _auth_problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
