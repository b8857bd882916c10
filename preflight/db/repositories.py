"""Queries and inserts of the verbs, over a session that the caller owns. Nothing here
commits: a service opens the transaction and commits at the edge of its verb."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Protocol

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
    text,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased

from preflight.db import bulk
from preflight.db import sqlite_fast as fast
from preflight.db.models import Account, Batch, FailureTag, Outcome, Snapshot, TagSnapshot
from preflight.db.peek import peek_one
from preflight.db.session import Database, decimal_sum, is_sqlite
from preflight.db.types import meter_map_text
from preflight.domain.errors import ConflictError
from preflight.domain.exact import exact
from preflight.domain.outcome import OutcomeInput, OutcomeRow, outcome_from_row, outcome_row
from preflight.domain.verdict import outstanding_need
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


def find_batch(session: Session, batch_id: str, *, lock: bool = False) -> Batch | None:
    """The batch named ``batch_id``; ``lock``: its row locked until the transaction ends."""
    query = select(Batch).where(Batch.batch_id == batch_id)
    if lock:
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
# ``check`` and ``record`` run thousands of times a minute: they read and write with Core
# statements on the session's connection (no ORM objects, no unit of work), a handful per
# transaction. On PostgreSQL a writer locks the batch row it changes and changes its
# account's ``held_need`` last, by an increment; on SQLite ``BEGIN IMMEDIATE`` has already
# serialised the writers, and increments of amounts (text there) are done exactly in Python.
#
# PostgreSQL row locks are FOR NO KEY UPDATE, never FOR UPDATE: inserting an outcome or a
# snapshot takes KEY SHARE on its batch (the foreign key), which FOR UPDATE would wait for
# (two writers of one batch would deadlock). The account row is always the last one a
# transaction locks, so writers of different batches never wait on each other in a cycle.


@dataclass(frozen=True)
class AccountState:
    id: int
    name: str
    user_id: str | None
    held_need: Decimal


@dataclass(frozen=True)
class BatchState:
    """One batch as the write paths read it."""

    pk: int
    batch_id: str
    account_id: int
    account: str
    meter: str | None
    need: Decimal | None
    reserve: Decimal
    status: str
    verified: bool
    labels: dict[str, Any]
    checked_at: datetime | None
    finished_at: datetime | None
    consumed_cost: Decimal
    held: Decimal | None


#: ``status = 'open'`` as a literal, not a parameter: SQLite uses a partial index only for
#: a query whose WHERE visibly implies the index's.
_OPEN: Final[ColumnElement[str]] = literal_column("'open'")

# The statements are built once: building one costs more than running it.
_ACCOUNT_BY_NAME = select(Account.id, Account.name, Account.user_id, Account.held_need).where(
    Account.name == bindparam("name")
)
_BATCH_BY_NAME = (
    select(
        Batch.id,
        Batch.batch_id,
        Batch.account_id,
        Account.name,
        Batch.meter,
        Batch.need,
        Batch.reserve,
        Batch.status,
        Batch.verified,
        Batch.labels,
        Batch.checked_at,
        Batch.finished_at,
        Batch.consumed_cost,
        Batch.held,
    )
    .join(Account, Account.id == Batch.account_id)
    .where(Batch.batch_id == bindparam("batch_id"))
)
_BATCH_BY_NAME_LOCKED = _BATCH_BY_NAME.with_for_update(of=Batch, key_share=True)
_OWNER = aliased(Account, name="owner")
#: The account and, when it exists, the batch (whatever its account): one statement.
_ACCOUNT_AND_BATCH = (
    select(
        Account.id,
        Account.name,
        Account.user_id,
        Account.held_need,
        Batch.id,
        Batch.batch_id,
        Batch.account_id,
        _OWNER.name,
        Batch.meter,
        Batch.need,
        Batch.reserve,
        Batch.status,
        Batch.verified,
        Batch.labels,
        Batch.checked_at,
        Batch.finished_at,
        Batch.consumed_cost,
        Batch.held,
    )
    .select_from(Account)
    .outerjoin(Batch, Batch.batch_id == bindparam("batch_id"))
    .outerjoin(_OWNER, _OWNER.id == Batch.account_id)
    .where(Account.name == bindparam("name"))
)
_HELD_NEED = select(Account.held_need).where(Account.id == bindparam("account"))
_SET_HELD_NEED = (
    update(Account).where(Account.id == bindparam("account")).values(held_need=bindparam("total"))
)
_ADD_HELD_NEED = (
    update(Account)
    .where(Account.id == bindparam("account"))
    .values(held_need=Account.held_need + bindparam("delta", type_=Account.held_need.type))
    .returning(Account.held_need)
)
_CUTOFF = bindparam("cutoff", type_=Batch.last_activity_at.type)
# The batch being checked is left out: the check sets its hold itself.
_HOLDING = (
    Batch.account_id == bindparam("account"),
    Batch.held.is_not(None),
    Batch.last_activity_at < _CUTOFF,
    Batch.id != bindparam("checked"),
)
_NOT_HOLDING = (
    Batch.account_id == bindparam("account"),
    Batch.id != bindparam("checked"),
    Batch.held.is_(None),
    Batch.status == _OPEN,
    Batch.need.is_not(None),
    Batch.last_activity_at >= _CUTOFF,
)
_HOLDS_TO_REFRESH = union_all(
    select(Batch.id, Batch.held, Batch.need, Batch.consumed_cost, literal(False)).where(*_HOLDING),
    select(Batch.id, Batch.held, Batch.need, Batch.consumed_cost, literal(True)).where(
        *_NOT_HOLDING
    ),
)
# PostgreSQL: both sides in one statement (two data-modifying CTEs, on disjoint rows),
# answering the change of the account's held need. A row another transaction has locked
# is skipped: that transaction is writing the batch, and sets its hold itself.
_REFRESH_HOLDS_POSTGRESQL = text(
    "WITH gone AS (SELECT id, held FROM batches WHERE account_id = :account"
    " AND held IS NOT NULL AND last_activity_at < :cutoff AND id != :checked"
    " FOR NO KEY UPDATE SKIP LOCKED),"
    " back AS (SELECT id FROM batches WHERE account_id = :account AND id != :checked"
    " AND held IS NULL AND status = 'open' AND need IS NOT NULL"
    " AND last_activity_at >= :cutoff FOR NO KEY UPDATE SKIP LOCKED),"
    " released AS (UPDATE batches SET held = NULL FROM gone WHERE batches.id = gone.id"
    " RETURNING -gone.held AS change),"
    " taken AS (UPDATE batches SET held = GREATEST(batches.need - batches.consumed_cost, 0)"
    " FROM back WHERE batches.id = back.id RETURNING batches.held AS change)"
    " SELECT coalesce(sum(change), 0) FROM"
    " (SELECT change FROM released UNION ALL SELECT change FROM taken) AS changes"
).columns(coalesce=Batch.held.type)
_SET_HELD = update(Batch).where(Batch.id == bindparam("pk")).values(held=bindparam("hold"))
_UPDATE_BATCH = update(Batch).where(Batch.id == bindparam("pk"))
_HAS_PREFLIGHT = (
    select(Snapshot.id)
    .where(
        Snapshot.batch_pk == bindparam("batch"),
        Snapshot.kind == SnapshotKind.PREFLIGHT.value,
    )
    .limit(1)
)
_INSERT_SNAPSHOT = insert(Snapshot).returning(Snapshot.id)
_LEARN_USER_ID = (
    update(Account)
    .where(Account.id == bindparam("account"), Account.user_id.is_(None))
    .values(user_id=bindparam("learned"))
)


def _connection(session: Session) -> Connection:
    return session.connection()


def _is_postgresql(session: Session) -> bool:
    return _dialect(session) == "postgresql"


def account_state(session: Session, name: str, *, now: datetime) -> AccountState:
    """The account named ``name``, created on first use."""
    connection = _connection(session)
    row = connection.execute(_ACCOUNT_BY_NAME, {"name": name}).first()
    if row is None:
        insert_if_absent(session, Account, {"name": name, "created_at": now})
        row = connection.execute(_ACCOUNT_BY_NAME, {"name": name}).one()
    return AccountState(*row)


#: PostgreSQL: a check's first statement. The account's holds brought up to the cutoff
#: (as in :data:`_REFRESH_HOLDS_POSTGRESQL`, leaving the checked batch to the check), and
#: the account with the batch (whatever its account) and the change of its held need.
_PG_OPEN_CHECK: Final = (
    "WITH owner AS (SELECT id FROM accounts WHERE name = %(name)s),"
    " gone AS (SELECT id, held FROM batches WHERE account_id = (SELECT id FROM owner)"
    " AND held IS NOT NULL AND last_activity_at < %(cutoff)s AND batch_id != %(batch_id)s"
    " FOR NO KEY UPDATE SKIP LOCKED),"
    " back AS (SELECT id FROM batches WHERE account_id = (SELECT id FROM owner)"
    " AND batch_id != %(batch_id)s AND held IS NULL AND status = 'open' AND need IS NOT NULL"
    " AND last_activity_at >= %(cutoff)s FOR NO KEY UPDATE SKIP LOCKED),"
    " released AS (UPDATE batches SET held = NULL FROM gone WHERE batches.id = gone.id"
    " RETURNING -gone.held AS change),"
    " taken AS (UPDATE batches SET held = GREATEST(batches.need - batches.consumed_cost, 0)"
    " FROM back WHERE batches.id = back.id RETURNING batches.held AS change),"
    " changed AS (SELECT coalesce(sum(change), 0) AS change FROM"
    " (SELECT change FROM released UNION ALL SELECT change FROM taken) AS changes)"
    " SELECT a.id, a.name, a.user_id, a.held_need, (SELECT change FROM changed),"
    " b.id, b.batch_id, b.account_id, o.name, b.meter, b.need, b.reserve, b.status,"
    " b.verified, b.labels, b.checked_at, b.finished_at, b.consumed_cost, b.held"
    " FROM accounts AS a LEFT JOIN batches AS b ON b.batch_id = %(batch_id)s"
    " LEFT JOIN accounts AS o ON o.id = b.account_id WHERE a.name = %(name)s"
)


def open_check(
    session: Session, name: str, batch_id: str, *, now: datetime, hold_cutoff: datetime
) -> tuple[AccountState, BatchState | None, Decimal]:
    """A check's reads: the account named ``name`` (created on first use), the batch named
    ``batch_id`` (None when there is none; locked until the transaction ends), and the
    change of the account's held need once its other batches' holds are brought up to
    ``hold_cutoff`` (the caller applies it). PostgreSQL: one round trip, plus one to
    lock a batch that exists."""
    if not _is_postgresql(session):
        account, batch = account_and_batch(session, name, batch_id, now=now)
        change = refresh_holds(
            session, account.id, cutoff=hold_cutoff, checked=batch.pk if batch else None
        )
        return account, batch, change
    driver: Any = _connection(session).connection.driver_connection
    params = {"name": name, "batch_id": batch_id, "cutoff": hold_cutoff}
    with bulk._driver_errors(_connection(session), _PG_OPEN_CHECK):
        row = driver.execute(_PG_OPEN_CHECK, params).fetchone()
    if row is None:  # a new account: create it, then read again
        account_state(session, name, now=now)
        with bulk._driver_errors(_connection(session), _PG_OPEN_CHECK):
            row = driver.execute(_PG_OPEN_CHECK, params).fetchone()
        assert row is not None
    account = AccountState(row[0], row[1], row[2], row[3])
    batch = None if row[5] is None else batch_state(session, batch_id, lock=True)
    return account, batch, row[4]


def account_and_batch(
    session: Session, name: str, batch_id: str, *, now: datetime
) -> tuple[AccountState, BatchState | None]:
    """The account named ``name`` (created on first use) and the batch named ``batch_id``
    (None when there is none), the batch's row locked until the transaction ends. Usually
    one statement: a second locks a batch that exists (PostgreSQL)."""
    if not _is_postgresql(session):
        found = fast.Cursor.of(session).one(fast.ACCOUNT_AND_BATCH, (batch_id, name))
        if found is None:
            return account_state(session, name, now=now), batch_state(session, batch_id)
        account = AccountState(found[0], found[1], found[2], Decimal(found[3]))
        return account, None if found[4] is None else BatchState(*fast.batch_values(found[4:]))
    connection = _connection(session)
    row = connection.execute(_ACCOUNT_AND_BATCH, {"name": name, "batch_id": batch_id}).first()
    if row is None:
        account = account_state(session, name, now=now)
        return account, batch_state(session, batch_id, lock=True)
    values: tuple[Any, ...] = tuple(row)
    account = AccountState(*values[:4])
    if values[4] is None:
        return account, None
    if _is_postgresql(session):
        return account, batch_state(session, batch_id, lock=True)
    return account, BatchState(*values[4:])


def batch_state(session: Session, batch_id: str, *, lock: bool = False) -> BatchState | None:
    """The batch named ``batch_id``; ``lock``: its row locked until the transaction ends
    (PostgreSQL; SQLite's write transaction holds the whole database already)."""
    if not _is_postgresql(session):
        found = fast.Cursor.of(session).one(fast.BATCH_BY_NAME, (batch_id,))
        return None if found is None else BatchState(*fast.batch_values(found))
    query = _BATCH_BY_NAME_LOCKED if lock else _BATCH_BY_NAME
    row = _connection(session).execute(query, {"batch_id": batch_id}).first()
    return None if row is None else BatchState(*row)


_PG_BATCH_BY_NAME: Final = (
    "SELECT b.id, b.batch_id, b.account_id, o.name, b.meter, b.need, b.reserve, b.status,"
    " b.verified, b.labels, b.checked_at, b.finished_at, b.consumed_cost, b.held"
    " FROM batches AS b JOIN accounts AS o ON o.id = b.account_id WHERE b.batch_id = %s"
)


def peek_batch(database: Database, batch_id: str) -> BatchState | None:
    """The batch named ``batch_id`` as stored now, outside any transaction of the caller's
    (a check refuses a contradiction before it spends a vendor call on it): one statement in
    autocommit on a pooled connection (:func:`preflight.db.peek.peek_one`). On SQLite that is
    ~40 µs instead of ~110; on PostgreSQL one round trip instead of three."""
    found = peek_one(database, fast.BATCH_BY_NAME, _PG_BATCH_BY_NAME, (batch_id,))
    if found is None:
        return None
    return (
        BatchState(*fast.batch_values(found)) if is_sqlite(database.engine) else BatchState(*found)
    )


def hold_of(status: str, need: Decimal | None, consumed: Decimal) -> Decimal | None:
    """What a batch active now holds: its outstanding need while open with a need."""
    if status != BatchStatus.OPEN.value or need is None:
        return None
    return outstanding_need(need, consumed)


@exact
def hold_change(before: Decimal | None, after: Decimal | None) -> Decimal:
    return (after or Decimal(0)) - (before or Decimal(0))


@exact
def shift_held_need(
    session: Session, account_id: int, delta: Decimal, *, current: Decimal | None = None
) -> Decimal:
    """Add ``delta`` to the account's held need; its new value. ``current`` (SQLite): the
    value read earlier in this transaction."""
    if _is_postgresql(session):
        changed: Decimal = (
            _connection(session)
            .execute(_ADD_HELD_NEED, {"account": account_id, "delta": delta})
            .scalar_one()
        )
        return changed
    cursor = fast.Cursor.of(session)
    if current is None:
        found = cursor.one(fast.HELD_NEED, (account_id,))
        assert found is not None
        current = Decimal(found[0])
    total = current + delta
    cursor.run(fast.SET_HELD_NEED, (bulk.sqlite_amount(total), account_id))
    return total


@exact
def refresh_holds(
    session: Session, account_id: int, *, cutoff: datetime, checked: int | None
) -> Decimal:
    """Bring the account's holds up to ``cutoff`` (now − hold expiry): batches holding but
    quiet since before it let go, open batches with a need active since take theirs back
    (all but batch ``checked``, whose hold its check sets).
    Returns the change of the account's held need, which the caller applies (usually
    nothing changes: index lookups that find no row).

    On PostgreSQL a row another transaction has locked is skipped: that transaction is
    writing the batch, and sets its hold itself.
    """
    if _is_postgresql(session):
        params = {"account": account_id, "cutoff": cutoff, "checked": checked or 0}
        change: Decimal = (
            _connection(session).execute(_REFRESH_HOLDS_POSTGRESQL, params).scalar_one()
        )
        return change
    cursor = fast.Cursor.of(session)
    checked_pk = checked or 0
    rows = cursor.all(
        fast.HOLDS_TO_REFRESH,
        (
            account_id,
            bulk.sqlite_time(cutoff),
            checked_pk,
            account_id,
            checked_pk,
            bulk.sqlite_time(cutoff),
        ),
    )
    if not rows:
        return Decimal(0)
    delta = Decimal(0)
    changes: list[tuple[str | None, int]] = []
    for pk, held, need, consumed, taking in rows:
        new = outstanding_need(Decimal(need), Decimal(consumed)) if taking else None
        delta += hold_change(fast.amount(held), new)
        changes.append((bulk.sqlite_amount(new), pk))
    cursor.run_many(fast.SET_HELD, changes)
    return delta


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


def has_preflight_snapshot(session: Session, batch_pk: int) -> bool:
    if not _is_postgresql(session):
        return fast.Cursor.of(session).one(fast.HAS_PREFLIGHT, (batch_pk,)) is not None
    found = _connection(session).execute(_HAS_PREFLIGHT, {"batch": batch_pk}).first()
    return found is not None


def insert_checked_batch(
    session: Session, values: Mapping[str, Any], *, batch_id: str, account_id: int, now: datetime
) -> int | None:
    """Insert a batch a check creates (``values``: what the check decided); its id, or None
    when a concurrent writer created it first."""
    if not _is_postgresql(session):
        found = fast.Cursor.of(session).one(
            fast.INSERT_BATCH,
            (*fast.checked_values(values), batch_id, account_id, bulk.sqlite_time(now)),
        )
        return None if found is None else int(found[0])
    return insert_batch(
        session, {**values, "batch_id": batch_id, "account_id": account_id, "created_at": now}
    )


#: PostgreSQL, a check of a new batch: the batch, its snapshot and the account's held need
#: (and user id) in one statement, one round trip instead of three. No row when another
#: writer created the batch first (and nothing else is written then).
_PG_STORE_NEW_CHECK: Final = (
    "WITH new_batch AS (INSERT INTO batches (meter, need, reserve, verdict, verified,"
    " checked_at, last_activity_at, labels, status, held, batch_id, account_id, created_at)"
    " VALUES (%(meter)s, %(need)s, %(reserve)s, %(verdict)s, %(verified)s, %(checked_at)s,"
    " %(last_activity_at)s, %(labels)s, %(status)s, %(held)s, %(batch_id)s, %(account)s,"
    " %(now)s) ON CONFLICT DO NOTHING RETURNING id),"
    " snapshot AS (INSERT INTO snapshots (account_id, batch_pk, kind, taken_at, credits,"
    " api_quota_remaining, extra_meters, tier, user_id, raw, http_status, latency_ms)"
    " SELECT %(account)s, id, %(kind)s, %(now)s, %(credits)s, %(quota)s, %(extra)s, %(tier)s,"
    " %(user_id)s, %(raw)s, %(http_status)s, %(latency_ms)s FROM new_batch"
    " WHERE %(snapshot)s RETURNING id),"
    " account AS (UPDATE accounts SET held_need = held_need + %(delta)s,"
    " user_id = coalesce(user_id, %(user_id)s) WHERE id = %(account)s"
    " AND EXISTS (SELECT 1 FROM new_batch))"
    " SELECT new_batch.id, (SELECT id FROM snapshot) FROM new_batch"
)


@exact
def store_check(
    session: Session,
    *,
    account: AccountState,
    batch: BatchState | None,
    values: Mapping[str, Any],
    batch_id: str,
    now: datetime,
    held_need_change: Decimal,
    profile: ProfileValues | None,
    kind: SnapshotKind | None,
) -> tuple[int, int | None] | None:
    """Write what a check decided: the batch (inserted, or updated), the change of the
    account's held need, the snapshot (with ``profile``), the account's user id on first
    sight. Returns (batch pk, snapshot id), or None when the batch did not exist when read
    and another writer created it since (nothing was written then)."""
    if batch is None and _is_postgresql(session):
        from psycopg.types.json import Json

        driver: Any = _connection(session).connection.driver_connection
        with bulk._driver_errors(_connection(session), _PG_STORE_NEW_CHECK):
            row = driver.execute(
                _PG_STORE_NEW_CHECK,
                {
                    **values,
                    "labels": Json(values["labels"]),
                    "batch_id": batch_id,
                    "account": account.id,
                    "now": now,
                    "delta": held_need_change,
                    "snapshot": profile is not None,
                    "kind": kind.value if kind else None,
                    "credits": profile.credits if profile else None,
                    "quota": profile.api_quota_remaining if profile else None,
                    "extra": meter_map_text(profile.extra_meters) if profile else None,
                    "tier": profile.tier if profile else None,
                    "user_id": profile.user_id if profile else None,
                    "raw": profile.raw if profile else None,
                    "http_status": profile.http_status if profile else None,
                    "latency_ms": profile.latency_ms if profile else None,
                },
            ).fetchone()
        return None if row is None else (row[0], row[1])
    if batch is None:
        pk = insert_checked_batch(
            session, values, batch_id=batch_id, account_id=account.id, now=now
        )
        if pk is None:
            return None
    else:
        pk = batch.pk
        update_checked_batch(session, pk, values)
    if held_need_change:
        shift_held_need(session, account.id, held_need_change, current=account.held_need)
    snapshot_id: int | None = None
    if profile is not None:
        assert kind is not None
        snapshot_id = insert_snapshot(session, account.id, profile, now=now, kind=kind, batch_pk=pk)
        if account.user_id is None and profile.user_id is not None:
            learn_user_id(session, account.id, profile.user_id)
    return pk, snapshot_id


def update_checked_batch(session: Session, pk: int, values: Mapping[str, Any]) -> None:
    """Store what a check decided about an existing batch."""
    if not _is_postgresql(session):
        fast.Cursor.of(session).run(fast.UPDATE_BATCH, (*fast.checked_values(values), pk))
        return
    update_batch(session, pk, values)


def insert_snapshot(
    session: Session,
    account_id: int,
    profile: ProfileValues,
    *,
    now: datetime,
    kind: SnapshotKind,
    batch_pk: int | None = None,
) -> int:
    """Insert one snapshot without the ORM; its id."""
    if not _is_postgresql(session):
        found = fast.Cursor.of(session).one(
            fast.INSERT_SNAPSHOT,
            (
                account_id,
                batch_pk,
                kind.value,
                bulk.sqlite_time(now),
                bulk.sqlite_amount(profile.credits),
                bulk.sqlite_amount(profile.api_quota_remaining),
                meter_map_text(profile.extra_meters),
                profile.tier,
                profile.user_id,
                profile.raw,
                profile.http_status,
                profile.latency_ms,
            ),
        )
        assert found is not None
        return int(found[0])
    snapshot_id: int = (
        _connection(session)
        .execute(
            _INSERT_SNAPSHOT,
            {
                "account_id": account_id,
                "batch_pk": batch_pk,
                "kind": kind.value,
                "taken_at": now,
                "credits": profile.credits,
                "api_quota_remaining": profile.api_quota_remaining,
                "extra_meters": profile.extra_meters,
                "tier": profile.tier,
                "user_id": profile.user_id,
                "raw": profile.raw,
                "http_status": profile.http_status,
                "latency_ms": profile.latency_ms,
            },
        )
        .scalar_one()
    )
    return snapshot_id


def learn_user_id(session: Session, account_id: int, user_id: str) -> None:
    """Keep the vendor's user id on the account the first time a profile tells it."""
    _connection(session).execute(_LEARN_USER_ID, {"account": account_id, "learned": user_id})


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
) -> list[QuotaFailure]:
    """The classifier's inputs for failures of one batch, loaded with a handful of queries."""
    from preflight.domain.classify import QuotaFailure, Spend

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
    def extra_meters(self) -> Mapping[str, Decimal | None]: ...
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

    An outcome stored after the batch's finish is late. On PostgreSQL the batch row is
    updated in one statement from its current values (locked until commit), so concurrent
    writers of one batch add up; on SQLite ``batch`` was read in this write transaction.
    """
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
