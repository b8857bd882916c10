"""The public home of preflight's errors: ``from preflight.errors import UsageError``.

The tree itself lives in :mod:`preflight.domain.errors` (pure: the domain raises these
too); this module is where callers of the Python API import them from.
"""

from __future__ import annotations

from preflight.domain.errors import (
    AuthError,
    BillingBlockedError,
    ConfigError,
    ConflictError,
    NoGoError,
    PreflightError,
    SchemaMissingError,
    StorageError,
    UnusableResponseError,
    UsageError,
    VendorError,
    VendorRejectedError,
    VendorUnavailableError,
)

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
