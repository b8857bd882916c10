"""Every error preflight raises on purpose, under one root.

    PreflightError                      exit 1 unless a subclass says otherwise
    ├── NoGoError                       the verdict's code: a batch refused to start
    ├── UsageError                      exit 2   bad arguments or bad input
    │   ├── ConfigError                          bad settings or TOML file
    │   └── ConflictError                        e.g. a different outcome for a recorded key
    ├── VendorError                              the vendor's profile API
    │   ├── AuthError                   exit 11  HTTP 401: never retried
    │   ├── BillingBlockedError         exit 12  HTTP 402 on the profile itself
    │   ├── VendorRejectedError         exit 2   other 4xx on an update (validation)
    │   └── VendorUnavailableError      exit 13  5xx, timeouts, connection errors ...
    │       └── UnusableResponseError            ... or a body we cannot read
    └── StorageError                    exit 3   the database
        └── SchemaMissingError                   PostgreSQL needs `preflight db upgrade`

Third-party exceptions (httpx, SQLAlchemy) are translated into these only in the
adapters, with ``raise ... from exc``, so callers of the Python API catch one tree.
Messages are one line and never contain a vendor token.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthError",
    "BillingBlockedError",
    "ConfigError",
    "ConflictError",
    "NoGoError",
    "PreflightError",
    "SchemaMissingError",
    "StorageError",
    "UnusableResponseError",
    "UsageError",
    "VendorError",
    "VendorRejectedError",
    "VendorUnavailableError",
]


class PreflightError(Exception):
    """Root of every error preflight raises on purpose."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(PreflightError):
    """Bad arguments or bad input: nothing was stored."""

    exit_code = 2


class ConfigError(UsageError):
    """The settings (environment or TOML file) cannot be used."""


class ConflictError(UsageError):
    """The request contradicts what is already stored (never silently overwritten)."""


class VendorError(PreflightError):
    """The vendor's profile API did not give a usable answer."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class AuthError(VendorError):
    """HTTP 401: the token cannot be authenticated. Never retried."""

    exit_code = 11


class BillingBlockedError(VendorError):
    """HTTP 402 on the profile: the account is valid but in a billing / top-up state."""

    exit_code = 12


class VendorRejectedError(VendorError):
    """A 4xx other than 401/402, e.g. a validation error on a profile update."""

    exit_code = 2


class VendorUnavailableError(VendorError):
    """5xx, timeouts, connection errors or unusable bodies, after bounded retries."""

    exit_code = 13


class UnusableResponseError(VendorUnavailableError):
    """The body is not a JSON object, is too large, or a known field has an unusable value."""


class NoGoError(PreflightError):
    """``Preflight.batch()`` refused to start: the check's verdict was a no-go."""

    def __init__(self, message: str, *, verdict: str, exit_code: int) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.exit_code = exit_code  # type: ignore[misc]  # per instance: the verdict's code


class StorageError(PreflightError):
    """The database failed or is not usable."""

    exit_code = 3


class SchemaMissingError(StorageError):
    """The database has no (or an old) schema and will not be upgraded implicitly."""
