"""The HTTP API's bearer tokens: their scopes, their shape and the one hash we keep.

A token is shown once, when it is created; the database keeps only its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

from preflight.domain.errors import UsageError

#: What a token may do. ``admin`` implies every other scope.
SCOPES: Final = ("check", "record", "read", "audit", "metrics", "admin")
ADMIN: Final = "admin"
#: Tokens we make start with this, so a leaked one is easy to recognise (and to grep for).
TOKEN_PREFIX: Final = "pft_"  # noqa: S105 - a prefix, not a secret
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")


def new_token() -> str:
    """A fresh random token: 256 bits, URL-safe, printable ASCII."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The hex SHA-256 of ``token``: what the database keeps and requests are looked up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"check,record"`` (or a list) → known scopes in order, without duplicates."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not scopes:
        raise UsageError(f"scope: give at least one of {', '.join(SCOPES)}")
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise UsageError(f"scope: unknown {', '.join(unknown)} (use {', '.join(SCOPES)})")
    return scopes


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            "name: 1-100 characters of letters, digits and ._:@-, starting with a letter or digit"
        )
    return name


def grants(scopes: tuple[str, ...] | list[str], needed: str) -> bool:
    """Whether a token with ``scopes`` may do what needs ``needed``."""
    return needed in scopes or ADMIN in scopes
