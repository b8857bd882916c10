"""Read models for post-mortems: plain, JSON-ready dicts (amounts as decimal strings)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, func, select
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, FailureTag, Outcome, Snapshot
from preflight.db.session import decimal_sum
from preflight.domain.wire import amount_text, time_text


def batch_row(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "account": batch.account.name,
        "status": batch.status,
        "verdict": batch.verdict,
        "verified": batch.verified,
        "meter": batch.meter,
        "need": amount_text(batch.need),
        "reserve": amount_text(batch.reserve),
        "labels": batch.labels,
        "created_at": time_text(batch.created_at),
        "checked_at": time_text(batch.checked_at),
        "finished_at": time_text(batch.finished_at),
    }


def _failure_row(outcome: Outcome, tag: FailureTag | None, batch_id: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "job_id": outcome.job_id,
        "attempt": outcome.attempt,
        "failed_at": time_text(outcome.occurred_at),
        "http_status": outcome.http_status,
        "error": outcome.error,
        "tag": tag.tag if tag else None,
        "reason": tag.reason if tag else "not classified yet",
        "evidence": tag.evidence if tag else {},
        "attribution": tag.attribution if tag else [],
        "unattributed": amount_text(tag.unattributed) if tag else None,
        "classifier_version": tag.classifier_version if tag else None,
        "classified_at": time_text(tag.classified_at) if tag else None,
    }


def _totals(session: Session, batch_pks: list[int]) -> dict[int, dict[str, Any]]:
    failed = func.sum(case((Outcome.status == "failed", 1), else_=0), type_=Integer)
    quota = func.sum(case((Outcome.quota_failure.is_(True), 1), else_=0), type_=Integer)
    late = func.sum(case((_late(), 1), else_=0), type_=Integer)
    rows = session.execute(
        select(
            Outcome.batch_pk,
            func.count(Outcome.id),
            failed,
            quota,
            late,
            decimal_sum(Outcome.cost),
        )
        .join(Batch, Batch.id == Outcome.batch_pk)
        .where(Outcome.batch_pk.in_(batch_pks))
        .group_by(Outcome.batch_pk)
    )
    return {
        pk: {
            "total": total,
            "succeeded": total - (n_failed or 0),
            "failed": n_failed or 0,
            "quota_failures": n_quota or 0,
            "late": n_late or 0,
            # Consumed cost: a quota failure consumed nothing (its cost is expected cost).
            "cost": amount_text(cost or Decimal(0)),
        }
        for pk, total, n_failed, n_quota, n_late, cost in rows
    }


def _late() -> ColumnElement[bool]:
    """Over Outcome ⋈ Batch: recorded after the batch was finished."""
    return and_(Batch.finished_at.is_not(None), Outcome.recorded_at > Batch.finished_at)


_NO_OUTCOMES = {
    "total": 0,
    "succeeded": 0,
    "failed": 0,
    "quota_failures": 0,
    "late": 0,
    "cost": "0",
}


def show_batch(session: Session, batch: Batch) -> dict[str, Any]:
    """Everything a post-mortem of one batch needs, in time order."""
    snapshots = session.scalars(
        select(Snapshot).where(Snapshot.batch_pk == batch.id).order_by(Snapshot.taken_at)
    )
    failures = session.execute(
        select(Outcome, FailureTag)
        .outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id)
        .where(Outcome.batch_pk == batch.id, Outcome.quota_failure.is_(True))
        .order_by(Outcome.occurred_at, Outcome.id)
    )
    quota_failures = [_failure_row(o, t, batch.batch_id) for o, t in failures]
    overlapping = sorted(
        {name for f in quota_failures for name in (a["batch_id"] for a in f["attribution"])}
    )
    return {
        **batch_row(batch),
        "snapshots": [
            {
                "id": s.id,
                "kind": s.kind,
                "taken_at": time_text(s.taken_at),
                "credits": amount_text(s.credits),
                "api_quota_remaining": amount_text(s.api_quota_remaining),
                "balance": amount_text(s.meter(batch.meter)) if batch.meter else None,
            }
            for s in snapshots
        ],
        "outcomes": _totals(session, [batch.id]).get(batch.id, dict(_NO_OUTCOMES)),
        "late_outcomes": [
            {
                "job_id": o.job_id,
                "attempt": o.attempt,
                "status": o.status,
                "recorded_at": time_text(o.recorded_at),
            }
            for o in session.scalars(
                select(Outcome)
                .join(Batch, Batch.id == Outcome.batch_pk)
                .where(Outcome.batch_pk == batch.id, _late())
                .order_by(Outcome.recorded_at, Outcome.id)
            )
        ],
        "quota_failures": quota_failures,
        "overlapping_batches": overlapping,
    }


def list_failures(
    session: Session,
    *,
    since: datetime | None = None,
    tag: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    query = (
        select(Outcome, FailureTag, Batch.batch_id)
        .join(Batch, Batch.id == Outcome.batch_pk)
        .outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id)
        .where(Outcome.quota_failure.is_(True))
        .order_by(Outcome.occurred_at, Outcome.id)
    )
    if since is not None:
        query = query.where(Outcome.occurred_at >= since)
    if tag is not None:
        query = query.where(FailureTag.tag == tag)
    if account is not None:
        query = query.join(Account, Account.id == Batch.account_id).where(Account.name == account)
    return [_failure_row(o, t, batch_id) for o, t, batch_id in session.execute(query)]


def list_batches(
    session: Session, *, since: datetime | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    query = select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc())
    if since is not None:
        query = query.where(Batch.created_at >= since)
    if status is not None:
        query = query.where(Batch.status == status)
    batches = list(session.scalars(query))
    totals = _totals(session, [b.id for b in batches])
    return [{**batch_row(b), "outcomes": totals.get(b.id, dict(_NO_OUTCOMES))} for b in batches]
