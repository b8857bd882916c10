"""preflight: batch preflight and balance snapshots for paid API jobs.

The public Python surface::

    from preflight import Preflight, UsageError

    with Preflight() as pf:
        result = pf.check("nightly", need="500")

and, for asyncio code, the same verbs on a preflight server (``preflight serve``)::

    async with AsyncPreflight.remote(url, token) as pf:
        result = await pf.check("nightly", need="500")

Every name is resolved on first use, so that ``import preflight`` (and the CLI's
start-up) loads neither SQLAlchemy nor httpx, nor any module a command does not use.
"""

from __future__ import annotations

import importlib
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
    from preflight.remote import AsyncPreflight
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

#: Where each public name lives. Every name is resolved on first use, so that
#: ``import preflight`` (and so the CLI's start-up, ``preflight --help``) loads none of
#: them: not SQLAlchemy or httpx behind the facade, nor the classifier or the read models.
_HOMES = {
    "Preflight": "preflight.api",
    "BatchRun": "preflight.api",
    "AsyncPreflight": "preflight.remote",
    "Classification": "preflight.domain.classify",
    "Verdict": "preflight.domain.verdict",
    **dict.fromkeys(
        ("BatchStatus", "FindingKind", "Meter", "SnapshotKind", "Tag"),
        "preflight.domain.vocabulary",
    ),
    **dict.fromkeys(
        (
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
        "preflight.errors",
    ),
    **dict.fromkeys(
        (
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
        "preflight.services.results",
    ),
}

__all__ = [
    "AsyncPreflight",
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
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'preflight' has no attribute {name!r}")

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # resolved once
    return value
