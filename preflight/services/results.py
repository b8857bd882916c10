"""Typed results and read models of the verbs: frozen dataclasses holding ``Decimal`` and
``datetime``. ``to_dict()`` is their JSON form, shared by every interface: amounts as
decimal strings, times ISO 8601 UTC (:mod:`preflight.domain.wire`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from preflight.domain.exact import exact
from preflight.domain.vocabulary import BatchStatus
from preflight.domain.wire import amount_text, meters_text, time_text

# The check's answer has a module of its own (a cold `preflight check` imports only it, not
# the sixteen other read models); it is one of the results all the same.
from preflight.services.check_result import ADVISORY as ADVISORY
from preflight.services.check_result import CheckResult as CheckResult

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
    from preflight.vendor import Profile

# The check's answer has a module of its own: a cold `preflight check` imports only it,
# not the sixteen other read models (a dataclass costs ~1 ms to create at import).


@dataclass(frozen=True)
class ProfileReading:
    """A profile fetched on demand and stored as a snapshot."""

    account: str
    snapshot_id: int
    taken_at: datetime
    profile: Profile

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat(),
            "user_id": self.profile.user_id,
            "tier": self.profile.tier,
            "credits": amount_text(self.profile.credits),
            "api_quota_remaining": amount_text(self.profile.api_quota_remaining),
            # Every meter by name, for a vendor with others than the first vendor's two.
            **({"meters": meters_text(self.profile.meters)} if self.profile.extra_meters else {}),
            "latency_ms": self.profile.latency_ms,
            "raw": self.profile.raw,
        }


@dataclass(frozen=True)
class RecordResult:
    """One recorded outcome, and the tag when it was a quota failure."""

    batch_id: str
    outcome: OutcomeInput
    created: bool
    tag: Classification | None
    snapshot_id: int | None
    snapshot_error: str | None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "job_id": self.outcome.job_id,
            "attempt": self.outcome.attempt,
            "status": self.outcome.status.value,
            "created": self.created,
            "quota_failure": self.outcome.quota_failure,
            "tag": self.tag.tag.value if self.tag else None,
            "reason": self.tag.reason if self.tag else None,
            "snapshot_id": self.snapshot_id,
            "snapshot_error": self.snapshot_error,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class ImportResult:
    """What a JSON Lines import stored."""

    batch_id: str
    lines: int
    inserted: int
    duplicates: int
    tags: Mapping[str, int]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "lines": self.lines,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "tags": dict(self.tags),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class SpendSummary:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "own_cost": amount_text(self.own_cost),
            "preflight_balance": amount_text(self.start.balance) if self.start else None,
            "finish_balance": amount_text(self.end.balance) if self.end else None,
            "balance_drop": amount_text(self.drop),
            "foreign_consumption": amount_text(self.foreign.amount) if self.foreign else None,
            "foreign_is_lower_bound": self.foreign.is_lower_bound if self.foreign else False,
            "snapshot_ids": list(self.foreign.snapshot_ids) if self.foreign else [],
        }


@dataclass(frozen=True)
class FinishResult:
    """A finished batch: its own consumed cost against the balance drop during it."""

    batch_id: str
    finished_at: datetime
    summary: SpendSummary
    snapshot_error: str | None
    already_finished: bool = False  # a repeated finish: the first one's numbers

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": BatchStatus.FINISHED.value,
            "finished_at": self.finished_at.isoformat(),
            **self.summary.to_dict(),
            "snapshot_error": self.snapshot_error,
            "already_finished": self.already_finished,
        }


# ---------------------------------------------------------------- post-mortem read models


@dataclass(frozen=True)
class BatchView:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "account": self.account,
            "status": self.status,
            "verdict": self.verdict,
            "verified": self.verified,
            "meter": self.meter,
            "need": amount_text(self.need),
            "reserve": amount_text(self.reserve),
            "labels": dict(self.labels),
            "created_at": time_text(self.created_at),
            "checked_at": time_text(self.checked_at),
            "finished_at": time_text(self.finished_at),
        }


@dataclass(frozen=True)
class OutcomeTotals:
    """Counts of a batch's outcomes; ``cost`` is consumed cost (quota failures: none)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    quota_failures: int = 0
    late: int = 0  # recorded after the batch was finished
    cost: Decimal = Decimal(0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "quota_failures": self.quota_failures,
            "late": self.late,
            "cost": amount_text(self.cost),
        }


@dataclass(frozen=True)
class SnapshotView:
    id: int
    kind: str
    taken_at: datetime
    credits: Decimal | None
    api_quota_remaining: Decimal | None
    balance: Decimal | None  # on the batch's meter
    # Any other vendor's meters by name (None: there is none).
    extra_meters: Mapping[str, Decimal] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "taken_at": time_text(self.taken_at),
            "credits": amount_text(self.credits),
            "api_quota_remaining": amount_text(self.api_quota_remaining),
            "balance": amount_text(self.balance),
            **({"meters": meters_text(self.extra_meters)} if self.extra_meters else {}),
        }


@dataclass(frozen=True)
class LateOutcome:
    job_id: str
    attempt: int
    status: str
    recorded_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "status": self.status,
            "recorded_at": time_text(self.recorded_at),
        }


@dataclass(frozen=True)
class FailureView:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "failed_at": time_text(self.failed_at),
            "http_status": self.http_status,
            "error": self.error,
            "tag": self.tag,
            "reason": self.reason,
            "evidence": dict(self.evidence),
            "attribution": [
                {"batch_id": a.batch_id, "cost": amount_text(a.cost)} for a in self.attribution
            ],
            "unattributed": amount_text(self.unattributed),
            "classifier_version": self.classifier_version,
            "classified_at": time_text(self.classified_at),
        }


@dataclass(frozen=True)
class BatchReport:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.batch.to_dict(),
            "snapshots": [s.to_dict() for s in self.snapshots],
            "outcomes": self.outcomes.to_dict(),
            "late_outcomes": [o.to_dict() for o in self.late_outcomes],
            "quota_failures": [f.to_dict() for f in self.quota_failures],
            "overlapping_batches": self.overlapping_batches,
            "forecast": None if self.forecast is None else self.forecast.to_dict(),
        }


@dataclass(frozen=True)
class BatchListing:
    """One row of ``batches``: the batch and its outcome totals."""

    batch: BatchView
    outcomes: OutcomeTotals

    def to_dict(self) -> dict[str, Any]:
        return {**self.batch.to_dict(), "outcomes": self.outcomes.to_dict()}


@dataclass(frozen=True)
class FindingView:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "account": self.account,
            "amount": amount_text(self.amount),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "batches": list(self.batches),
            "audit_run_id": self.audit_run_id,
            "detail": dict(self.detail),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class AuditOutcome:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "period_start": self.period_start.isoformat(),
            "skipped": self.skipped,
            "reason": self.reason,
            "audit_run_id": self.audit_run_id,
            "snapshot_id": self.snapshot_id,
            "status": self.status,
            "takeover": self.takeover,
            "steps": dict(self.steps),
            "findings": [f.to_dict() for f in self.findings],
        }


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
        from preflight.domain.timeline import cited_snapshots  # the report's, not a check's

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
        from preflight.domain.timeline import cited_snapshots  # the report's, not a check's

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


@dataclass(frozen=True)
class ForecastView:
    """The guard's fields on one stored snapshot: the decision (None when the batch
    declared no need and no next cost was given), the projection, and its snapshot."""

    decision: Decision | None
    reason: str | None
    forecast: Forecast
    outstanding_other: Decimal
    snapshot_id: int
    snapshot_age_seconds: int

    def to_dict(self) -> dict[str, Any]:
        projection = self.forecast.to_dict()
        return {
            "decision": None if self.decision is None else self.decision.value,
            "reason": self.reason,
            "balance": projection["balance"],
            "remaining_need": projection["remaining_need"],
            "outstanding_other": amount_text(self.outstanding_other),
            "affordable_jobs": projection["affordable_jobs"],
            "own_burn_per_minute": projection["own_burn_per_minute"],
            "foreign_burn_per_minute": projection["foreign_burn_per_minute"],
            "minutes_to_empty": projection["minutes_to_empty"],
            "minutes_to_finish": projection["minutes_to_finish"],
            "runs_out_first": projection["runs_out_first"],
            "snapshot_id": self.snapshot_id,
            "snapshot_age_seconds": self.snapshot_age_seconds,
        }


@dataclass(frozen=True)
class GuardResult:
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
        return self.decision.exit_code(strict=strict)

    def to_dict(self) -> dict[str, Any]:
        view = ForecastView(
            self.decision,
            self.reason,
            self.forecast,
            self.outstanding_other,
            self.snapshot_id,
            self.snapshot_age_seconds,
        )
        return {"batch_id": self.batch_id, **view.to_dict()}
