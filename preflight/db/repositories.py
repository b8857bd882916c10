"""Queries and inserts of the verbs, over a session that the caller owns. Nothing here
commits: a service opens the transaction and commits at the edge of its verb."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table, delete, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from preflight.db.models import Account, Batch, FailureTag, Outcome, Snapshot, TagSnapshot
from preflight.db.session import decimal_sum
from preflight.domain.classify import (
    CLASSIFIER_VERSION,
    Classification,
    QuotaFailure,
    Reading,
    Spend,
)
from preflight.domain.errors import ConflictError
from preflight.domain.exact import exact
from preflight.domain.outcome import OutcomeInput
from preflight.domain.verdict import outstanding_need
from preflight.domain.vocabulary import BatchStatus, SnapshotKind


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
class SpendInputs:
    """What ``finish`` compares: own consumed cost, and the readings and own spends
    between the batch's preflight snapshot and its first finish snapshot."""

    meter: str | None
    own_cost: Decimal
    start: Reading | None
    end: Reading | None
    between: list[Reading]
    own: list[Spend]


def spend_inputs(session: Session, batch: Batch) -> SpendInputs:
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


# ---------------------------------------------------------------- snapshots


class ProfileValues(Protocol):
    """What a stored snapshot keeps of one profile reading (the vendor's ``Profile``)."""

    @property
    def raw(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def credits(self) -> Decimal | None: ...
    @property
    def api_quota_remaining(self) -> Decimal | None: ...
    @property
    def http_status(self) -> int: ...
    @property
    def latency_ms(self) -> int: ...


def store_snapshot(
    session: Session,
    account: Account,
    profile: ProfileValues,
    *,
    now: datetime,
    kind: SnapshotKind,
    batch: Batch | None = None,
    outcome_id: int | None = None,
) -> Snapshot:
    """Insert one snapshot (and learn the account's ``user_id`` on first sight)."""
    if account.user_id is None and profile.user_id is not None:
        account.user_id = profile.user_id
    snapshot = Snapshot(
        account_id=account.id,
        batch_pk=batch.id if batch else None,
        outcome_id=outcome_id,
        kind=kind.value,
        taken_at=now,
        credits=profile.credits,
        api_quota_remaining=profile.api_quota_remaining,
        tier=profile.tier,
        user_id=profile.user_id,
        raw=profile.raw,
        http_status=profile.http_status,
        latency_ms=profile.latency_ms,
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def account_by_id(session: Session, account_id: int) -> Account:
    return session.get_one(Account, account_id)


# ---------------------------------------------------------------- storing outcomes


@dataclass(frozen=True)
class StoredOutcomes:
    inserted: int
    duplicates: int
    conflict: tuple[int, ConflictError] | None  # the first contradicting line, if any


def _outcome_row(batch: Batch, item: OutcomeInput, now: datetime) -> dict[str, Any]:
    return {
        "batch_pk": batch.id,
        "job_id": item.job_id,
        "attempt": item.attempt,
        "status": item.status.value,
        "http_status": item.http_status,
        "cost": item.cost,
        "expected_cost": item.expected_cost,
        "error": item.error,
        "quota_failure": item.quota_failure,
        "occurred_at": item.at or now,
        "recorded_at": now,
    }


def _conflict_error(batch_id: str, item: OutcomeInput, differences: list[str]) -> ConflictError:
    return ConflictError(
        f"job {item.job_id!r} attempt {item.attempt} of batch {batch_id!r} is already "
        f"recorded with a different {', '.join(differences)}; outcomes are never "
        "overwritten (record it as a new attempt instead)"
    )


def store_outcomes(
    session: Session, batch: Batch, items: Sequence[tuple[int, OutcomeInput]], now: datetime
) -> StoredOutcomes:
    """Store numbered outcomes in order, up to the first one that contradicts a stored
    outcome or an earlier line: that line and every later one are not kept.

    Identical repeats are duplicates, not errors. New keys are inserted without being
    looked up first; only keys that were already stored are read back and compared.
    """
    first: dict[tuple[str, int], tuple[int, OutcomeInput]] = {}
    conflict: tuple[int, ConflictError] | None = None
    for line_no, item in items:
        key = (item.job_id, item.attempt)
        earlier = first.get(key)
        if earlier is None:
            first[key] = (line_no, item)
        elif earlier[1] != item:
            conflict = (
                line_no,
                ConflictError(
                    f"job {item.job_id!r} attempt {item.attempt} was given on line {earlier[0]} "
                    "with different values"
                ),
            )
            break
    candidates = list(first.values())
    savepoint = session.begin_nested()
    inserted = insert_new_outcomes(session, [_outcome_row(batch, i, now) for _, i in candidates])
    leftovers = [(n, i) for n, i in candidates if (i.job_id, i.attempt) not in inserted]
    if leftovers:
        stored = outcome_rows_by_key(session, batch, {i.job_id for _, i in leftovers})
        for line_no, item in leftovers:
            differences = item.differences(stored[(item.job_id, item.attempt)])
            if differences:
                if conflict is None or line_no < conflict[0]:
                    conflict = (line_no, _conflict_error(batch.batch_id, item, differences))
                break
    if conflict is not None and any(
        n >= conflict[0] for n, i in candidates if (i.job_id, i.attempt) in inserted
    ):
        # Lines after the conflicting one went in with the rest: keep only those before it.
        savepoint.rollback()
        inserted = insert_new_outcomes(
            session,
            [
                _outcome_row(batch, i, now)
                for n, i in candidates
                if n < conflict[0] and (i.job_id, i.attempt) in inserted
            ],
        )
    else:
        savepoint.commit()
    processed = sum(1 for n, _ in items if conflict is None or n < conflict[0])
    return StoredOutcomes(len(inserted), processed - len(inserted), conflict)
