"""Typed results and read models of the verbs: frozen dataclasses holding ``Decimal`` and
``datetime``. ``to_dict()`` is their JSON form, shared by every interface: amounts as
decimal strings, times ISO 8601 UTC. Each one's JSON is declared once, by its shape in
:mod:`preflight.contract` (which also reads it back, for remote mode)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from preflight import contract
from preflight.contract import Wire
from preflight.domain.exact import exact
from preflight.domain.timeline import cited_snapshots
from preflight.domain.wire import time_text

# The check's answer has a module of its own (a cold `preflight check` imports only it, not
# the sixteen other read models); it is one of the results all the same.
from preflight.services.check_result import ADVISORY as ADVISORY
from preflight.services.check_result import CheckResult as CheckResult

__all__ = [
    "ADVISORY",
    "AccountTimeline",
    "AuditOutcome",
    "BatchListing",
    "BatchReport",
    "BatchTimeline",
    "BatchView",
    "CheckResult",
    "FailureView",
    "FindingView",
    "FinishResult",
    "ForecastView",
    "GuardResult",
    "ImportProgress",
    "ImportResult",
    "LateOutcome",
    "OutcomeTotals",
    "ProfileReading",
    "RecordResult",
    "SnapshotView",
    "SpendSummary",
]

if TYPE_CHECKING:
    from preflight.domain.classify import (
        Attributed,
        Classification,
        ForeignConsumption,
        Reading,
    )
    from preflight.domain.forecast import Decision, Forecast
    from preflight.domain.outcome import OutcomeInput
    from preflight.domain.timeline import BatchSpan, Burn, DropSplit, Rise, TimelineSnapshot


@dataclass(frozen=True)
class ImportProgress:
    """How far a bulk import is: lines read, outcomes recorded, repeats already recorded.

    (Here, among the results, so that remote mode reports progress without the services.)"""

    lines: int
    inserted: int
    duplicates: int


@contract.PROFILE.binds
@dataclass(frozen=True)
class ProfileReading(Wire):
    """A profile fetched on demand and stored as a snapshot: the vendor's meters by name
    (in its adapter's order of preference), its user and tier, and its body as received."""

    account: str
    snapshot_id: int
    taken_at: datetime
    user_id: str | None
    tier: str | None
    meters: Mapping[str, Decimal | None]
    latency_ms: int
    raw: str

    @property
    def credits(self) -> Decimal | None:
        return self.meters.get("credits")

    @property
    def api_quota_remaining(self) -> Decimal | None:
        return self.meters.get("api_quota_remaining")


@contract.RECORD.binds
@dataclass(frozen=True)
class RecordResult(Wire):
    """One recorded outcome, and the tag when it was a quota failure."""

    batch_id: str
    outcome: OutcomeInput
    created: bool
    tag: Classification | None
    snapshot_id: int | None
    snapshot_error: str | None
    warnings: tuple[str, ...] = ()


@contract.IMPORT.binds
@dataclass(frozen=True)
class ImportResult(Wire):
    """What a JSON Lines import stored."""

    batch_id: str
    lines: int
    inserted: int
    duplicates: int
    tags: Mapping[str, int]
    warnings: tuple[str, ...] = ()


@contract.SUMMARY.binds
@dataclass(frozen=True)
class SpendSummary(Wire):
    """A batch's own consumed cost against the balance drop between two of its snapshots."""

    meter: str | None
    own_cost: Decimal
    start: Reading | None
    end: Reading | None
    foreign: ForeignConsumption | None

    @property
    @exact
    def drop(self) -> Decimal | None:
        if self.start is None or self.end is None:
            return None
        if self.start.balance is None or self.end.balance is None:
            return None
        return self.start.balance - self.end.balance


@contract.FINISH.binds
@dataclass(frozen=True)
class FinishResult(Wire):
    """A finished batch: its own consumed cost against the balance drop during it."""

    batch_id: str
    finished_at: datetime
    summary: SpendSummary
    snapshot_error: str | None
    already_finished: bool = False  # a repeated finish: the first one's numbers


# ---------------------------------------------------------------- post-mortem read models


@contract.BATCH.binds
@dataclass(frozen=True)
class BatchView(Wire):
    batch_id: str
    account: str
    status: str
    verdict: str | None
    verified: bool
    meter: str | None
    need: Decimal | None
    reserve: Decimal
    labels: Mapping[str, Any]
    created_at: datetime
    checked_at: datetime | None
    finished_at: datetime | None


@contract.TOTALS.binds
@dataclass(frozen=True)
class OutcomeTotals(Wire):
    """Counts of a batch's outcomes; ``cost`` is consumed cost (quota failures: none)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    quota_failures: int = 0
    late: int = 0  # recorded after the batch was finished
    cost: Decimal = Decimal(0)


@contract.SNAPSHOT.binds
@dataclass(frozen=True)
class SnapshotView(Wire):
    id: int
    kind: str
    taken_at: datetime
    credits: Decimal | None
    api_quota_remaining: Decimal | None
    balance: Decimal | None  # on the batch's meter
    # Any other vendor's meters by name (None: there is none).
    extra_meters: Mapping[str, Decimal] | None = field(default=None, hash=False)


@contract.LATE.binds
@dataclass(frozen=True)
class LateOutcome(Wire):
    job_id: str
    attempt: int
    status: str
    recorded_at: datetime


@contract.FAILURE.binds
@dataclass(frozen=True)
class FailureView(Wire):
    """One quota failure with its stored tag (``tag`` None: not classified yet)."""

    batch_id: str
    job_id: str
    attempt: int
    failed_at: datetime
    http_status: int | None
    error: str | None
    tag: str | None
    reason: str
    evidence: Mapping[str, Any]  # the stored evidence, already in its JSON form
    attribution: tuple[Attributed, ...]
    unattributed: Decimal | None
    classifier_version: str | None
    classified_at: datetime | None


@contract.REPORT.binds
@dataclass(frozen=True)
class BatchReport(Wire):
    """Everything a post-mortem of one batch needs, in time order."""

    batch: BatchView
    snapshots: Sequence[SnapshotView]
    outcomes: OutcomeTotals
    late_outcomes: Sequence[LateOutcome]
    quota_failures: Sequence[FailureView]
    #: An open batch's projection from stored snapshots (the guard's fields), else None.
    forecast: ForecastView | None = None

    @property
    def overlapping_batches(self) -> list[str]:
        """Other batches that a tag attributes foreign consumption to."""
        return sorted({a.batch_id for f in self.quota_failures for a in f.attribution})


@contract.LISTING.binds
@dataclass(frozen=True)
class BatchListing(Wire):
    """One row of ``batches``: the batch and its outcome totals."""

    batch: BatchView
    outcomes: OutcomeTotals


@contract.FINDING.binds
@dataclass(frozen=True)
class FindingView(Wire):
    """A stored audit finding."""

    id: int
    kind: str
    account: str
    amount: Decimal | None
    window_start: datetime
    window_end: datetime
    batches: tuple[str, ...]
    audit_run_id: int
    detail: Mapping[str, Any]
    created_at: datetime


@contract.AUDIT.binds
@dataclass(frozen=True)
class AuditOutcome(Wire):
    """What one account's audit did in one period (or why it did nothing)."""

    account: str
    period_start: datetime
    skipped: bool
    reason: str | None = None
    audit_run_id: int | None = None
    snapshot_id: int | None = None
    status: str | None = None
    takeover: bool = False
    steps: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[FindingView, ...] = ()


# ---------------------------------------------------------------- report read models


@dataclass(frozen=True)
class BatchTimeline:
    """What ``preflight report BATCH_ID`` draws: the post-mortem of one batch, and the
    account's timeline around it.

    ``timeline`` is every snapshot of the account (both meters) from the last one before
    the check to the first one after the batch's last outcome (or after the last
    snapshot its evidence cites); ``window_start``/``window_end`` is when the batch ran
    (its check, or creation, to its finish, or its last outcome); ``others`` are the other
    batches that ran in the timeline's span, each with the cost it consumed on the meter
    while this batch ran; ``split`` splits the balance drop from the check to the finish
    snapshot (else the latest reading) into own, each other batch's and unattributed.
    """

    report: BatchReport
    meter: str | None
    start: datetime
    end: datetime
    window_start: datetime
    window_end: datetime
    timeline: Sequence[TimelineSnapshot]
    others: Sequence[BatchSpan]
    split: DropSplit | None
    rises: Sequence[Rise]
    generated_at: datetime
    #: When the snapshot that ``report.forecast`` reads was taken (an open batch's only).
    forecast_at: datetime | None = None

    @property
    def cited(self) -> set[int]:
        """Snapshots that the quota failures' evidence cites."""

        return cited_snapshots([f.evidence for f in self.report.quota_failures])

    @property
    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for failure in self.report.quota_failures:
            key = failure.tag or "unclassified"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "report_meter": self.meter,
            "start": time_text(self.start),
            "end": time_text(self.end),
            "window_start": time_text(self.window_start),
            "window_end": time_text(self.window_end),
            "timeline": [s.to_dict() for s in self.timeline],
            "other_batches": [b.to_dict() for b in self.others],
            "split": self.split.to_dict() if self.split else None,
            "tag_counts": self.tag_counts,
            "generated_at": time_text(self.generated_at),
        }


@dataclass(frozen=True)
class AccountTimeline:
    """What ``preflight report --account A`` draws: the account's snapshots over a period
    (and the last one before it), the batches that ran in it, the audit's findings and the
    quota failures in it, and the burn rate and runway over the audit's burn window."""

    account: str
    meter: str | None
    start: datetime
    end: datetime
    timeline: Sequence[TimelineSnapshot]
    batches: Sequence[BatchSpan]
    findings: Sequence[FindingView]
    failures: Sequence[FailureView]
    burn: Burn | None
    rises: Sequence[Rise]
    generated_at: datetime

    @property
    def cited(self) -> set[int]:
        """Snapshots that the failures' evidence and the findings' details cite."""

        return cited_snapshots(
            [f.evidence for f in self.failures] + [f.detail for f in self.findings]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "meter": self.meter,
            "start": time_text(self.start),
            "end": time_text(self.end),
            "timeline": [s.to_dict() for s in self.timeline],
            "batches": [b.to_dict() for b in self.batches],
            "findings": [f.to_dict() for f in self.findings],
            "quota_failures": [f.to_dict() for f in self.failures],
            "burn": self.burn.to_dict() if self.burn else None,
            "generated_at": time_text(self.generated_at),
        }


@contract.FORECAST.binds
@dataclass(frozen=True)
class ForecastView(Wire):
    """The guard's fields on one stored snapshot: the decision (None when the batch
    declared no need and no next cost was given), the projection, and its snapshot."""

    decision: Decision | None
    reason: str | None
    forecast: Forecast
    outstanding_other: Decimal
    snapshot_id: int
    snapshot_age_seconds: int


@contract.GUARD.binds
@dataclass(frozen=True)
class GuardResult(Wire):
    """``guard``'s answer between two dispatches: continue, at_risk or stop, and why."""

    batch_id: str
    decision: Decision
    reason: str
    forecast: Forecast
    outstanding_other: Decimal
    snapshot_id: int
    snapshot_age_seconds: int

    def exit_code(self, *, strict: bool = False) -> int:
        """0, 14 (``at_risk`` with ``strict``) or 15 (``stop``): the CLI's exit code."""
        return contract.guard_exit_code(self.decision, strict=strict)
