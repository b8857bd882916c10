"""Queries behind the post-mortem read models (``show``, ``failures``, ``batches``,
``findings``). They return stored rows; :mod:`preflight.services.batches` turns them into
typed read models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, FailureTag, Finding, Outcome, Snapshot

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
