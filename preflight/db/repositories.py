"""Queries and inserts of the verbs, over a session that the caller owns. Nothing here
commits: a service opens the transaction and commits at the edge of its verb."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from preflight.db.models import Batch, FailureTag, Outcome, Snapshot, TagSnapshot
from preflight.db.reports import BatchRow, batch_named
from preflight.db.session import connector_in, decimal_sum
from preflight.db.store import WriteStore
from preflight.domain.classify import (
    CLASSIFIER_VERSION,
    Classification,
    QuotaFailure,
    Reading,
    Spend,
    evidence_horizon,
)
from preflight.domain.vocabulary import BatchStatus, SnapshotKind


def insert_if_absent(session: Session, model: type[Any], values: Mapping[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING: the new row's id, or None when it already existed.

    Racing writers (other processes, other hosts) never fail on the conflict. The answer
    comes from RETURNING: psycopg 3 reports rowcount -1 for an INSERT.
    """
    dialect_insert = connector_in(session).insert
    statement = dialect_insert(model).values(**values).on_conflict_do_nothing()
    inserted: int | None = session.scalar(statement.returning(model.id))
    return inserted


def find_batch(session: Session, batch_id: str) -> BatchRow | None:
    """The batch named ``batch_id`` as the post-mortem reads it (the classifier's; a writer
    locks it through the write port, :meth:`preflight.db.store.WriteStore.batch`)."""
    return batch_named(session, batch_id)


@dataclass(frozen=True)
class QuotaFailureRow:
    """A stored quota failure as the classifier reads it (and tags it, by ``id``)."""

    id: int
    job_id: str
    attempt: int
    occurred_at: datetime
    expected_cost: Decimal | None


def preflight_snapshot(session: Session, batch: BatchRow) -> Snapshot | None:
    return session.scalar(
        select(Snapshot).where(
            Snapshot.batch_pk == batch.id, Snapshot.kind == SnapshotKind.PREFLIGHT.value
        )
    )


def recorded_cost(session: Session, batch: BatchRow) -> Decimal:
    """The batch's consumed cost; for a finished batch, as of its finish (later is late)."""
    query = select(decimal_sum(Outcome.cost)).where(Outcome.batch_pk == batch.id)
    if batch.finished_at is not None:
        query = query.where(Outcome.recorded_at <= batch.finished_at)
    total = session.scalar(query)
    return total or Decimal(0)


def _connection(session: Session) -> Connection:
    return session.connection()


def late_outcomes_count(session: Session, batch_pk: int, *, finished_at: datetime) -> int:
    """How many of the batch's outcomes were recorded after ``finished_at``."""
    count: int = (
        _connection(session)
        .execute(
            select(func.count(Outcome.id)).where(
                Outcome.batch_pk == batch_pk, Outcome.recorded_at > finished_at
            )
        )
        .scalar_one()
    )
    return count


def finish_batch(
    session: Session, store: WriteStore, batch: BatchRow, *, now: datetime
) -> BatchRow:
    """Mark ``batch`` (read under ``store.batch(…, lock=True)``) finished at ``now``: it
    holds nothing any more (``store``, the write port on ``session``'s transaction, lets
    its account know), and outcomes already recorded after ``now`` count as late. The
    batch as it is then."""
    late = late_outcomes_count(session, batch.id, finished_at=now)
    finished = replace(
        batch,
        status=BatchStatus.FINISHED.value,
        finished_at=now,
        last_activity_at=now,
        held=None,
        late_count=late,
    )
    session.execute(
        update(Batch)
        .where(Batch.id == batch.id)
        .values(
            status=finished.status,
            finished_at=now,
            last_activity_at=now,
            held=None,
            late_count=late,
        )
    )
    if batch.held:
        store.shift_held_need(batch.account_id, -batch.held)
    return finished


# ---------------------------------------------------------------- outcomes


def needs_classification(only_tags: Collection[str]) -> ColumnElement[bool]:
    """Over Outcome ⟕ FailureTag: quota failures never tagged, tagged by an older
    classifier version, or tagged with one of ``only_tags``."""
    return or_(
        FailureTag.id.is_(None),
        FailureTag.classifier_version != CLASSIFIER_VERSION,
        FailureTag.tag.in_(only_tags),
    )


def quota_failures(
    session: Session, batch: BatchRow, *, only_tags: Collection[str] | None = None
) -> list[QuotaFailureRow]:
    """The batch's quota failures; with ``only_tags``, those that need (re)classifying."""
    query = (
        select(
            Outcome.id,
            Outcome.job_id,
            Outcome.attempt,
            Outcome.occurred_at,
            Outcome.expected_cost,
        )
        .where(Outcome.batch_pk == batch.id, Outcome.quota_failure.is_(True))
        .order_by(Outcome.occurred_at, Outcome.id)
    )
    if only_tags is not None:
        query = query.outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id).where(
            needs_classification(only_tags)
        )
    return [QuotaFailureRow(*row) for row in session.execute(query)]


def _reading(snapshot: Snapshot, meter: str | None) -> Reading:
    return Reading(
        snapshot_id=snapshot.id,
        taken_at=snapshot.taken_at,
        balance=snapshot.meter(meter) if meter else None,
        kind=snapshot.kind,
    )


def load_quota_failures(
    session: Session,
    batch: BatchRow,
    failures: Sequence[QuotaFailureRow],
    *,
    staleness_window: timedelta,
    tolerance: Decimal,
) -> Iterator[QuotaFailure]:
    """The classifier's inputs for failures of one batch, one failure at a time (the
    caller consumes them inside its session), loaded with a handful of queries.

    Each failure gets the account's rows up to its own horizon (the end of its staleness
    window, or its live snapshot when later), never up to another failure's: the same
    evidence whatever other failures of the batch are loaded with it.
    """
    if not failures:
        return iter(())
    start = preflight_snapshot(session, batch)
    meter = batch.meter
    live = {
        snapshot.outcome_id: _reading(snapshot, meter)
        for snapshot in session.scalars(
            select(Snapshot).where(Snapshot.outcome_id.in_([f.id for f in failures]))
        )
    }
    horizons = {
        f.id: evidence_horizon(f.occurred_at, staleness_window, live.get(f.id)) for f in failures
    }
    # One query per kind of row, up to the furthest horizon; each failure takes its prefix.
    horizon = max(horizons.values())
    timeline: list[Reading] = []
    own: list[Spend] = []
    others: list[Spend] = []
    if start is not None:
        timeline = [
            _reading(s, meter)
            for s in session.scalars(
                select(Snapshot)
                .where(
                    Snapshot.account_id == batch.account_id,
                    Snapshot.taken_at >= start.taken_at,
                    Snapshot.taken_at <= horizon,
                )
                .order_by(Snapshot.taken_at, Snapshot.id)
            )
        ]
        window = (Outcome.occurred_at > start.taken_at, Outcome.occurred_at <= horizon)
        own = [
            Spend(batch.batch_id, at, cost, status == "succeeded")
            for at, cost, status in session.execute(
                select(Outcome.occurred_at, Outcome.cost, Outcome.status)
                .where(Outcome.batch_pk == batch.id, *window)
                .order_by(Outcome.occurred_at, Outcome.id)
            )
        ]
        others = [
            Spend(other_id, at, cost)
            for other_id, at, cost in session.execute(
                select(Batch.batch_id, Outcome.occurred_at, Outcome.cost)
                .join(Batch, Batch.id == Outcome.batch_pk)
                .where(
                    Batch.account_id == batch.account_id,
                    Batch.id != batch.id,
                    Batch.meter == meter,
                    Outcome.cost.is_not(None),
                    *window,
                )
                .order_by(Outcome.occurred_at, Outcome.id)
            )
        ]
    preflight = _reading(start, meter) if start is not None else None
    taken = [reading.taken_at for reading in timeline]
    own_at = [spend.at for spend in own]
    others_at = [spend.at for spend in others]

    def case(failure: QuotaFailureRow) -> QuotaFailure:
        until = horizons[failure.id]
        return QuotaFailure(
            batch_id=batch.batch_id,
            failed_at=failure.occurred_at,
            preflight=preflight,
            timeline=timeline[: bisect_right(taken, until)],
            own=own[: bisect_right(own_at, until)],
            others=others[: bisect_right(others_at, until)],
            declared_cost=failure.expected_cost,
            live=live.get(failure.id),
            meter=meter or "the meter",
            staleness_window=staleness_window,
            tolerance=tolerance,
        )

    return (case(failure) for failure in failures)


def save_tag(
    session: Session, outcome: QuotaFailureRow, result: Classification, *, now: datetime
) -> bool:
    """Store (or replace) the outcome's tag. Returns True when anything changed."""
    evidence = result.evidence.to_dict()
    attribution = [
        {"batch_id": a.batch_id, "cost": format(a.cost, "f")} for a in result.attribution
    ]
    tag = session.scalar(select(FailureTag).where(FailureTag.outcome_id == outcome.id))
    if tag is not None and (
        tag.tag,
        tag.reason,
        tag.evidence,
        tag.attribution,
        tag.unattributed,
        tag.classifier_version,
    ) == (
        result.tag.value,
        result.reason,
        evidence,
        attribution,
        result.unattributed,
        result.version,
    ):
        return False
    if tag is None:
        tag = FailureTag(outcome_id=outcome.id)
        session.add(tag)
    tag.tag = result.tag.value
    tag.reason = result.reason
    tag.evidence = evidence
    tag.attribution = attribution
    tag.unattributed = result.unattributed
    tag.classifier_version = result.version
    tag.classified_at = now
    session.flush()
    session.execute(delete(TagSnapshot).where(TagSnapshot.tag_id == tag.id))
    cited = dict.fromkeys(result.evidence.snapshot_ids)
    if cited:
        session.execute(
            insert(TagSnapshot), [{"tag_id": tag.id, "snapshot_id": sid} for sid in cited]
        )
    return True


def batches_with_quota_failures(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(Batch.batch_id)
            .where(Batch.id.in_(select(Outcome.batch_pk).where(Outcome.quota_failure.is_(True))))
            .order_by(Batch.batch_id)
        )
    )


@dataclass(frozen=True)
class SpendInputs:
    """What ``finish`` compares: own consumed cost, and the readings and own spends
    between the batch's preflight snapshot and its first finish snapshot."""

    meter: str | None
    own_cost: Decimal
    start: Reading | None
    end: Reading | None
    between: list[Reading]
    own: list[Spend]


def spend_inputs(session: Session, batch: BatchRow) -> SpendInputs:
    """Own cost (as of the finish, for a finished batch), and the walk's inputs."""
    own_total = recorded_cost(session, batch)
    start = preflight_snapshot(session, batch)
    # The first finish snapshot: a repeated finish answers the first one's numbers.
    end = session.scalar(
        select(Snapshot)
        .where(Snapshot.batch_pk == batch.id, Snapshot.kind == SnapshotKind.FINISH.value)
        .order_by(Snapshot.taken_at, Snapshot.id)
        .limit(1)
    )
    meter = batch.meter
    if start is None or end is None or meter is None:
        return SpendInputs(meter, own_total, None, None, [], [])
    between = [
        _reading(s, meter)
        for s in session.scalars(
            select(Snapshot).where(
                Snapshot.account_id == batch.account_id,
                Snapshot.taken_at > start.taken_at,
                Snapshot.taken_at < end.taken_at,
            )
        )
    ]
    own = [
        Spend(batch.batch_id, at, cost)
        for at, cost in session.execute(
            select(Outcome.occurred_at, Outcome.cost).where(
                Outcome.batch_pk == batch.id,
                Outcome.occurred_at > start.taken_at,
                Outcome.occurred_at <= end.taken_at,
                *([Outcome.recorded_at <= batch.finished_at] if batch.finished_at else []),
            )
        )
    ]
    return SpendInputs(meter, own_total, _reading(start, meter), _reading(end, meter), between, own)
