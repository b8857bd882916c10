"""``finish`` a batch, and the post-mortem reads: ``show``, ``failures``, ``batches``,
``findings``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from preflight.db import reports
from preflight.db import repositories as repo
from preflight.domain.batch import validate_batch_id
from preflight.domain.classify import Attributed, foreign_consumption
from preflight.domain.vocabulary import FINDING_KINDS, BatchStatus, SnapshotKind, Tag
from preflight.domain.wire import amount_text
from preflight.errors import ConfigError, NotFoundError, UsageError, VendorError
from preflight.logs import get_logger
from preflight.services.results import (
    BatchListing,
    BatchReport,
    BatchView,
    FailureView,
    FindingView,
    FinishResult,
    LateOutcome,
    OutcomeTotals,
    SnapshotView,
    SpendSummary,
)
from preflight.services.runtime import Runtime
from preflight.services.snapshots import take_snapshot

if TYPE_CHECKING:
    from preflight.db.reports import BatchRow, FailureRow, FindingRow
    from preflight.db.session import Session
    from preflight.domain.timeline import TimelineSnapshot

log = get_logger("preflight")


def finish(rt: Runtime, batch_id: str, *, snapshot: bool = True) -> FinishResult:
    """Take a ``finish`` snapshot, mark the batch finished, and compare its own cost
    with the balance drop since its preflight snapshot (foreign consumption).

    Idempotent: finishing a finished batch takes no snapshot and answers the first
    finish's numbers (outcomes recorded after it are late and not counted).
    """
    validate_batch_id(batch_id)
    with rt.database.read() as session:
        batch = _existing(session, batch_id, hint=": check or record it first")
        if batch.finished_at is not None:
            return FinishResult(
                batch_id, batch.finished_at, _summary(session, batch), None, already_finished=True
            )
        account_name = batch.account
    snapshot_error: str | None = None
    if snapshot:
        try:
            take_snapshot(rt, account_name, SnapshotKind.FINISH, batch_id=batch_id)
        except (VendorError, ConfigError) as exc:
            snapshot_error = str(exc)
            log.info("finish_snapshot_failed", batch_id=batch_id, error=snapshot_error)
    now = rt.clock()
    with rt.database.write() as session:
        writes = rt.database.store(session)
        # The account's row, then the batch's (the lock order of preflight.db.store).
        writes.batch(batch_id, lock=True)
        batch = _existing(session, batch_id)
        if batch.finished_at is not None:  # a concurrent finish won: its numbers stand
            return FinishResult(
                batch_id, batch.finished_at, _summary(session, batch), None, already_finished=True
            )
        batch = repo.finish_batch(session, writes, batch, now=now)
        summary = _summary(session, batch)
    log.info("batch_finished", batch_id=batch_id, own_cost=amount_text(summary.own_cost))
    return FinishResult(batch_id, now, summary, snapshot_error)


def show(rt: Runtime, batch_id: str) -> BatchReport:
    """One batch: status, snapshots in time order, outcome totals, tagged quota failures."""
    validate_batch_id(batch_id)
    with rt.database.read() as session:
        batch = _existing(session, batch_id)
        late = reports.late_outcomes(session, batch) if batch.late_count else []
        return BatchReport(
            batch=batch_view(batch),
            snapshots=[
                _snapshot_view(s, batch.meter) for s in reports.batch_snapshots(session, batch)
            ],
            outcomes=_totals_view(batch),
            late_outcomes=[LateOutcome(*row) for row in late],
            quota_failures=[failure_view(row) for row in reports.batch_failures(session, batch)],
        )


def failures(
    rt: Runtime,
    *,
    since: datetime | None = None,
    tag: str | None = None,
    account: str | None = None,
) -> list[FailureView]:
    """Quota failures across batches, oldest first."""
    if tag is not None and tag not in set(Tag):
        raise UsageError(f"tag: must be one of {', '.join(Tag)}, not {tag!r}")
    with rt.database.read() as session:
        rows = reports.failures(session, since=since, tag=tag, account=account)
        return [failure_view(row) for row in rows]


def batches(
    rt: Runtime,
    *,
    since: datetime | None = None,
    status: str | None = None,
    account: str | None = None,
) -> list[BatchListing]:
    """Recent batches, newest first, with verdicts and outcome totals."""
    if status is not None and status not in set(BatchStatus):
        raise UsageError(f"status: must be one of {', '.join(BatchStatus)}, not {status!r}")
    with rt.database.read() as session:
        rows = reports.batches(session, since=since, status=status, account=account)
        return [BatchListing(batch_view(b), _totals_view(b)) for b in rows]


def findings(
    rt: Runtime,
    *,
    since: datetime | None = None,
    kind: str | None = None,
    account: str | None = None,
) -> list[FindingView]:
    """Stored audit findings, oldest first."""
    if kind is not None and kind not in FINDING_KINDS:
        raise UsageError(f"kind: must be one of {', '.join(FINDING_KINDS)}, not {kind!r}")
    with rt.database.read() as session:
        rows = reports.findings(session, since=since, kind=kind, account=account)
        return [finding_view(finding, name) for finding, name in rows]


# ---------------------------------------------------------------- rows → read models


def batch_view(batch: BatchRow) -> BatchView:
    return BatchView(
        batch_id=batch.batch_id,
        account=batch.account,
        status=batch.status,
        verdict=batch.verdict,
        verified=batch.verified,
        meter=batch.meter,
        need=batch.need,
        reserve=batch.reserve,
        labels=dict(batch.labels),
        created_at=batch.created_at,
        checked_at=batch.checked_at,
        finished_at=batch.finished_at,
    )


def failure_view(row: FailureRow) -> FailureView:
    return FailureView(
        batch_id=row.batch_id,
        job_id=row.job_id,
        attempt=row.attempt,
        failed_at=row.occurred_at,
        http_status=row.http_status,
        error=row.error,
        tag=row.tag,
        reason=row.reason if row.reason is not None else "not classified yet",
        evidence=dict(row.evidence or {}),
        attribution=tuple(
            Attributed(item["batch_id"], Decimal(item["cost"])) for item in row.attribution or ()
        ),
        unattributed=row.unattributed,
        classifier_version=row.classifier_version,
        classified_at=row.classified_at,
    )


def finding_view(finding: FindingRow, account: str) -> FindingView:
    return FindingView(
        id=finding.id,
        kind=finding.kind,
        account=account,
        amount=finding.amount,
        window_start=finding.window_start,
        window_end=finding.window_end,
        batches=tuple(finding.batches),
        audit_run_id=finding.audit_run_id,
        detail=dict(finding.detail),
        created_at=finding.created_at,
    )


def _snapshot_view(snapshot: TimelineSnapshot, meter: str | None) -> SnapshotView:
    return SnapshotView(
        id=snapshot.id,
        kind=snapshot.kind,
        taken_at=snapshot.taken_at,
        credits=snapshot.credits,
        api_quota_remaining=snapshot.api_quota_remaining,
        balance=snapshot.balance(meter) if meter else None,
        extra_meters=dict(snapshot.extra_meters) if snapshot.extra_meters else None,
    )


def _totals_view(batch: BatchRow) -> OutcomeTotals:
    """The batch's outcome totals, as kept up to date with every outcome stored."""
    return OutcomeTotals(
        total=batch.outcome_count,
        succeeded=batch.outcome_count - batch.failed_count,
        failed=batch.failed_count,
        quota_failures=batch.quota_failure_count,
        late=batch.late_count,
        cost=batch.consumed_cost,
    )


def _summary(session: Session, batch: BatchRow) -> SpendSummary:
    """Own cost, and foreign consumption from the preflight to the first finish snapshot."""
    inputs = repo.spend_inputs(session, batch)
    start, end = inputs.start, inputs.end
    if start is None or end is None or start.balance is None or end.balance is None:
        return SpendSummary(inputs.meter, inputs.own_cost, start, end, None)
    foreign = foreign_consumption(start, end, inputs.between, inputs.own)
    return SpendSummary(inputs.meter, inputs.own_cost, start, end, foreign)


def _existing(session: Session, batch_id: str, *, hint: str = "") -> BatchRow:
    batch = reports.batch_named(session, batch_id)
    if batch is None:
        raise NotFoundError(f"no batch {batch_id!r}{hint}")
    return batch
