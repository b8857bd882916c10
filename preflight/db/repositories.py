"""Queries and inserts over a session that the caller owns. Nothing here commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, Outcome, Snapshot
from preflight.db.session import decimal_sum
from preflight.domain.batch import BatchStatus, SnapshotKind
from preflight.domain.verdict import outstanding_need


def _insert_ignoring_conflicts(
    session: Session, model: type[Any], values: Mapping[str, Any]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING, so racing writers do not fail. True if inserted."""
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(model).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(model).values(**values).on_conflict_do_nothing()
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return bool(result.rowcount)


def get_or_create_account(session: Session, name: str, *, now: datetime) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        _insert_ignoring_conflicts(session, Account, {"name": name, "created_at": now})
        account = session.scalars(select(Account).where(Account.name == name)).one()
    return account


def find_batch(session: Session, batch_id: str) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.batch_id == batch_id))


def get_or_create_batch(
    session: Session, batch_id: str, *, account: Account, now: datetime, **values: Any
) -> tuple[Batch, bool]:
    """The batch named ``batch_id``, creating it with ``values``; True when created now."""
    batch = find_batch(session, batch_id)
    if batch is not None:
        return batch, False
    defaults: dict[str, Any] = {
        "status": BatchStatus.OPEN.value,
        "verified": False,
        "reserve": Decimal(0),
        "labels": {},
        "created_at": now,
        "last_activity_at": now,
    }
    created = _insert_ignoring_conflicts(
        session, Batch, {**defaults, **values, "batch_id": batch_id, "account_id": account.id}
    )
    return session.scalars(select(Batch).where(Batch.batch_id == batch_id)).one(), created


def preflight_snapshot(session: Session, batch: Batch) -> Snapshot | None:
    return session.scalar(
        select(Snapshot).where(
            Snapshot.batch_pk == batch.id, Snapshot.kind == SnapshotKind.PREFLIGHT.value
        )
    )


def recorded_cost(session: Session, batch: Batch) -> Decimal:
    total = session.scalar(select(decimal_sum(Outcome.cost)).where(Outcome.batch_pk == batch.id))
    return total or Decimal(0)


def outstanding_need_of_others(
    session: Session,
    account: Account,
    *,
    exclude: Batch | None,
    now: datetime,
    hold_expiry: timedelta,
) -> Decimal:
    """What the account's other open batches may still spend.

    A batch quiet for longer than ``hold_expiry`` no longer counts, so a crashed
    orchestrator cannot pin the balance.
    """
    spent = select(decimal_sum(Outcome.cost)).where(Outcome.batch_pk == Batch.id).scalar_subquery()
    query = select(Batch.need, spent).where(
        Batch.account_id == account.id,
        Batch.status == BatchStatus.OPEN.value,
        Batch.need.is_not(None),
        Batch.last_activity_at >= now - hold_expiry,
    )
    if exclude is not None:
        query = query.where(Batch.id != exclude.id)
    return sum(
        (outstanding_need(need, spent or Decimal(0)) for need, spent in session.execute(query)),
        Decimal(0),
    )
