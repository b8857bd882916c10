"""Queries and inserts of the verbs, over a session that the caller owns. Nothing here
commits: a service opens the transaction and commits at the edge of its verb."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from preflight.db import bulk
from preflight.db import sqlite_fast as fast
from preflight.db.models import Account, Batch, FailureTag, Outcome, Snapshot, TagSnapshot
from preflight.db.session import decimal_sum
from preflight.db.writes import AccountState as AccountState
from preflight.db.writes import BatchState as BatchState
from preflight.db.writes import ProfileValues as ProfileValues
from preflight.db.writes import account_and_batch as account_and_batch
from preflight.db.writes import account_state as account_state
from preflight.db.writes import batch_state as batch_state
from preflight.db.writes import hold_change as hold_change
from preflight.db.writes import hold_of as hold_of
from preflight.db.writes import insert_snapshot as insert_snapshot
from preflight.db.writes import lock_account as lock_account
from preflight.db.writes import lock_account_of as lock_account_of
from preflight.db.writes import peek_batch as peek_batch
from preflight.db.writes import shift_held_need as shift_held_need
from preflight.domain.errors import ConflictError
from preflight.domain.exact import exact
from preflight.domain.outcome import OutcomeInput, OutcomeRow, outcome_from_row, outcome_row
from preflight.domain.vocabulary import BatchStatus, OutcomeStatus, SnapshotKind

if TYPE_CHECKING:
    # The classifier is imported where it is used: a check never loads it.
    from preflight.domain.classify import Classification, QuotaFailure, Reading, Spend


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@cache
def _insert_of(dialect: str) -> Callable[..., Any]:
    """The dialect's ``insert`` (with ON CONFLICT), imported for that dialect only: the
    PostgreSQL dialect package (asyncpg's module included) costs a SQLite process ~30 ms."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def insert_if_absent(session: Session, model: type[Any], values: Mapping[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING: the new row's id, or None when it already existed.

    Racing writers (other processes, other hosts) never fail on the conflict. The answer
    comes from RETURNING: psycopg 3 reports rowcount -1 for an INSERT.
    """
    dialect_insert = _insert_of(_dialect(session))
    statement = dialect_insert(model).values(**values).on_conflict_do_nothing()
    inserted: int | None = session.scalar(statement.returning(model.id))
    return inserted


def get_or_create_account(session: Session, name: str, *, now: datetime) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        insert_if_absent(session, Account, {"name": name, "created_at": now})
        account = session.scalars(select(Account).where(Account.name == name)).one()
    return account


#: Step 1 of the lock order (:mod:`preflight.db.writes`) for a writer that names a batch:
#: the row of the batch's account (PostgreSQL; SQLite's write transaction holds it all).
_LOCK_ACCOUNT_OF_BATCH = (
    select(Account.id)
    .where(
        Account.id
        == select(Batch.account_id).where(Batch.batch_id == bindparam("batch_id")).scalar_subquery()
    )
    .with_for_update(key_share=True)
)


def find_batch(session: Session, batch_id: str, *, lock: bool = False) -> Batch | None:
    """The batch named ``batch_id``; ``lock``: its account's row, then its own, locked until
    the transaction ends (the lock order of :mod:`preflight.db.writes`)."""
    query = select(Batch).where(Batch.batch_id == batch_id)
    if lock:
        if _is_postgresql(session):
            session.execute(_LOCK_ACCOUNT_OF_BATCH, {"batch_id": batch_id})
        query = query.with_for_update(of=Batch, key_share=True)
    return session.scalar(query)


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


# ---------------------------------------------------------------- the write paths' rows
#
# A check's and a record's accounts, batches, holds and snapshots are in
# preflight.db.writes (no SQLAlchemy, so that a check on embedded SQLite runs without it);
# re-exported here for the verbs that reach them through the repositories.

#: ``status = 'open'`` as a literal, not a parameter: SQLite uses a partial index only for
#: a query whose WHERE visibly implies the index's.
_OPEN: Final[ColumnElement[str]] = literal_column("'open'")
_UPDATE_BATCH = update(Batch).where(Batch.id == bindparam("pk"))


def _connection(session: Session) -> Connection:
    return session.connection()


def _is_postgresql(session: Session) -> bool:
    return _dialect(session) == "postgresql"


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


def finish_batch(session: Session, batch: Batch, *, now: datetime) -> None:
    """Mark ``batch`` (loaded with ``lock``) finished at ``now``: it holds nothing any more,
    and outcomes already recorded after ``now`` count as late."""
    released = batch.held
    batch.status = BatchStatus.FINISHED.value
    batch.finished_at = now
    batch.last_activity_at = now
    batch.held = None
    batch.late_count = late_outcomes_count(session, batch.id, finished_at=now)
    session.flush()
    if released:
        shift_held_need(session, batch.account_id, -released)


@cache
def _insert_batch(dialect: str) -> Any:
    return _insert_of(dialect)(Batch).on_conflict_do_nothing().returning(Batch.id)


def insert_batch(session: Session, values: Mapping[str, Any]) -> int | None:
    """Insert a batch; its id, or None when a concurrent writer created it first."""
    inserted: int | None = (
        _connection(session).execute(_insert_batch(_dialect(session)), dict(values)).scalar()
    )
    return inserted


def update_batch(session: Session, pk: int, values: Mapping[str, Any]) -> None:
    _connection(session).execute(_UPDATE_BATCH, {**values, "pk": pk})


# ---------------------------------------------------------------- outcomes


def outcome_id(session: Session, batch: Batch, job_id: str, attempt: int) -> int | None:
    return session.scalar(
        select(Outcome.id).where(
            Outcome.batch_pk == batch.id, Outcome.job_id == job_id, Outcome.attempt == attempt
        )
    )


def outcome_rows_by_key(
    session: Session, batch_pk: int, job_ids: Iterable[str]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Stored outcomes of batch ``batch_pk`` for these jobs, keyed by (job_id, attempt)."""
    rows = (
        _connection(session)
        .execute(
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
            ).where(Outcome.batch_pk == batch_pk, Outcome.job_id.in_(set(job_ids)))
        )
        .mappings()
    )
    return {(row["job_id"], row["attempt"]): dict(row) for row in rows}


def needs_classification(only_tags: Collection[str]) -> ColumnElement[bool]:
    """Over Outcome ⟕ FailureTag: quota failures never tagged, tagged by an older
    classifier version, or tagged with one of ``only_tags``."""
    from preflight.domain.classify import CLASSIFIER_VERSION

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
    from preflight.domain.classify import Reading

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
) -> Iterator[QuotaFailure]:
    """The classifier's inputs for failures of one batch, one failure at a time (the
    caller consumes them inside its session), loaded with a handful of queries.

    Each failure gets the account's rows up to its own horizon (the end of its staleness
    window, or its live snapshot when later), never up to another failure's: the same
    evidence whatever other failures of the batch are loaded with it.
    """
    from preflight.domain.classify import QuotaFailure, Spend, evidence_horizon

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

    def case(failure: Outcome) -> QuotaFailure:
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
    from preflight.domain.classify import Spend

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
        extra_meters=dict(profile.extra_meters),
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
class Added:
    """What newly stored outcomes add to their batch's totals."""

    count: int = 0
    failed: int = 0
    quota_failures: int = 0
    cost: Decimal = Decimal(0)  # consumed


@dataclass(frozen=True)
class StoredOutcomes:
    inserted: int
    duplicates: int
    conflict: tuple[int, ConflictError] | None  # the first contradicting line, if any
    added: Added = Added()


def _conflict_error(batch_id: str, item: OutcomeInput, differences: list[str]) -> ConflictError:
    return ConflictError(
        f"job {item.job_id!r} attempt {item.attempt} of batch {batch_id!r} is already "
        f"recorded with a different {', '.join(differences)}; outcomes are never "
        "overwritten (record it as a new attempt instead)"
    )


def _sqlite_rows(
    batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
) -> list[tuple[Any, ...]]:
    amount, time = bulk.sqlite_amount, bulk.sqlite_time
    recorded = time(now)
    return [
        (
            batch_pk,
            job_id,
            attempt,
            status,
            http_status,
            None if cost is None else amount(cost),
            None if expected is None else amount(expected),
            error,
            1 if quota else 0,
            recorded if at is None else time(at),
            recorded,
        )
        for _, (job_id, attempt, status, http_status, cost, expected, error, quota, at, _) in items
    ]


def _postgresql_rows(
    batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
) -> list[tuple[Any, ...]]:
    # COPY text: amounts and times as their (cached) text, so that psycopg copies strings
    # instead of formatting a Decimal and a datetime per row.
    amount, time = bulk.sqlite_amount, bulk.copy_time
    recorded = time(now)
    return [
        (
            batch_pk,
            job_id,
            attempt,
            status,
            http_status,
            amount(cost),
            amount(expected),
            error,
            quota,
            recorded if at is None else time(at),
            recorded,
        )
        for _, (job_id, attempt, status, http_status, cost, expected, error, quota, at, _) in items
    ]


def _insert_outcomes(
    session: Session, batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
) -> set[tuple[str, int]] | None:
    """Insert these outcomes in order, each key once, skipping keys already stored; the keys
    inserted, or None when every row went in (no key repeated, none stored before)."""
    connection = _connection(session)
    if _is_postgresql(session):
        return bulk.insert_postgresql(connection, _postgresql_rows(batch_pk, items, now))
    before = bulk.last_outcome_id(connection) if len(items) > 1 else 0
    count = bulk.insert_sqlite(connection, _sqlite_rows(batch_pk, items, now))
    if count == len(items):
        return None
    if count == 0:
        return set()
    # Some keys were stored already. SQLite's write lock is ours: the rows numbered above
    # the highest id before the insert are exactly this insert's.
    return bulk.inserted_since(connection, batch_pk, before)


def _delete_outcomes(session: Session, batch_pk: int, keys: Iterable[tuple[str, int]]) -> None:
    """Take back rows this transaction inserted (nothing refers to them yet)."""
    _connection(session).execute(
        delete(Outcome).where(
            Outcome.batch_pk == batch_pk,
            Outcome.job_id == bindparam("job"),
            Outcome.attempt == bindparam("attempt"),
        ),
        [{"job": job, "attempt": attempt} for job, attempt in keys],
    )


_FAILED = OutcomeStatus.FAILED.value


@exact
def _added(rows: Iterable[OutcomeRow]) -> Added:
    count = failed = quota = 0
    cost = Decimal(0)
    for _, _, status, _, consumed, _, _, quota_failure, _, _ in rows:
        count += 1
        if status == _FAILED:
            failed += 1
            if quota_failure:
                quota += 1
        if consumed is not None:
            cost += consumed
    return Added(count, failed, quota, cost)


def store_outcomes(
    session: Session, batch: BatchState, rows: Sequence[tuple[int, OutcomeRow]], now: datetime
) -> StoredOutcomes:
    """Store numbered outcomes in order, up to the first one that contradicts a stored
    outcome or an earlier line: that line and every later one are not kept.

    Identical repeats are duplicates, not errors. Every line is inserted without being
    looked up first (a key given twice goes in once, from its first line); only when some
    did not go in are the lines compared with each other and with what is stored.
    The batch's totals are not touched here: :func:`record_activity` adds ``added``.
    """
    inserted = _insert_outcomes(session, batch.pk, rows, now)
    if inserted is None:  # the usual case: all new, all distinct
        return StoredOutcomes(len(rows), 0, None, _added(row for _, row in rows))
    # Some keys were there already, or given twice: the lines are compared as outcomes.
    items = [(line_no, outcome_from_row(row)) for line_no, row in rows]
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
    leftovers = [(n, i) for n, i in candidates if (i.job_id, i.attempt) not in inserted]
    if leftovers:
        stored = outcome_rows_by_key(session, batch.pk, {i.job_id for _, i in leftovers})
        for line_no, item in leftovers:
            differences = item.differences(stored[(item.job_id, item.attempt)])
            if differences:
                if conflict is None or line_no < conflict[0]:
                    conflict = (line_no, _conflict_error(batch.batch_id, item, differences))
                break
    if conflict is not None:
        # Lines from the conflicting one on went in with the rest: keep only those before it.
        # A key went in from its first line in the chunk.
        first_line: dict[tuple[str, int], int] = {}
        for n, i in items:
            first_line.setdefault((i.job_id, i.attempt), n)
        undone = {key for key in inserted if first_line[key] >= conflict[0]}
        if undone:
            _delete_outcomes(session, batch.pk, undone)
            inserted -= undone
    processed = sum(1 for n, _ in items if conflict is None or n < conflict[0])
    added = _added(outcome_row(i) for _, i in candidates if (i.job_id, i.attempt) in inserted)
    return StoredOutcomes(len(inserted), processed - len(inserted), conflict, added)


_ADDED = {
    "outcome_count": Batch.outcome_count + bindparam("n", type_=Integer()),
    "failed_count": Batch.failed_count + bindparam("failed", type_=Integer()),
    "quota_failure_count": Batch.quota_failure_count + bindparam("quota", type_=Integer()),
    "last_activity_at": bindparam("now", type_=Batch.last_activity_at.type),
}
_RECORD_ACTIVITY_SQLITE = (
    update(Batch)
    .where(Batch.id == bindparam("pk"))
    .values(
        **_ADDED,
        late_count=Batch.late_count + bindparam("late", type_=Integer()),
        consumed_cost=bindparam("consumed", type_=Batch.consumed_cost.type),
        held=bindparam("hold", type_=Batch.held.type),
    )
)
_OLD_HOLD = (
    select(Batch.id, Batch.held).where(Batch.id == bindparam("pk")).with_for_update(key_share=True)
)
_OLD = _OLD_HOLD.cte("old")
_CONSUMED = Batch.consumed_cost + bindparam("cost", type_=Batch.consumed_cost.type)
_RECORD_ACTIVITY_POSTGRESQL = (
    update(Batch)
    .where(Batch.id == _OLD.c.id)
    .values(
        **_ADDED,
        late_count=Batch.late_count
        + case(
            (
                and_(
                    Batch.finished_at.is_not(None),
                    Batch.finished_at < bindparam("now", type_=Batch.finished_at.type),
                ),
                bindparam("n", type_=Integer()),
            ),
            else_=0,
        ),
        consumed_cost=_CONSUMED,
        held=case(
            (
                and_(Batch.status == _OPEN, Batch.need.is_not(None)),
                func.greatest(Batch.need - _CONSUMED, literal(0)),
            ),
            else_=null(),
        ),
    )
    .returning(_OLD.c.held, Batch.held)
)


@exact
def record_activity(session: Session, batch: BatchState, added: Added, *, now: datetime) -> None:
    """Outcomes were stored for ``batch`` at ``now``: add them to its totals, mark the
    activity, and bring its hold (and its account's held need) up to date.

    An outcome stored after the batch's finish is late. On PostgreSQL the account's row is
    locked first (the lock order of :mod:`preflight.db.writes`), then the batch row is
    updated in one statement from its current values, so concurrent writers of one batch
    add up; on SQLite ``batch`` was read in this write transaction.
    """
    lock_account_of(session, batch.account_id)
    params: dict[str, Any] = {
        "pk": batch.pk,
        "n": added.count,
        "failed": added.failed,
        "quota": added.quota_failures,
        "now": now,
    }
    if _is_postgresql(session):
        before, after = (
            _connection(session)
            .execute(_RECORD_ACTIVITY_POSTGRESQL, {**params, "cost": added.cost})
            .one()
        )
    else:
        late = batch.finished_at is not None and now > batch.finished_at
        consumed = batch.consumed_cost + added.cost
        before, after = batch.held, hold_of(batch.status, batch.need, consumed)
        fast.Cursor.of(session).run(
            fast.RECORD_ACTIVITY,
            (
                added.count,
                added.failed,
                added.quota_failures,
                added.count if late else 0,
                bulk.sqlite_amount(consumed),
                bulk.sqlite_amount(after),
                bulk.sqlite_time(now),
                batch.pk,
            ),
        )
    delta = hold_change(before, after)
    if delta:
        shift_held_need(session, batch.account_id, delta)
