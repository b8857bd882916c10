"""Every error preflight raises on purpose, under one root.

    PreflightError
    ├── NoGoError                    a batch refused to start: the check's verdict
    ├── UsageError                   bad arguments or bad input: nothing was stored
    │   ├── ConfigError              bad settings or TOML file
    │   ├── ConflictError            e.g. a different outcome for a recorded key
    │   └── NotFoundError            e.g. no batch with that id
    ├── VendorError                  the vendor's profile API
    │   ├── AuthError                HTTP 401: never retried
    │   ├── BillingBlockedError      HTTP 402 on the profile itself
    │   ├── VendorRejectedError      other 4xx on an update (validation)
    │   └── VendorUnavailableError   5xx, timeouts, connection errors ...
    │       └── UnusableResponseError    ... or a body we cannot read
    └── StorageError                 the database
        └── SchemaMissingError       PostgreSQL needs `preflight db upgrade`

Third-party exceptions (httpx, SQLAlchemy) are translated into these only in the
adapters, with ``raise ... from exc``, so callers of the Python API catch one tree.
Messages are one line, name fields (``need: must be ≥ 0``), never a CLI flag, and never
contain a vendor token. Each edge maps the tree to its own codes: exit codes in
``preflight.cli.exit_codes``, HTTP statuses in the HTTP app.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BillingBlockedError",
    "ConfigError",
    "ConflictError",
    "NoGoError",
    "NotFoundError",
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

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(PreflightError):
    """Bad arguments or bad input: nothing was stored."""


class ConfigError(UsageError):
    """The settings (environment or TOML file) cannot be used."""


class ConflictError(UsageError):
    """The request contradicts what is already stored (never silently overwritten)."""


class NotFoundError(UsageError):
    """The request names something that does not exist (e.g. no batch with that id)."""


class VendorError(PreflightError):
    """The vendor's profile API did not give a usable answer."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class AuthError(VendorError):
    """HTTP 401: the token cannot be authenticated. Never retried."""


class BillingBlockedError(VendorError):
    """HTTP 402 on the profile: the account is valid but in a billing / top-up state; or
    a profile answered 200 whose body says the account is blocked (DeepSeek)."""


class VendorRejectedError(VendorError):
    """A 4xx other than 401/402, e.g. a validation error on a profile update."""


class VendorUnavailableError(VendorError):
    """5xx, timeouts, connection errors or unusable bodies, after bounded retries."""


class UnusableResponseError(VendorUnavailableError):
    """The body is not a JSON object, is too large, or a known field has an unusable value."""


class NoGoError(PreflightError):
    """``Preflight.batch()`` refused to start: the check's verdict was a no-go."""

    def __init__(self, message: str, *, verdict: str, strict: bool = False) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.strict = strict  # refused for at_risk only because strict was asked


class StorageError(PreflightError):
    """The database failed or is not usable."""


class SchemaMissingError(StorageError):
    """The database has no (or an old) schema and will not be upgraded implicitly."""
