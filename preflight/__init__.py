"""preflight: batch preflight and balance snapshots for paid API jobs.

The public Python surface::

    from preflight import Preflight, UsageError

    with Preflight() as pf:
        result = pf.check("nightly", need="500")

``Preflight`` is resolved on first use, so that ``import preflight`` (and the CLI's
start-up) loads neither SQLAlchemy nor httpx; the rest are light, pure modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from preflight.api import BatchRun, Preflight

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


def __getattr__(name: str) -> Any:
    # The facade pulls in the services, SQLAlchemy and httpx: only on first use.
    if name in ("Preflight", "BatchRun"):
        from preflight import api

        return getattr(api, name)
    raise AttributeError(f"module 'preflight' has no attribute {name!r}")
