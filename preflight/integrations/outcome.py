"""A task's return value or exception read as an outcome, the same way in every orchestrator.

- The **cost** of a success comes from the value the task returned: a number, a decimal
  string, or a mapping with a ``"cost"`` key (:func:`cost_of`).
- The **HTTP status** of a failure comes from an ``httpx.HTTPStatusError``, a
  ``requests.HTTPError``, or any exception with an integer ``http_status`` attribute, on the
  exception itself or on the exceptions it was raised ``from`` (:func:`http_status_of`). A
  402 makes the outcome a quota failure, which ``record`` classifies with a live snapshot.

Pure functions of plain values: no orchestrator, no I/O, no preflight verb.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

from preflight.domain.amounts import AmountError, parse_amount, parse_amount_text
from preflight.errors import UsageError
from preflight.secret import scrub

__all__ = ["cost_of", "error_text", "failure_fields", "http_status_of", "success_fields"]

#: How far down ``raise ... from`` a status is looked for: a task that wraps its client's
#: error once or twice is common, a longer chain is not a wrapping.
_MAX_CAUSES: Final = 5
#: An error text is one line, and the query string of a URL in it (where some vendors want
#: their key) is never kept.
_QUERY: Final = re.compile(r"(https?://[^\s'\"?#]+)\?[^\s'\"]*")
_MAX_ERROR_CHARS: Final = 500


def cost_of(value: object) -> Decimal | None:
    """The cost a task's return value declares, or None when it declares none.

    A number (``int``, ``Decimal``, or a finite ``float`` read as its shortest text, so
    ``0.1`` is ``Decimal("0.1")``) is the cost; so is a string that reads as a decimal
    number. A mapping declares its ``"cost"`` entry, by the same rules (a mapping without
    one declares nothing). Anything else (None, a bool, other text, a list) declares none.
    A declared cost that is not an amount (negative, too long, not a number) raises
    :class:`UsageError` naming ``cost``: recording it as "no cost" would hide it.
    """
    if isinstance(value, Mapping):
        return _declared(value.get("cost")) if "cost" in value else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        if not number.is_finite():
            return None
    elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return _declared(value)


def _declared(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        if isinstance(value, float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise AmountError(f"not a finite number: {value!r}")
            return parse_amount(Decimal(repr(value)))
        if isinstance(value, str):
            return parse_amount_text(value.strip())
        return parse_amount(value)
    except AmountError as exc:
        raise UsageError(f"cost: {exc}") from None


def http_status_of(error: BaseException) -> int | None:
    """The HTTP status an exception carries, or None.

    Looked for on the exception, then on the one it was raised ``from``, and so on: an
    integer ``http_status`` attribute (100-599), or the response status of an
    ``httpx.HTTPStatusError`` or a ``requests.HTTPError``. Neither library is imported
    here: an exception of one can only exist once its module has been.
    """
    seen: BaseException | None = error
    for _ in range(_MAX_CAUSES):
        if seen is None:
            return None
        status = _own_status(seen)
        if status is not None:
            return status
        seen = seen.__cause__
    return None


def _own_status(error: BaseException) -> int | None:
    status = getattr(error, "http_status", None)
    if _is_status(status):
        return int(status)  # type: ignore[arg-type]  # an int, checked just above
    if _is_response_error(error):
        response = getattr(error, "response", None)
        code = getattr(response, "status_code", None)
        if _is_status(code):
            return int(code)  # type: ignore[arg-type]
    return None


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _is_response_error(error: BaseException) -> bool:
    for module, name in (("httpx", "HTTPStatusError"), ("requests", "HTTPError")):
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(error, kind):
            return True
    return False


def error_text(error: BaseException) -> str:
    """One line saying what failed: the exception's class and the first line of its
    message, with known secrets and URL query strings taken out."""
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return scrub(_QUERY.sub(r"\1?…", text))[:_MAX_ERROR_CHARS]


def success_fields(job_id: str, attempt: int, value: object) -> dict[str, object]:
    """The outcome fields of an attempt that returned ``value``."""
    fields: dict[str, object] = {"job_id": job_id, "status": "succeeded", "attempt": attempt}
    cost = cost_of(value)
    if cost is not None:
        fields["cost"] = cost
    return fields


def failure_fields(job_id: str, attempt: int, error: BaseException) -> dict[str, object]:
    """The outcome fields of an attempt that raised ``error``."""
    fields: dict[str, object] = {
        "job_id": job_id,
        "status": "failed",
        "attempt": attempt,
        "error": error_text(error),
    }
    status = http_status_of(error)
    if status is not None:
        fields["http_status"] = status
    return fields
