"""The words of the contract, once: every layer names meters, tags, statuses, snapshot
kinds and finding kinds through these enums (CLI choices are built from them)."""

from __future__ import annotations

from enum import StrEnum


class Meter(StrEnum):
    """One balance field of the vendor's profile."""

    CREDITS = "credits"
    API_QUOTA_REMAINING = "api_quota_remaining"


class Tag(StrEnum):
    """Why a quota failure happened (docs/classification.md)."""

    PRE_EXISTING_LOW_BALANCE = "pre_existing_low_balance"
    CONCURRENT_CONSUMPTION = "concurrent_consumption"
    INCONCLUSIVE = "inconclusive"


class BatchStatus(StrEnum):
    OPEN = "open"
    BLOCKED = "blocked"
    FINISHED = "finished"


class SnapshotKind(StrEnum):
    """Why a snapshot was taken."""

    PREFLIGHT = "preflight"
    RECHECK = "recheck"
    FAILURE = "failure"
    FINISH = "finish"
    AUDIT = "audit"
    MANUAL = "manual"


class FindingKind(StrEnum):
    """What the scheduled audit reports."""

    UNEXPLAINED_CONSUMPTION = "unexplained_consumption"
    LOW_BALANCE = "low_balance"
    STALE_BATCH = "stale_batch"
    #: An open batch whose forecast runs out before it finishes (once until it recovers).
    PROJECTED_SHORTFALL = "projected_shortfall"


class OutcomeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# Plain strings: click's choices and settings validation compare against values.
METERS: tuple[str, ...] = tuple(meter.value for meter in Meter)
FINDING_KINDS: tuple[str, ...] = tuple(kind.value for kind in FindingKind)
