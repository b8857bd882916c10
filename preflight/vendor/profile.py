"""The vendor's balance body, read exactly: :class:`Profile` and :func:`parse_profile`.

Everything the vendor sends is parsed tolerantly (numbers or numeric strings, missing
meters, unknown fields kept in ``raw``) but exactly: amounts are ``Decimal`` from the first
byte, never ``float``, and must fit the bound of :mod:`preflight.domain.amounts`. A vendor
echoing our token gets it replaced in every string of the body before the profile is
built, so nothing downstream (database, output, logs) ever sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, NoReturn

from preflight.adapters import DEFAULT_ADAPTER, Adapter, Reading
from preflight.domain.amounts import MAX_NUMBER_CHARS
from preflight.errors import UnusableResponseError
from preflight.secret import contains_secret, scrub
from preflight.transport import unusable

__all__ = [
    "METER_NAMES",
    "PROFILE_PATH",
    "Profile",
    "decode",
    "error_message",
    "load_json",
    "parse_profile",
    "profile_of",
    "read_documents",
]

PROFILE_PATH: Final = "/api/open/v1/profile"
METER_NAMES: Final = ("credits", "api_quota_remaining")


@dataclass(frozen=True)
class Profile:
    """One successful balance reading, parsed exactly by the account's adapter.

    ``raw`` is the body text exactly as received (unknown fields untouched; an adapter
    that reads two endpoints keeps both bodies, by path). ``credits`` and
    ``api_quota_remaining`` hold the meters of those names; ``extra_meters`` every other
    meter by name (``characters``, ``usd``, ...). A meter is ``None`` when the vendor did
    not send it (or sent ``null``). ``blocked`` is the vendor's own word that the account
    cannot pay for calls (a no-go whatever the balance).
    """

    raw: str
    user_id: str | None
    tier: str | None
    credits: Decimal | None
    api_quota_remaining: Decimal | None
    http_status: int
    latency_ms: int
    attempts: int
    extra_meters: Mapping[str, Decimal | None] = field(default_factory=dict)
    meter_names: tuple[str, ...] = METER_NAMES
    blocked: str | None = None

    @property
    def meters(self) -> dict[str, Decimal | None]:
        """Every meter of the reading by name, in the adapter's order of preference."""
        return {name: self.meter(name) for name in self.meter_names}

    def meter(self, name: str) -> Decimal | None:
        """The value of meter ``name``; ValueError for a meter this reading cannot have."""
        if name == "credits" and name in self.meter_names:
            return self.credits
        if name == "api_quota_remaining" and name in self.meter_names:
            return self.api_quota_remaining
        if name in self.meter_names:
            return self.extra_meters.get(name)
        raise ValueError(f"unknown meter {name!r} (known: {', '.join(self.meter_names)})")


def profile_of(
    reading: Reading, raw: str, *, http_status: int, latency_ms: int, attempts: int
) -> Profile:
    """The :class:`Profile` of an adapter's :class:`~preflight.adapters.Reading`."""
    meters = reading.meters
    return Profile(
        raw=raw,
        user_id=reading.user_id,
        tier=reading.tier,
        credits=meters.get("credits"),
        api_quota_remaining=meters.get("api_quota_remaining"),
        http_status=http_status,
        latency_ms=latency_ms,
        attempts=attempts,
        extra_meters={k: v for k, v in meters.items() if k not in METER_NAMES},
        meter_names=tuple(meters),
        blocked=reading.blocked,
    )


def _reject_constant(name: str) -> NoReturn:
    # json calls this for NaN / Infinity / -Infinity, which no real balance can be.
    raise ValueError(f"{name} is not a number")


class _NumberTooLong(ValueError):
    """Raised from inside json.loads: no usable number is this long (see MAX_NUMBER_CHARS)."""


def _json_number(text: str) -> Decimal:
    # Checked before Decimal() reads it; int() would even raise past 4300 digits.
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberTooLong
    return Decimal(text)


def load_json(raw: str) -> object:
    """The body as JSON, numbers as exact decimals; raises ``ValueError`` or ``RecursionError``."""
    # A leading BOM is not part of the JSON but some servers send one; raw keeps it.
    return json.loads(
        raw.removeprefix("\ufeff"),
        parse_float=_json_number,
        parse_int=_json_number,
        parse_constant=_reject_constant,
    )


# One JSON string literal; in text that parsed as JSON, these are exactly its strings.
_JSON_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _scrub_literal(match: re.Match[str]) -> str:
    literal = match.group()
    inner = literal[1:-1]
    if "\\" not in inner:
        # No escapes: the text is the literal itself, and the marker needs none either.
        return f'"{scrub(inner)}"'
    text = json.loads(literal)
    cleaned = scrub(text)
    # ensure_ascii: the body may spell a lone surrogate, which must stay an escape.
    return literal if cleaned == text else json.dumps(cleaned)


def _scrub_json_strings(raw: str) -> str:
    """``raw`` (valid JSON) with every known secret replaced inside its strings (keys too).

    Escaped spellings (``"\\u0073k-..."``) are decoded first, so a vendor echoing our token
    in any form cannot get it stored. Numbers and layout are left byte for byte.
    """
    return _JSON_STRING.sub(_scrub_literal, raw)


def decode(raw: str, http_status: int, attempts: int) -> tuple[str, object]:
    """``raw`` as JSON (numbers exact), any known secret scrubbed from its strings first.

    Returns the text to keep (scrubbed when the vendor echoed a secret) and the document;
    raises :class:`UnusableResponseError` with the status and attempts.
    """
    try:
        data = load_json(raw)
        # Escapes can spell a secret that a plain search would miss; without any, a
        # plain search is enough, and the common body is not copied.
        if isinstance(data, dict | list) and ("\\" in raw or contains_secret(raw)):
            cleaned = _scrub_json_strings(raw)
            if cleaned != raw:
                raw, data = cleaned, load_json(cleaned)
    except _NumberTooLong:
        unusable(
            f"body has a number longer than {MAX_NUMBER_CHARS} characters",
            status=http_status,
            attempts=attempts,
        )
    except (ValueError, RecursionError):
        unusable("body is not valid JSON", status=http_status, attempts=attempts)
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else "a scalar"
        unusable(f"body is {kind}, not a JSON object", status=http_status, attempts=attempts)
    return raw, data


def _joined_raw(paths: tuple[str, ...], raws: list[str]) -> str:
    """One text for the bodies of several endpoints: a JSON object keyed by path, each
    body kept byte for byte (each is a valid JSON object, so the whole is valid JSON)."""
    if len(raws) == 1:
        return raws[0]
    return "{" + ", ".join(f"{json.dumps(p)}: {r}" for p, r in zip(paths, raws, strict=True)) + "}"


def parse_profile(
    raw: str,
    *,
    http_status: int = 200,
    latency_ms: int = 0,
    attempts: int = 1,
    adapter: Adapter = DEFAULT_ADAPTER,
) -> Profile:
    """Parse a balance body exactly with ``adapter``, or raise :class:`UnusableResponseError`.

    Meters may be JSON numbers or numeric strings; either may be missing or ``null``.
    Known fields with unusable values (``"abc"``, a negative balance where the vendor
    has none, NaN, a bool, a list, an amount outside the bound of
    :mod:`preflight.domain.amounts`) make the whole body unusable rather than silently
    half-read. Any known secret (our token) the vendor echoes is replaced in every string
    of the body, ``raw`` included, before anything is read from it.
    """
    raw, data = decode(raw, http_status, attempts)
    return read_documents(adapter, [raw], [data], http_status, latency_ms, attempts)


def read_documents(
    adapter: Adapter,
    raws: list[str],
    documents: list[object],
    http_status: int,
    latency_ms: int,
    attempts: int,
) -> Profile:
    try:
        reading = adapter.read(documents)
    except UnusableResponseError as exc:
        message = scrub(exc.message)
        raise UnusableResponseError(message, status=http_status, attempts=attempts) from None
    return profile_of(
        reading,
        _joined_raw(adapter.paths(), raws),
        http_status=http_status,
        latency_ms=latency_ms,
        attempts=attempts,
    )


def error_message(data: object, depth: int = 0) -> str:
    """The human part of a vendor error body: ``message`` / ``error`` / ``detail``, any nesting."""
    if depth > 4:
        return ""
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "msg"):
            found = error_message(data.get(key), depth + 1)
            if found:
                return found
        return ""
    if isinstance(data, list):
        # FastAPI-style validation bodies carry a list of problems: show all of them.
        parts = (error_message(item, depth + 1) for item in data[:10])
        return "; ".join(part for part in parts if part)
    return ""
