"""preflight: batch preflight and balance snapshots for paid API jobs.

The public Python surface::

    from preflight import Preflight, UsageError

    with Preflight() as pf:
        result = pf.check("nightly", need="500")

Names are resolved on first use, so that ``import preflight`` (and the CLI's start-up)
loads neither SQLAlchemy nor httpx.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from preflight.api import BatchRun, Preflight
    from preflight.domain.classify import Classification
    from preflight.domain.verdict import Verdict
    from preflight.domain.vocabulary import BatchStatus, FindingKind, Meter, SnapshotKind, Tag
    from preflight.errors import (
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
    from preflight.services.results import (
        AuditOutcome,
        BatchListing,
        BatchReport,
        CheckResult,
        FailureView,
        FindingView,
        FinishResult,
        ImportResult,
        ProfileReading,
        RecordResult,
    )

_HOMES = {
    "preflight.api": ("BatchRun", "Preflight"),
    "preflight.domain.classify": ("Classification",),
    "preflight.domain.verdict": ("Verdict",),
    "preflight.domain.vocabulary": ("BatchStatus", "FindingKind", "Meter", "SnapshotKind", "Tag"),
    "preflight.errors": (
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
    ),
    "preflight.services.results": (
        "AuditOutcome",
        "BatchListing",
        "BatchReport",
        "CheckResult",
        "FailureView",
        "FindingView",
        "FinishResult",
        "ImportResult",
        "ProfileReading",
        "RecordResult",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "AuditOutcome",
    "AuthError",
    "BatchListing",
    "BatchReport",
    "BatchRun",
    "BatchStatus",
    "BillingBlockedError",
    "CheckResult",
    "Classification",
    "ConfigError",
    "ConflictError",
    "FailureView",
    "FindingKind",
    "FindingView",
    "FinishResult",
    "ImportResult",
    "Meter",
    "NoGoError",
    "Preflight",
    "PreflightError",
    "ProfileReading",
    "RecordResult",
    "SchemaMissingError",
    "SnapshotKind",
    "StorageError",
    "Tag",
    "UnusableResponseError",
    "UsageError",
    "VendorError",
    "VendorRejectedError",
    "VendorUnavailableError",
    "Verdict",
]

assert set(__all__) == set(_HOME_OF), "__all__ and _HOMES disagree"


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'preflight' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
