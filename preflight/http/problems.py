"""RFC 9457 problem details: the one table from preflight's error tree to HTTP statuses.

Like :mod:`preflight.cli.exit_codes` for exit codes, this is the only place that decides
a status. Every error body is ``application/problem+json`` with a stable ``type`` per
error class; the ``detail`` is the error's one-line message (tokens scrubbed), never a
stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from preflight.errors import (
    AuthError,
    BillingBlockedError,
    ConfigError,
    ConflictError,
    NoGoError,
    NotFoundError,
    PreflightError,
    SchemaMissingError,
    StorageError,
    UsageError,
    VendorError,
    VendorRejectedError,
    VendorUnavailableError,
)
from preflight.secret import scrub

PROBLEM_JSON: Final = "application/problem+json"
#: ``type`` URIs are relative references to the API's own docs: stable identifiers.
TYPE_BASE: Final = "/problems/"


@dataclass(frozen=True)
class Kind:
    """One row of the table: a status, a stable type and a title."""

    status: int
    slug: str
    title: str

    @property
    def type(self) -> str:
        return TYPE_BASE + self.slug


#: Most specific first: the first class an error is an instance of gives its problem.
BY_ERROR: Final[tuple[tuple[type[PreflightError], Kind], ...]] = (
    (NotFoundError, Kind(404, "not-found", "Not found")),
    (ConflictError, Kind(409, "conflict", "Conflicts with what is stored")),
    # Settings are the server's: a request cannot fix them (e.g. an account without token).
    (ConfigError, Kind(503, "server-config", "The server's settings cannot serve this")),
    (UsageError, Kind(400, "bad-request", "Bad request")),
    (NoGoError, Kind(409, "no-go", "The batch may not start")),
    (AuthError, Kind(502, "vendor-auth", "The vendor rejected the token")),
    (BillingBlockedError, Kind(502, "vendor-billing-blocked", "The vendor blocks billing")),
    (VendorRejectedError, Kind(502, "vendor-rejected", "The vendor rejected the request")),
    (VendorUnavailableError, Kind(503, "vendor-unavailable", "The vendor is unavailable")),
    (VendorError, Kind(502, "vendor-error", "The vendor failed")),
    (SchemaMissingError, Kind(503, "schema-missing", "The database schema is not at head")),
    (StorageError, Kind(503, "storage-unavailable", "The database is unavailable")),
)
INTERNAL: Final = Kind(500, "internal", "Internal error")
VALIDATION: Final = Kind(422, "validation", "The request does not match the API's schema")
UNAUTHORIZED: Final = Kind(401, "unauthorized", "Missing or invalid bearer token")
FORBIDDEN: Final = Kind(403, "forbidden", "The token lacks the scope this needs")
TOO_LARGE: Final = Kind(413, "too-large", "The request body is too large")
UNSUPPORTED_MEDIA: Final = Kind(415, "unsupported-media-type", "Unsupported content type")
#: Statuses from the framework itself (no such route, method not allowed, ...).
HTTP_KINDS: Final = {
    404: Kind(404, "not-found", "Not found"),
    405: Kind(405, "method-not-allowed", "Method not allowed"),
    413: TOO_LARGE,
}


def kind_of(error: PreflightError) -> Kind:
    return next((kind for cls, kind in BY_ERROR if isinstance(error, cls)), INTERNAL)


def problem(kind: Kind, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem body: ``type``, ``title``, ``status``, ``detail`` (scrubbed), extras."""
    return {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "detail": scrub(detail),
        **extra,
    }


#: Every kind a route may answer with, for the OpenAPI document.
ALL_KINDS: Final = (
    *(kind for _cls, kind in BY_ERROR),
    INTERNAL,
    VALIDATION,
    UNAUTHORIZED,
    FORBIDDEN,
    TOO_LARGE,
    UNSUPPORTED_MEDIA,
)
