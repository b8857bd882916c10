"""What every route module shares: path and query parameters, the documented answers, the
JSON response, the thread pool hop and the account check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Final, TypeVar

import anyio
from fastapi import Depends, Path, Query
from fastapi.responses import JSONResponse

from preflight import contract
from preflight.errors import NotFoundError
from preflight.http import schemas
from preflight.http.auth import require
from preflight.services.runtime import Runtime
from preflight.settings import parse_since as settings_parse_since

T = TypeVar("T")

BatchId = Annotated[str, Path(pattern=contract.BATCH_ID, description="The batch id.")]
AccountName = Annotated[str, Path(pattern=schemas.ACCOUNT_PATTERN, description="An account.")]
AccountFilter = Annotated[
    str | None, Query(pattern=schemas.ACCOUNT_PATTERN, description="Only this account.")
]
Since = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Only newer: an ISO 8601 time, or a duration (24h, 7d).",
        json_schema_extra=schemas.SINCE,
    ),
]

#: The token scope each kind of route needs.
SCOPED: Final = {scope: Depends(require(scope)) for scope in ("check", "record", "read", "audit")}

#: Answers every authenticated route may give, besides its own (documented per route).
_COMMON: Final = (400, 401, 403, 422, 503)


def errors(*extra: int) -> dict[int | str, dict[str, Any]]:
    """The problem answers of a route: the common ones and ``extra``."""
    return {status: {"model": schemas.Problem} for status in sorted({*_COMMON, *extra})}


def answers(shape: contract.Shape[Any], *, many: bool = False) -> dict[str, Any]:
    """A 200 answer documented by the contract's shape (a list of them, with ``many``)."""
    ref = {"$ref": f"#/components/schemas/{shape.name}"}
    schema = {"type": "array", "items": ref} if many else ref
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def answer(data: Any) -> JSONResponse:
    return JSONResponse(data)


async def run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A synchronous service call, in the server's thread pool."""
    return await anyio.to_thread.run_sync(partial(func, *args, **kwargs))


def known_account(rt: Runtime, account: str | None) -> str | None:
    """``account`` if configured; NotFoundError (404) otherwise (None: the default)."""
    if account is not None and account not in rt.settings.accounts:
        raise NotFoundError(f"no account {account!r} is configured on this server")
    return account


def parse_since(value: str | None) -> datetime | None:
    """``since``: a duration back from now (24h, 7d) or an ISO 8601 time, as in the CLI."""
    return None if value is None else settings_parse_since(value, "since")
