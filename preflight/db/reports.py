"""Queries behind the post-mortem read models (``show``, ``failures``, ``batches``,
``findings``) and the report's timeline (``report``). They return stored rows;
:mod:`preflight.services.batches` and :mod:`preflight.services.reports` turn them into
typed read models."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, FailureTag, Finding, Outcome, Snapshot
from preflight.db.session import decimal_sum
from preflight.domain.classify import Spend
from preflight.domain.timeline import TimelineSnapshot
from preflight.domain.vocabulary import BatchStatus, SnapshotKind

FailureRow = tuple[Outcome, FailureTag | None, str]  # the outcome, its tag, its batch id


def _late() -> ColumnElement[bool]:
    """Over Outcome ⋈ Batch: recorded after the batch was finished."""
    return and_(Batch.finished_at.is_not(None), Outcome.recorded_at > Batch.finished_at)


def batch_snapshots(session: Session, batch: Batch) -> list[Snapshot]:
    return list(
        session.scalars(
            select(Snapshot)
            .where(Snapshot.batch_pk == batch.id)
            .order_by(Snapshot.taken_at, Snapshot.id)
        )
    )


def late_outcomes(session: Session, batch: Batch) -> list[Outcome]:
    return list(
        session.scalars(
            select(Outcome)
            .join(Batch, Batch.id == Outcome.batch_pk)
            .where(Outcome.batch_pk == batch.id, _late())
            .order_by(Outcome.recorded_at, Outcome.id)
        )
    )


def _failure_rows(
    session: Session, *conditions: ColumnElement[bool], account: str | None = None
) -> list[FailureRow]:
    query = (
        select(Outcome, FailureTag, Batch.batch_id)
        .join(Batch, Batch.id == Outcome.batch_pk)
        .outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id)
        .where(Outcome.quota_failure.is_(True), *conditions)
        .order_by(Outcome.occurred_at, Outcome.id)
    )
    if account is not None:
        query = query.join(Account, Account.id == Batch.account_id).where(Account.name == account)
    return [(o, t, b) for o, t, b in session.execute(query)]


def batch_failures(session: Session, batch: Batch) -> list[FailureRow]:
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
) -> list[Batch]:
    query = select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc())
    if since is not None:
        query = query.where(Batch.created_at >= since)
    if status is not None:
        query = query.where(Batch.status == status)
    if account is not None:
        query = query.join(Account, Account.id == Batch.account_id).where(Account.name == account)
    return list(session.scalars(query))


def findings(
    session: Session,
    *,
    since: datetime | None = None,
    kind: str | None = None,
    account: str | None = None,
) -> list[tuple[Finding, str]]:
    """Stored findings with their account's name, oldest first."""
    query = (
        select(Finding, Account.name)
        .join(Account, Account.id == Finding.account_id)
        .order_by(Finding.created_at, Finding.id)
    )
    if since is not None:
        query = query.where(Finding.created_at >= since)
    if kind is not None:
        query = query.where(Finding.kind == kind)
    if account is not None:
        query = query.where(Account.name == account)
    return [(finding, name) for finding, name in session.execute(query)]


# ---------------------------------------------------------------- the report's timeline


def account_named(session: Session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


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
        select(
            Snapshot.id,
            Snapshot.taken_at,
            Snapshot.kind,
            Snapshot.credits,
            Snapshot.api_quota_remaining,
            Batch.batch_id,
            Snapshot.extra_meters,
        )
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


def outcome_times(session: Session, batch: Batch) -> tuple[datetime | None, datetime | None]:
    """When the batch's first and last outcomes happened (None: it has none)."""
    first, last = session.execute(
        select(func.min(Outcome.occurred_at), func.max(Outcome.occurred_at)).where(
            Outcome.batch_pk == batch.id
        )
    ).one()
    return first, last


def first_finish_snapshot(session: Session, batch: Batch) -> Snapshot | None:
    return session.scalar(
        select(Snapshot)
        .where(Snapshot.batch_pk == batch.id, Snapshot.kind == SnapshotKind.FINISH.value)
        .order_by(Snapshot.taken_at, Snapshot.id)
        .limit(1)
    )


def batch_spans(
    session: Session,
    account_id: int,
    *,
    start: datetime,
    end: datetime,
    exclude: Batch | None = None,
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
    exclude: Batch | None = None,
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


def own_spends(session: Session, batch: Batch, *, start: datetime, end: datetime) -> list[Spend]:
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
) -> list[Finding]:
    """The account's findings whose window overlaps [start, end], oldest first."""
    return list(
        session.scalars(
            select(Finding)
            .where(
                Finding.account_id == account_id,
                Finding.window_end >= start,
                Finding.window_start <= end,
            )
            .order_by(Finding.window_start, Finding.id)
        )
    )
