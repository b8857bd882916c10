"""Queries behind the guard, the forecast and the need from history: stored rows only.

:mod:`preflight.services.forecasts` turns them into the pure domain's inputs
(:mod:`preflight.domain.forecast`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, Outcome, Snapshot
from preflight.db.reports import BatchRow, _batch_rows, _batches
from preflight.db.repositories import _reading, preflight_snapshot
from preflight.db.session import decimal_sum
from preflight.domain.classify import Reading, Spend
from preflight.domain.exact import exact
from preflight.domain.verdict import outstanding_need
from preflight.domain.vocabulary import BatchStatus

#: The need from history reads the most recent finished batches of the label, this many.
HISTORY_BATCHES = 100


def account_id(session: Session, name: str) -> int | None:
    return session.scalar(select(Account.id).where(Account.name == name))


def snapshot_taken_at(session: Session, snapshot_id: int) -> datetime | None:
    return session.scalar(select(Snapshot.taken_at).where(Snapshot.id == snapshot_id))


def _latest(session: Session, account_id: int) -> Snapshot | None:
    return session.scalar(
        select(Snapshot)
        .where(Snapshot.account_id == account_id)
        .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
        .limit(1)
    )


def latest_taken_at(session: Session, account_id: int) -> datetime | None:
    """When the account's latest snapshot was taken, whoever took it (None: never)."""
    latest = _latest(session, account_id)
    return None if latest is None else latest.taken_at


@dataclass(frozen=True)
class ForecastRows:
    """The walk from the batch's preflight snapshot to ``end``, and the batch's spends."""

    start: Reading
    end: Reading
    readings: list[Reading]
    own: list[Spend]
    succeeded_count: int
    succeeded_cost: Decimal
    outstanding_other: Decimal


def forecast_rows(
    session: Session, batch: BatchRow, *, hold_cutoff: datetime
) -> ForecastRows | None:
    """The walk from the batch's preflight snapshot to its account's latest snapshot. None
    when the batch has no preflight snapshot or no meter (it was never checked)."""
    start = preflight_snapshot(session, batch)
    end = _latest(session, batch.account_id)
    meter = batch.meter
    if start is None or end is None or meter is None:
        return None
    readings = [
        _reading(s, meter)
        for s in session.scalars(
            select(Snapshot)
            .where(
                Snapshot.account_id == batch.account_id,
                Snapshot.taken_at > start.taken_at,
                Snapshot.taken_at < end.taken_at,
            )
            .order_by(Snapshot.taken_at, Snapshot.id)
        )
    ]
    # Only what the walk reads: the consumed costs since the check, up to the reading.
    own = [
        Spend(batch.batch_id, at, cost)
        for at, cost in session.execute(
            select(Outcome.occurred_at, Outcome.cost).where(
                Outcome.batch_pk == batch.id,
                Outcome.cost.is_not(None),
                Outcome.occurred_at > start.taken_at,
                Outcome.occurred_at <= end.taken_at,
            )
        )
    ]
    # The mean cost of a succeeded job without summing every row (SQLite sums amounts in
    # Python): the batch's maintained consumed cost less what its failed jobs consumed (few
    # rows), and a native count; one statement, so one snapshot of the batch.
    count, consumed, failed = session.execute(
        select(
            select(func.count())
            .where(
                Outcome.batch_pk == batch.id,
                Outcome.status == "succeeded",
                Outcome.cost.is_not(None),
            )
            .scalar_subquery(),
            Batch.consumed_cost,
            select(decimal_sum(Outcome.cost))
            .where(
                Outcome.batch_pk == batch.id,
                Outcome.status == "failed",
                Outcome.cost.is_not(None),
            )
            .scalar_subquery(),
        ).where(Batch.id == batch.id)
    ).one()
    return ForecastRows(
        start=_reading(start, meter),
        end=_reading(end, meter),
        readings=readings,
        own=own,
        succeeded_count=int(count or 0),
        succeeded_cost=_minus(consumed, failed),
        outstanding_other=outstanding_other(session, batch, hold_cutoff=hold_cutoff),
    )


def open_batches(session: Session, account_id: int) -> list[BatchRow]:
    """The account's open batches that a check gave a meter, oldest first."""
    return _batch_rows(
        _batches()
        .where(
            Batch.account_id == account_id,
            Batch.status == BatchStatus.OPEN.value,
            Batch.meter.is_not(None),
        )
        .order_by(Batch.created_at, Batch.id),
        session,
    )


@exact
def _minus(total: Decimal, part: Decimal | None) -> Decimal:
    return total - (part or Decimal(0))


def outstanding_other(session: Session, batch: BatchRow, *, hold_cutoff: datetime) -> Decimal:
    """What the account's other open batches with a need, active since ``hold_cutoff``,
    may still spend: the holds' rule, read without writing them."""
    total = Decimal(0)
    for need, consumed in session.execute(
        select(Batch.need, Batch.consumed_cost).where(
            Batch.account_id == batch.account_id,
            Batch.id != batch.id,
            Batch.status == BatchStatus.OPEN.value,
            Batch.need.is_not(None),
            Batch.last_activity_at >= hold_cutoff,
        )
    ):
        total += outstanding_need(need, consumed)
    return total


def labelled_history(
    session: Session, account_id: int, key: str, value: str, *, exclude: str | None = None
) -> list[list[Decimal]]:
    """The consumed costs of the succeeded jobs of the account's most recent finished
    batches labelled ``key=value`` (at most :data:`HISTORY_BATCHES`), one list per batch."""
    batch_ids = list(
        session.scalars(
            select(Batch.id)
            .where(
                Batch.account_id == account_id,
                Batch.status == BatchStatus.FINISHED.value,
                Batch.labels[key].as_string() == value,
                *([Batch.batch_id != exclude] if exclude else []),
            )
            .order_by(Batch.finished_at.desc(), Batch.id.desc())
            .limit(HISTORY_BATCHES)
        )
    )
    costs: dict[int, list[Decimal]] = defaultdict(list)
    if batch_ids:
        for pk, cost in session.execute(
            select(Outcome.batch_pk, Outcome.cost)
            .join(Batch, Batch.id == Outcome.batch_pk)
            .where(
                Outcome.batch_pk.in_(batch_ids),
                Outcome.status == "succeeded",
                Outcome.cost.is_not(None),
                # As of the finish: an outcome recorded later is late, not history.
                Outcome.recorded_at <= Batch.finished_at,
            )
            .order_by(Outcome.batch_pk, Outcome.id)
        ):
            if cost is not None:
                costs[pk].append(cost)
    return [costs[pk] for pk in batch_ids]
