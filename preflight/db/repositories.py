"""Queries and inserts over a session that the caller owns. Nothing here commits."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, FailureTag, Outcome, Snapshot, TagSnapshot
from preflight.db.session import decimal_sum
from preflight.domain.batch import BatchStatus, SnapshotKind
from preflight.domain.classify import (
    CLASSIFIER_VERSION,
    Classification,
    ForeignConsumption,
    QuotaFailure,
    Reading,
    Spend,
    foreign_consumption,
)
from preflight.domain.exact import exact
from preflight.domain.verdict import outstanding_need
from preflight.domain.wire import amount_text


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_if_absent(session: Session, model: type[Any], values: Mapping[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING: the new row's id, or None when it already existed.

    Racing writers (other processes, other hosts) never fail on the conflict. The answer
    comes from RETURNING: psycopg 3 reports rowcount -1 for an INSERT.
    """
    dialect_insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = dialect_insert(model).values(**values).on_conflict_do_nothing()
    inserted: int | None = session.scalar(statement.returning(model.id))
    return inserted


def get_or_create_account(session: Session, name: str, *, now: datetime) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        insert_if_absent(session, Account, {"name": name, "created_at": now})
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
    created = (
        insert_if_absent(
            session, Batch, {**defaults, **values, "batch_id": batch_id, "account_id": account.id}
        )
        is not None
    )
    return session.scalars(select(Batch).where(Batch.batch_id == batch_id)).one(), created


def preflight_snapshot(session: Session, batch: Batch) -> Snapshot | None:
    return session.scalar(
        select(Snapshot).where(
            Snapshot.batch_pk == batch.id, Snapshot.kind == SnapshotKind.PREFLIGHT.value
        )
    )


def recorded_cost(session: Session, batch: Batch) -> Decimal:
    """The batch's consumed cost; for a finished batch, as of its finish (later is late)."""
    query = select(decimal_sum(Outcome.cost)).where(Outcome.batch_pk == batch.id)
    if batch.finished_at is not None:
        query = query.where(Outcome.recorded_at <= batch.finished_at)
    total = session.scalar(query)
    return total or Decimal(0)


@exact
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


# ---------------------------------------------------------------- outcomes


def outcome_id(session: Session, batch: Batch, job_id: str, attempt: int) -> int | None:
    return session.scalar(
        select(Outcome.id).where(
            Outcome.batch_pk == batch.id, Outcome.job_id == job_id, Outcome.attempt == attempt
        )
    )


def outcome_rows_by_key(
    session: Session, batch: Batch, job_ids: Iterable[str]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Stored outcomes of ``batch`` for these jobs, keyed by (job_id, attempt)."""
    rows = session.execute(
        select(
            Outcome.id,
            Outcome.job_id,
            Outcome.attempt,
            Outcome.status,
            Outcome.cost,
            Outcome.expected_cost,
            Outcome.http_status,
            Outcome.error,
            Outcome.quota_failure,
            Outcome.occurred_at,
        ).where(Outcome.batch_pk == batch.id, Outcome.job_id.in_(set(job_ids)))
    ).mappings()
    return {(row["job_id"], row["attempt"]): dict(row) for row in rows}


def insert_new_outcomes(
    session: Session, rows: Sequence[Mapping[str, Any]]
) -> set[tuple[str, int]]:
    """Insert outcomes whose (batch, job, attempt) is not stored yet; return the keys inserted.

    One batched INSERT … ON CONFLICT DO NOTHING RETURNING, without ORM objects, so a
    bulk import neither looks every key up first nor grows in memory.
    """
    if not rows:
        return set()
    table = Outcome.__table__
    assert isinstance(table, Table)
    dialect_insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = (
        dialect_insert(table)
        .on_conflict_do_nothing(index_elements=["batch_pk", "job_id", "attempt"])
        .returning(table.c.job_id, table.c.attempt)
    )
    result = session.connection().execute(statement, list(rows))
    return {(job_id, attempt) for job_id, attempt in result}


def needs_classification(only_tags: Collection[str]) -> ColumnElement[bool]:
    """Over Outcome ⟕ FailureTag: quota failures never tagged, tagged by an older
    classifier version, or tagged with one of ``only_tags``."""
    return or_(
        FailureTag.id.is_(None),
        FailureTag.classifier_version != CLASSIFIER_VERSION,
        FailureTag.tag.in_(only_tags),
    )


def quota_failures(
    session: Session, batch: Batch, *, only_tags: Collection[str] | None = None
) -> list[Outcome]:
    """The batch's quota failures; with ``only_tags``, those that need (re)classifying."""
    query = (
        select(Outcome)
        .where(Outcome.batch_pk == batch.id, Outcome.quota_failure.is_(True))
        .order_by(Outcome.occurred_at, Outcome.id)
    )
    if only_tags is not None:
        query = query.outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id).where(
            needs_classification(only_tags)
        )
    return list(session.scalars(query))


def _reading(snapshot: Snapshot, meter: str | None) -> Reading:
    return Reading(
        snapshot_id=snapshot.id,
        taken_at=snapshot.taken_at,
        balance=snapshot.meter(meter) if meter else None,
        kind=snapshot.kind,
    )


def load_quota_failures(
    session: Session,
    batch: Batch,
    failures: Sequence[Outcome],
    *,
    staleness_window: timedelta,
    tolerance: Decimal,
) -> list[QuotaFailure]:
    """The classifier's inputs for failures of one batch, loaded with a handful of queries."""
    if not failures:
        return []
    start = preflight_snapshot(session, batch)
    meter = batch.meter
    live = {
        snapshot.outcome_id: _reading(snapshot, meter)
        for snapshot in session.scalars(
            select(Snapshot).where(Snapshot.outcome_id.in_([f.id for f in failures]))
        )
    }
    horizon = max(
        [f.occurred_at + staleness_window for f in failures]
        + [reading.taken_at for reading in live.values()]
    )
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
                select(Outcome.occurred_at, Outcome.cost, Outcome.status).where(
                    Outcome.batch_pk == batch.id, *window
                )
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
            )
        ]
    return [
        QuotaFailure(
            batch_id=batch.batch_id,
            failed_at=failure.occurred_at,
            preflight=_reading(start, meter) if start is not None else None,
            timeline=timeline,
            own=own,
            others=others,
            declared_cost=failure.expected_cost,
            live=live.get(failure.id),
            meter=meter or "the meter",
            staleness_window=staleness_window,
            tolerance=tolerance,
        )
        for failure in failures
    ]


def save_tag(session: Session, outcome: Outcome, result: Classification, *, now: datetime) -> bool:
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
class SpendSummary:
    """A batch's own recorded cost against the balance drop between two of its snapshots."""

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


def batch_spend_summary(session: Session, batch: Batch) -> SpendSummary:
    """Own cost, and foreign consumption from the preflight to the latest batch snapshot."""
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
        return SpendSummary(meter, own_total, None, None, None)
    first, last = _reading(start, meter), _reading(end, meter)
    if first.balance is None or last.balance is None:
        return SpendSummary(meter, own_total, first, last, None)
    between = [
        reading
        for reading in (
            _reading(s, meter)
            for s in session.scalars(
                select(Snapshot).where(
                    Snapshot.account_id == batch.account_id,
                    Snapshot.taken_at > start.taken_at,
                    Snapshot.taken_at < end.taken_at,
                )
            )
        )
        if reading.balance is not None
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
    foreign = foreign_consumption(first, last, sorted(between, key=lambda r: r.taken_at), own)
    return SpendSummary(meter, own_total, first, last, foreign)
