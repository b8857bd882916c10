"""Queries behind the post-mortem read models (``show``, ``failures``, ``batches``,
``findings``) and the report's timeline (``report``). They return plain rows (the frozen
dataclasses below, read by columns: no ORM object, nothing loaded lazily);
:mod:`preflight.services.batches` and :mod:`preflight.services.reports` turn them into
the read models of :mod:`preflight.services.results`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, FailureTag, Finding, Outcome, Snapshot
from preflight.db.session import decimal_sum
from preflight.domain.classify import Spend
from preflight.domain.timeline import TimelineSnapshot
from preflight.domain.vocabulary import BatchStatus, SnapshotKind


@dataclass(frozen=True)
class BatchRow:
    """A batch as the post-mortem reads it, with its account's name."""

    id: int
    batch_id: str
    account_id: int
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
    last_activity_at: datetime
    outcome_count: int
    failed_count: int
    quota_failure_count: int
    late_count: int
    consumed_cost: Decimal
    held: Decimal | None


_BATCH_ROW = (
    Batch.id,
    Batch.batch_id,
    Batch.account_id,
    Account.name,
    Batch.status,
    Batch.verdict,
    Batch.verified,
    Batch.meter,
    Batch.need,
    Batch.reserve,
    Batch.labels,
    Batch.created_at,
    Batch.checked_at,
    Batch.finished_at,
    Batch.last_activity_at,
    Batch.outcome_count,
    Batch.failed_count,
    Batch.quota_failure_count,
    Batch.late_count,
    Batch.consumed_cost,
    Batch.held,
)


def _batch_rows(query: Select[Any], session: Session) -> list[BatchRow]:
    return [BatchRow(*row) for row in session.execute(query)]


def _batches() -> Select[Any]:
    return select(*_BATCH_ROW).join(Account, Account.id == Batch.account_id)


@dataclass(frozen=True)
class FailureRow:
    """A quota failure with its tag (None: not classified yet) and its batch's id."""

    batch_id: str
    job_id: str
    attempt: int
    occurred_at: datetime
    http_status: int | None
    error: str | None
    tag: str | None
    reason: str | None
    evidence: Mapping[str, Any] | None
    attribution: Sequence[Mapping[str, str]] | None
    unattributed: Decimal | None
    classifier_version: str | None
    classified_at: datetime | None


@dataclass(frozen=True)
class FindingRow:
    """A stored audit finding."""

    id: int
    kind: str
    amount: Decimal | None
    window_start: datetime
    window_end: datetime
    batches: Sequence[str]
    audit_run_id: int
    detail: Mapping[str, Any]
    created_at: datetime


FINDING_ROW = (
    Finding.id,
    Finding.kind,
    Finding.amount,
    Finding.window_start,
    Finding.window_end,
    Finding.batches,
    Finding.audit_run_id,
    Finding.detail,
    Finding.created_at,
)

#: A snapshot as a timeline reads it (its batch's id joined).
_SNAPSHOT_ROW = (
    Snapshot.id,
    Snapshot.taken_at,
    Snapshot.kind,
    Snapshot.credits,
    Snapshot.api_quota_remaining,
    Batch.batch_id,
    Snapshot.extra_meters,
)


def batch_named(session: Session, batch_id: str) -> BatchRow | None:
    """The batch named ``batch_id``, or None."""
    rows = _batch_rows(_batches().where(Batch.batch_id == batch_id), session)
    return rows[0] if rows else None


def _late() -> ColumnElement[bool]:
    """Over Outcome ⋈ Batch: recorded after the batch was finished."""
    return and_(Batch.finished_at.is_not(None), Outcome.recorded_at > Batch.finished_at)


def batch_snapshots(session: Session, batch: BatchRow) -> list[TimelineSnapshot]:
    return [
        TimelineSnapshot(*row)
        for row in session.execute(
            select(*_SNAPSHOT_ROW)
            .outerjoin(Batch, Batch.id == Snapshot.batch_pk)
            .where(Snapshot.batch_pk == batch.id)
            .order_by(Snapshot.taken_at, Snapshot.id)
        )
    ]


def first_snapshot(
    session: Session, batch: BatchRow, kind: SnapshotKind
) -> TimelineSnapshot | None:
    """The batch's first snapshot of ``kind`` (its preflight one, its first finish one)."""
    row = session.execute(
        select(*_SNAPSHOT_ROW)
        .outerjoin(Batch, Batch.id == Snapshot.batch_pk)
        .where(Snapshot.batch_pk == batch.id, Snapshot.kind == kind.value)
        .order_by(Snapshot.taken_at, Snapshot.id)
        .limit(1)
    ).first()
    return None if row is None else TimelineSnapshot(*row)


def late_outcomes(session: Session, batch: BatchRow) -> list[tuple[str, int, str, datetime]]:
    """The batch's outcomes recorded after its finish: (job id, attempt, status, recorded at)."""
    return [
        (job_id, attempt, status, recorded_at)
        for job_id, attempt, status, recorded_at in session.execute(
            select(Outcome.job_id, Outcome.attempt, Outcome.status, Outcome.recorded_at)
            .join(Batch, Batch.id == Outcome.batch_pk)
            .where(Outcome.batch_pk == batch.id, _late())
            .order_by(Outcome.recorded_at, Outcome.id)
        )
    ]


def _failure_rows(
    session: Session, *conditions: ColumnElement[bool], account: str | None = None
) -> list[FailureRow]:
    query = (
        select(
            Batch.batch_id,
            Outcome.job_id,
            Outcome.attempt,
            Outcome.occurred_at,
            Outcome.http_status,
            Outcome.error,
            FailureTag.tag,
            FailureTag.reason,
            FailureTag.evidence,
            FailureTag.attribution,
            FailureTag.unattributed,
            FailureTag.classifier_version,
            FailureTag.classified_at,
        )
        .select_from(Outcome)
        .join(Batch, Batch.id == Outcome.batch_pk)
        .outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id)
        .where(Outcome.quota_failure.is_(True), *conditions)
        .order_by(Outcome.occurred_at, Outcome.id)
    )
    if account is not None:
        query = query.join(Account, Account.id == Batch.account_id).where(Account.name == account)
    return [FailureRow(*row) for row in session.execute(query)]


def batch_failures(session: Session, batch: BatchRow) -> list[FailureRow]:
    return _failure_rows(session, Outcome.batch_pk == batch.id)


def failures(
    session: Session,
    *,
    since: datetime | None = None,
    tag: str | None = None,
    account: str | None = None,
) -> list[FailureRow]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(Outcome.occurred_at >= since)
    if tag is not None:
        conditions.append(FailureTag.tag == tag)
    return _failure_rows(session, *conditions, account=account)


def batches(
    session: Session,
    *,
    since: datetime | None = None,
    status: str | None = None,
    account: str | None = None,
) -> list[BatchRow]:
    query = _batches().order_by(Batch.created_at.desc(), Batch.id.desc())
    if since is not None:
        query = query.where(Batch.created_at >= since)
    if status is not None:
        query = query.where(Batch.status == status)
    if account is not None:
        query = query.where(Account.name == account)
    return _batch_rows(query, session)


def findings(
    session: Session,
    *,
    since: datetime | None = None,
    kind: str | None = None,
    account: str | None = None,
) -> list[tuple[FindingRow, str]]:
    """Stored findings with their account's name, oldest first."""
    query = (
        select(*FINDING_ROW, Account.name)
        .join(Account, Account.id == Finding.account_id)
        .order_by(Finding.created_at, Finding.id)
    )
    if since is not None:
        query = query.where(Finding.created_at >= since)
    if kind is not None:
        query = query.where(Finding.kind == kind)
    if account is not None:
        query = query.where(Account.name == account)
    return [(FindingRow(*row[:-1]), row[-1]) for row in session.execute(query)]


# ---------------------------------------------------------------- the report's timeline


def account_named(session: Session, name: str) -> int | None:
    """The id of the account named ``name``, or None."""
    return session.scalar(select(Account.id).where(Account.name == name))


def timeline(
    session: Session,
    account_id: int,
    *,
    start: datetime,
    end: datetime,
    also: Collection[int] = (),
    anchors: bool = True,
) -> list[TimelineSnapshot]:
    """The account's snapshots in [start, end] and those ``also`` names, in time order.
    With ``anchors``, also the last one before ``start`` and the first one after ``end``
    (so that the line enters and leaves the window)."""
    before = after = None
    if anchors:
        before, after = _anchors(session, account_id, start, end)
    window = and_(Snapshot.taken_at >= (before or start), Snapshot.taken_at <= (after or end))
    # Core execution: no ORM row processing for what may be 100,000 rows.
    rows = session.connection().execute(
        select(*_SNAPSHOT_ROW)
        .outerjoin(Batch, Batch.id == Snapshot.batch_pk)
        .where(
            Snapshot.account_id == account_id,
            or_(window, Snapshot.id.in_(list(also))) if also else window,
        )
        .order_by(Snapshot.taken_at, Snapshot.id)
    )
    return [TimelineSnapshot(*row) for row in rows]


def _anchors(
    session: Session, account_id: int, start: datetime, end: datetime
) -> tuple[datetime | None, datetime | None]:
    before = session.scalar(
        select(func.max(Snapshot.taken_at)).where(
            Snapshot.account_id == account_id, Snapshot.taken_at < start
        )
    )
    after = session.scalar(
        select(func.min(Snapshot.taken_at)).where(
            Snapshot.account_id == account_id, Snapshot.taken_at > end
        )
    )
    return before, after


def outcome_times(session: Session, batch: BatchRow) -> tuple[datetime | None, datetime | None]:
    """When the batch's first and last outcomes happened (None: it has none)."""
    first, last = session.execute(
        select(func.min(Outcome.occurred_at), func.max(Outcome.occurred_at)).where(
            Outcome.batch_pk == batch.id
        )
    ).one()
    return first, last


def batch_spans(
    session: Session,
    account_id: int,
    *,
    start: datetime,
    end: datetime,
    exclude: BatchRow | None = None,
) -> list[tuple[str, datetime, datetime, str, str | None]]:
    """Batches of the account that ran in [start, end]: (batch id, from its check or
    creation, to its finish or last sign of life, status, meter). A blocked batch counts
    only when it recorded outcomes (it was dispatched anyway)."""
    began = func.coalesce(Batch.checked_at, Batch.created_at)
    ended = func.coalesce(Batch.finished_at, Batch.last_activity_at)
    ran = exists(select(Outcome.id).where(Outcome.batch_pk == Batch.id))
    query = (
        select(Batch.batch_id, began, ended, Batch.status, Batch.meter)
        .where(
            Batch.account_id == account_id,
            began <= end,
            ended >= start,
            or_(Batch.status != BatchStatus.BLOCKED.value, ran),
        )
        .order_by(began, Batch.batch_id)
    )
    if exclude is not None:
        query = query.where(Batch.id != exclude.id)
    return [(b, s, e, status, meter) for b, s, e, status, meter in session.execute(query)]


def costs_by_batch(
    session: Session,
    account_id: int,
    *,
    start: datetime,
    end: datetime,
    meter: str | None = None,
    exclude: BatchRow | None = None,
) -> dict[str, Decimal]:
    """Consumed cost each batch of the account recorded in (start, end] (on ``meter``)."""
    query = (
        select(Batch.batch_id, decimal_sum(Outcome.cost))
        .join(Batch, Batch.id == Outcome.batch_pk)
        .where(
            Batch.account_id == account_id,
            Outcome.cost.is_not(None),
            Outcome.occurred_at > start,
            Outcome.occurred_at <= end,
        )
        .group_by(Batch.batch_id)
    )
    if meter is not None:
        query = query.where(Batch.meter == meter)
    if exclude is not None:
        query = query.where(Batch.id != exclude.id)
    return {batch_id: cost or Decimal(0) for batch_id, cost in session.execute(query)}


def own_spends(session: Session, batch: BatchRow, *, start: datetime, end: datetime) -> list[Spend]:
    """The batch's consumed costs in (start, end], as of its finish when finished."""
    query = select(Outcome.occurred_at, Outcome.cost).where(
        Outcome.batch_pk == batch.id,
        Outcome.cost.is_not(None),
        Outcome.occurred_at > start,
        Outcome.occurred_at <= end,
    )
    if batch.finished_at is not None:
        query = query.where(Outcome.recorded_at <= batch.finished_at)
    return [Spend(batch.batch_id, at, cost) for at, cost in session.execute(query)]


def findings_between(
    session: Session, account_id: int, *, start: datetime, end: datetime
) -> list[FindingRow]:
    """The account's findings whose window overlaps [start, end], oldest first."""
    return [
        FindingRow(*row)
        for row in session.execute(
            select(*FINDING_ROW)
            .where(
                Finding.account_id == account_id,
                Finding.window_end >= start,
                Finding.window_start <= end,
            )
            .order_by(Finding.window_start, Finding.id)
        )
    ]
