"""A vendor token that cannot leak by accident.

``Secret`` hides its value from ``repr``/``str``/f-strings/pickling, and every
secret ever built is remembered so that the log redaction processor and the CLI
error printer can scrub it from any text, wherever it came from (an httpx
message, an exception, a traceback).
"""

from __future__ import annotations

import re
import threading
from typing import Final, NoReturn

REDACTED: Final = "[REDACTED]"

_known: set[str] = set()
_known_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

# Scrubbing every occurrence of a very short "token" would garble every message (a
# one-letter token redacts that letter everywhere); such a value is no real secret.
MIN_SCRUBBED_LENGTH: Final = 6

#: What a token may be: it travels in an HTTP header, where anything else breaks the
#: request (non-ASCII), cuts it (a line break) or escapes redaction (a space).
#: (A rule, not a secret: S105 only goes by the name.)
TOKEN_FORMAT: Final = "a token must be printable ASCII, without spaces or line breaks"  # noqa: S105
_TOKEN = re.compile(r"[\x21-\x7e]+")

# What follows "Bearer": a credential, unless it is a word of prose. In a header
# ("Authorization: Bearer x", as a header line or a JSON/dict key) it is always a value;
# elsewhere it is one when it looks like one. Without that distinction the product's own
# sentences ("send an Authorization header with a Bearer token") came out garbled.
_BEARER = re.compile(
    r"(?i)(?P<header>authorization[\"']?\s*[:=]\s*[\"']?)?"
    r"(?P<scheme>bearer\s+)(?P<value>[^\s'\",;]+)"
)
#: A word of prose after "Bearer" (a letter-only word, capitalised at most, shorter than
#: any real token; trailing punctuation allowed), or a placeholder such as ``<token>``.
_PROSE = re.compile(r"(?:[A-Za-z][a-z]{0,19}|<[A-Za-z _-]{1,30}>)[.:!?)\]]*")


class Secret:
    """A string that only ``reveal()`` gives back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a secret cannot be empty")
        self._value = value
        _remember(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def is_valid_token(value: str) -> bool:
    """Whether ``value`` has the shape of a bearer token (see :data:`TOKEN_FORMAT`)."""
    return _TOKEN.fullmatch(value) is not None


def _remember(value: str) -> None:
    global _pattern
    if len(value) < MIN_SCRUBBED_LENGTH:
        return
    with _known_lock:
        if value in _known:
            return
        _known.add(value)
        # Longest first so that a token containing another is scrubbed whole.
        alternatives = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def contains_secret(text: str) -> bool:
    """Whether :func:`scrub` would change ``text`` (without building a copy of it)."""
    pattern = _pattern
    if pattern is not None and pattern.search(text):
        return True
    return any(_is_credential(match) for match in _BEARER.finditer(text))


def _is_credential(match: re.Match[str]) -> bool:
    return match["header"] is not None or _PROSE.fullmatch(match["value"]) is None


def _redact_bearer(match: re.Match[str]) -> str:
    if not _is_credential(match):
        return match[0]
    return f"{match['header'] or ''}{match['scheme']}{REDACTED}"


def scrub(text: str) -> str:
    """Return ``text`` with every known secret and any bearer credential replaced (the
    value only: "Bearer" and the words around it stay)."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _BEARER.sub(_redact_bearer, text)
