"""The sandbox's wire vocabulary: names, exact decimals, JSON text and the checks on every input.

Pure functions and constants, no state and no I/O: the default vendor's meters and paths, amounts
as exact bounded decimals (never floats), JSON rendered with a decimal's exact digits and parsed
with floats as decimals, :class:`Reply` (one complete HTTP answer), and the checks that turn
caller input into these values or raise :class:`BadInput`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from http import HTTPStatus
from typing import Final

# Not a secret: the well-known token of a local test double, printed by `preflight simulate`.
DEFAULT_TOKEN: Final = "sandbox-token"  # noqa: S105

CREDITS: Final = "credits"
QUOTA: Final = "api_quota_remaining"
METERS: Final = (CREDITS, QUOTA)
# The words that name every meter an account has: "both" from the two-meter default vendor,
# "all" for vendors with one meter or three.
EVERY_METER: Final = ("both", "all")

PROFILE_PATH: Final = "/api/open/v1/profile"
JOBS_PATH: Final = "/api/open/v1/jobs"

# Amounts are bounded so that every sum and difference is exact within EXACT: a float would
# round, and a Decimal with the default 28-digit context could round too.
_MAX_ADJUSTED_EXPONENT: Final = 30
_MIN_EXPONENT: Final = -30
EXACT: Final = Context(prec=200, traps=[InvalidOperation, Inexact, Overflow])
ZERO: Final = Decimal(0)

# JSON-number-like text only: Decimal() alone would also take "NaN", "Infinity" and "1_000".
_NUMBER_TEXT: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

_ERROR_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_quota",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class BadInput(ValueError):
    """Input the sandbox refuses: HTTP 400 on the control API, ValueError in process."""


# ---------------------------------------------------------------- input checks


def as_decimal(value: object, what: str) -> Decimal:
    """An exact, finite, bounded decimal from a JSON number, a numeric string or an int."""
    if isinstance(value, bool | float):
        # A float has already lost the exact amount; say so rather than guess.
        raise BadInput(f"{what} must be a decimal number or numeric string, not {value!r}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        raise BadInput(f"{what} must be a decimal number or numeric string, not {value!r}")
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int):
        raise BadInput(f"{what} must be finite")
    if number.adjusted() > _MAX_ADJUSTED_EXPONENT or exponent < _MIN_EXPONENT:
        raise BadInput(f"{what} is out of range")
    return number


def as_amount(value: object, what: str) -> Decimal:
    """:func:`as_decimal`, not negative."""
    number = as_decimal(value, what)
    if number < 0:
        raise BadInput(f"{what} must not be negative")
    return number


def as_optional_amount(value: object, what: str) -> Decimal | None:
    """:func:`as_amount`, or None (a meter left out)."""
    return None if value is None else as_amount(value, what)


def as_meter(value: object, known: Sequence[str] = METERS, *, allow_every: bool = False) -> str:
    """One of the ``known`` meters' names; where ``allow_every``, also ``both`` or ``all``
    (each meter present)."""
    allowed = (*known, *EVERY_METER) if allow_every else tuple(known)
    if not isinstance(value, str) or value not in allowed:
        raise BadInput(f"meter must be one of {', '.join(allowed)}, not {value!r}")
    return value


def as_seconds(value: object, what: str, maximum: float) -> float:
    """A duration from 0 to ``maximum`` seconds."""
    # Durations are not amounts: a float is fine here.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise BadInput(f"{what} must be a number of seconds, not {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise BadInput(f"{what} must be a number of seconds, not {value!r}") from None
    if not 0 <= seconds <= maximum:  # also false for NaN
        raise BadInput(f"{what} must be between 0 and {maximum:g} seconds")
    return seconds


def as_object(value: object, what: str) -> Mapping[str, object]:
    """A JSON object (string keys)."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise BadInput(f"{what} must be a JSON object")
    return value


def reject_unknown_keys(value: Mapping[str, object], allowed: frozenset[str], what: str) -> None:
    # Control input is written by hand in tests: a typo must fail, not be silently ignored.
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BadInput(f"unknown {what} field(s): {', '.join(unknown)}")


# ---------------------------------------------------------------- JSON text


def plain(number: Decimal) -> str:
    """The decimal's exact text without exponent: Decimal("12.50") -> "12.50", 1E+3 -> "1000"."""
    return format(number, "f")


def plain_meters(meters: Mapping[str, Decimal | None]) -> dict[str, str | None]:
    """Each meter as :func:`plain` text, None where the meter is left out."""
    return {name: None if value is None else plain(value) for name, value in meters.items()}


def render(value: object) -> str:
    """JSON text in which a Decimal is a number with its exact digits (json.dumps cannot)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value!r} has no JSON form")
        return plain(value)
    if isinstance(value, int | float | str):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, Mapping):
        items: list[str] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {key!r}")
            items.append(f"{json.dumps(key)}: {render(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> object:
    """The request body, floats as exact Decimals; ValueError if it is not JSON."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    parsed: object = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    return parsed


# ---------------------------------------------------------------- replies


def error_code(status: int) -> str:
    """The ``error`` word of an HTTP status, e.g. 402 -> ``insufficient_quota``."""
    if status in _ERROR_CODES:
        return _ERROR_CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


@dataclass(frozen=True)
class Reply:
    """One complete HTTP answer; Content-Length is always derived from ``body``."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def json_reply(
    status: int,
    payload: object,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> Reply:
    """A :class:`Reply` whose body is ``payload`` as :func:`render` text."""
    return Reply(status, render(payload).encode("utf-8"), headers=headers, close=close)


def bad_request(message: str) -> Reply:
    """400 ``{"error": "bad_request", "message": ...}``."""
    return json_reply(400, {"error": "bad_request", "message": message})
