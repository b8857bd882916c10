"""PostgreSQL's side of :mod:`preflight.db.writes`: a check's and a record's rows as text
statements typed with the columns' own types (:mod:`preflight.db.types`: the values go in
and come out exactly as through the models), on the transaction's connection, and raw SQL
through psycopg where merging statements saves round trips.

Imported only by a PostgreSQL process, and without the ORM or the models: a check needs
neither (the session's of :meth:`preflight.db.session.Database.run_write`, if it runs in
one, has them loaded already). Locks follow the lock order of :mod:`preflight.db.writes`:
the account's row first, then the batch rows, all FOR NO KEY UPDATE.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import JSON, Boolean, Connection, Integer, String, bindparam, column, text

from preflight.db import bulk
from preflight.db.types import Amount, MeterMap, UTCDateTime
from preflight.db.values import meter_map_text
from preflight.db.writes import AccountState, BatchState, ProfileValues
from preflight.domain.vocabulary import SnapshotKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# The statements are built once: building one costs more than running it. Their columns
# and parameters carry the model's types (amounts, UTC times, JSON labels, meter maps).
_ACCOUNT_COLUMNS: Final = (
    column("id", Integer),
    column("name", String),
    column("user_id", String),
    column("held_need", Amount()),
)
_BATCH_COLUMNS: Final = (
    column("id", Integer),
    column("batch_id", String),
    column("account_id", Integer),
    column("account", String),
    column("meter", String),
    column("need", Amount()),
    column("reserve", Amount()),
    column("status", String),
    column("verified", Boolean),
    column("labels", JSON),
    column("checked_at", UTCDateTime()),
    column("finished_at", UTCDateTime()),
    column("consumed_cost", Amount()),
    column("held", Amount()),
)
_BATCH_SELECT: Final = (
    "SELECT b.id, b.batch_id, b.account_id, o.name, b.meter, b.need, b.reserve, b.status,"
    " b.verified, b.labels, b.checked_at, b.finished_at, b.consumed_cost, b.held"
)
_ACCOUNT_BY_NAME = text(
    "SELECT id, name, user_id, held_need FROM accounts WHERE name = :name"
).columns(*_ACCOUNT_COLUMNS)
#: A new account, as the model's defaults make it; no row when it exists already.
_INSERT_ACCOUNT = text(
    "INSERT INTO accounts (name, created_at, held_need) VALUES (:name, :created_at, :held_need)"
    " ON CONFLICT DO NOTHING RETURNING id"
).bindparams(
    bindparam("name", type_=String),
    bindparam("created_at", type_=UTCDateTime()),
    bindparam("held_need", type_=Amount()),
)
#: Step 1 of the lock order: the account's row, locked until the transaction ends.
_ACCOUNT_BY_NAME_LOCKED = text(
    "SELECT id, name, user_id, held_need FROM accounts WHERE name = :name FOR NO KEY UPDATE"
).columns(*_ACCOUNT_COLUMNS)
_LOCK_ACCOUNT_OF = text("SELECT id FROM accounts WHERE id = :account FOR NO KEY UPDATE")
_BATCH_BY_NAME = text(
    f"{_BATCH_SELECT} FROM batches AS b JOIN accounts AS o ON o.id = b.account_id"
    " WHERE b.batch_id = :batch_id"
).columns(*_BATCH_COLUMNS)
_BATCH_BY_NAME_LOCKED = text(
    f"{_BATCH_SELECT} FROM batches AS b JOIN accounts AS o ON o.id = b.account_id"
    " WHERE b.batch_id = :batch_id FOR NO KEY UPDATE OF b"
).columns(*_BATCH_COLUMNS)
_ADD_HELD_NEED = (
    text(
        "UPDATE accounts SET held_need = held_need + :delta WHERE id = :account RETURNING held_need"
    )
    .bindparams(bindparam("delta", type_=Amount()))
    .columns(column("held_need", Amount()))
)
# PostgreSQL: both sides in one statement (two data-modifying CTEs, on disjoint rows),
# answering the change of the account's held need. A row another transaction has locked
# is skipped: that transaction is writing the batch, and sets its hold itself.
_REFRESH_HOLDS_POSTGRESQL = (
    text(
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
    )
    .bindparams(bindparam("cutoff", type_=UTCDateTime()))
    .columns(column("coalesce", Amount()))
)
_HAS_PREFLIGHT = text(
    "SELECT id FROM snapshots WHERE batch_pk = :batch AND kind = 'preflight' LIMIT 1"
)
#: What a check decides about a batch it inserts or updates.
_CHECKED_TYPES: Final = (
    bindparam("meter", type_=String),
    bindparam("need", type_=Amount()),
    bindparam("reserve", type_=Amount()),
    bindparam("status", type_=String),
    bindparam("verdict", type_=String),
    bindparam("verified", type_=Boolean),
    bindparam("labels", type_=JSON),
    bindparam("checked_at", type_=UTCDateTime()),
    bindparam("last_activity_at", type_=UTCDateTime()),
    bindparam("held", type_=Amount()),
)
#: A new batch, as the model's defaults make it (totals 0); no row when it exists already.
_INSERT_BATCH = text(
    "INSERT INTO batches (batch_id, account_id, meter, need, reserve, status, verdict, verified,"
    " labels, created_at, checked_at, last_activity_at, outcome_count, failed_count,"
    " quota_failure_count, late_count, consumed_cost, held) VALUES (:batch_id, :account_id,"
    " :meter, :need, :reserve, :status, :verdict, :verified, :labels, :created_at, :checked_at,"
    " :last_activity_at, 0, 0, 0, 0, :consumed_cost, :held) ON CONFLICT DO NOTHING RETURNING id"
).bindparams(
    *_CHECKED_TYPES,
    bindparam("created_at", type_=UTCDateTime()),
    bindparam("consumed_cost", type_=Amount()),
)
_UPDATE_BATCH = text(
    "UPDATE batches SET meter = :meter, need = :need, reserve = :reserve, status = :status,"
    " verdict = :verdict, verified = :verified, labels = :labels, checked_at = :checked_at,"
    " last_activity_at = :last_activity_at, held = :held WHERE id = :pk"
).bindparams(*_CHECKED_TYPES)
_INSERT_SNAPSHOT = (
    text(
        "INSERT INTO snapshots (account_id, batch_pk, kind, taken_at, credits,"
        " api_quota_remaining, extra_meters, tier, user_id, raw, http_status, latency_ms)"
        " VALUES (:account_id, :batch_pk, :kind, :taken_at, :credits, :api_quota_remaining,"
        " :extra_meters, :tier, :user_id, :raw, :http_status, :latency_ms) RETURNING id"
    )
    .bindparams(
        bindparam("taken_at", type_=UTCDateTime()),
        bindparam("credits", type_=Amount()),
        bindparam("api_quota_remaining", type_=Amount()),
        bindparam("extra_meters", type_=MeterMap()),
    )
    .columns(column("id", Integer))
)
_LEARN_USER_ID = text(
    "UPDATE accounts SET user_id = :learned WHERE id = :account AND user_id IS NULL"
)


def _connection(transaction: Session | Connection) -> Connection:
    if isinstance(transaction, Connection):
        return transaction
    return transaction.connection()


def account_state(transaction: Session | Connection, name: str, *, now: datetime) -> AccountState:
    """The account named ``name``, created on first use."""
    connection = _connection(transaction)
    row = connection.execute(_ACCOUNT_BY_NAME, {"name": name}).first()
    if row is None:
        connection.execute(
            _INSERT_ACCOUNT, {"name": name, "created_at": now, "held_need": Decimal(0)}
        )
        row = connection.execute(_ACCOUNT_BY_NAME, {"name": name}).one()
    return AccountState(*row)


def lock_account(transaction: Session | Connection, name: str, *, now: datetime) -> AccountState:
    """:func:`preflight.db.writes.lock_account`: one round trip for an account that exists.

    A new one is inserted with ``ON CONFLICT DO NOTHING``, which waits for a concurrent
    transaction that inserted it first to end; then it exists, committed, and is locked."""
    connection = _connection(transaction)
    row = connection.execute(_ACCOUNT_BY_NAME_LOCKED, {"name": name}).first()
    if row is None:
        connection.execute(
            _INSERT_ACCOUNT, {"name": name, "created_at": now, "held_need": Decimal(0)}
        )
        row = connection.execute(_ACCOUNT_BY_NAME_LOCKED, {"name": name}).one()
    return AccountState(*row)


def lock_account_of(transaction: Session | Connection, account_id: int) -> None:
    """:func:`preflight.db.writes.lock_account_of`."""
    _connection(transaction).execute(_LOCK_ACCOUNT_OF, {"account": account_id})


#: Step 1 of the lock order as a check's first statement (psycopg's parameters).
_PG_LOCK_ACCOUNT: Final = "SELECT id FROM accounts WHERE name = %(name)s FOR NO KEY UPDATE"
#: PostgreSQL: a check's statement after the account's lock. The account's holds brought
#: up to the cutoff (as in :data:`_REFRESH_HOLDS_POSTGRESQL`, leaving the checked batch to
#: the check), the account with the change of its held need, and the account of the batch
#: when it exists. It runs after the lock, so it sees every earlier writer of the account.
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
    " SELECT a.id, a.name, a.user_id, a.held_need, (SELECT change FROM changed), b.account_id"
    " FROM accounts AS a LEFT JOIN batches AS b ON b.batch_id = %(batch_id)s"
    " WHERE a.name = %(name)s"
)


def open_check(
    transaction: Session | Connection,
    name: str,
    batch_id: str,
    *,
    now: datetime,
    hold_cutoff: datetime,
) -> tuple[AccountState, BatchState | None, Decimal]:
    """:func:`preflight.db.writes.open_check`: the account's lock, then the holds, the
    account and whether the batch exists, in one round trip (a pipeline of the two
    statements: the server runs the second once the first holds the lock), plus one to
    lock a batch that exists. A new account is created, locked, and read again."""
    connection = _connection(transaction)
    driver: Any = connection.connection.driver_connection
    params = {"name": name, "batch_id": batch_id, "cutoff": hold_cutoff}
    with bulk._driver_errors(connection, _PG_OPEN_CHECK):
        with driver.pipeline():
            locked = driver.execute(_PG_LOCK_ACCOUNT, {"name": name})
            opened = driver.execute(_PG_OPEN_CHECK, params)
        row = opened.fetchone() if locked.fetchone() is not None else None
    if row is None:  # a new account: create it, locked, then read again
        lock_account(transaction, name, now=now)
        with bulk._driver_errors(connection, _PG_OPEN_CHECK):
            row = driver.execute(_PG_OPEN_CHECK, params).fetchone()
        assert row is not None
    account = AccountState(row[0], row[1], row[2], row[3])
    change, owner = row[4], row[5]
    if owner is None:
        return account, None, change
    # A batch of another account is read, not locked: the check refuses it.
    return account, batch_state(transaction, batch_id, lock=owner == account.id), change


def account_and_batch(
    transaction: Session | Connection, name: str, batch_id: str, *, now: datetime
) -> tuple[AccountState, BatchState | None]:
    """The account (created on first use, locked first), and the batch, its row locked
    when it is the account's."""
    account = lock_account(transaction, name, now=now)
    batch = batch_state(transaction, batch_id)
    if batch is None or batch.account_id != account.id:
        return account, batch
    return account, batch_state(transaction, batch_id, lock=True)


def batch_state(
    transaction: Session | Connection, batch_id: str, *, lock: bool = False
) -> BatchState | None:
    query = _BATCH_BY_NAME_LOCKED if lock else _BATCH_BY_NAME
    row = _connection(transaction).execute(query, {"batch_id": batch_id}).first()
    return None if row is None else BatchState(*row)


PG_BATCH_BY_NAME: Final = (
    "SELECT b.id, b.batch_id, b.account_id, o.name, b.meter, b.need, b.reserve, b.status,"
    " b.verified, b.labels, b.checked_at, b.finished_at, b.consumed_cost, b.held"
    " FROM batches AS b JOIN accounts AS o ON o.id = b.account_id WHERE b.batch_id = %s"
)


def shift_held_need(transaction: Session | Connection, account_id: int, delta: Decimal) -> Decimal:
    changed: Decimal = (
        _connection(transaction)
        .execute(_ADD_HELD_NEED, {"account": account_id, "delta": delta})
        .scalar_one()
    )
    return changed


def refresh_holds(
    transaction: Session | Connection, account_id: int, *, cutoff: datetime, checked: int | None
) -> Decimal:
    params = {"account": account_id, "cutoff": cutoff, "checked": checked or 0}
    change: Decimal = (
        _connection(transaction).execute(_REFRESH_HOLDS_POSTGRESQL, params).scalar_one()
    )
    return change


def has_preflight_snapshot(transaction: Session | Connection, batch_pk: int) -> bool:
    found = _connection(transaction).execute(_HAS_PREFLIGHT, {"batch": batch_pk}).first()
    return found is not None


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


def store_new_check(
    transaction: Session | Connection,
    *,
    account: AccountState,
    values: Mapping[str, Any],
    batch_id: str,
    now: datetime,
    held_need_change: Decimal,
    profile: ProfileValues | None,
    kind: SnapshotKind | None,
) -> tuple[int, int | None] | None:
    """:func:`preflight.db.writes.store_check` for a batch that did not exist when read:
    one statement."""
    from psycopg.types.json import Json

    driver: Any = _connection(transaction).connection.driver_connection
    with bulk._driver_errors(_connection(transaction), _PG_STORE_NEW_CHECK):
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


def insert_checked_batch(
    transaction: Session | Connection,
    values: Mapping[str, Any],
    *,
    batch_id: str,
    account_id: int,
    now: datetime,
) -> int | None:
    inserted: int | None = (
        _connection(transaction)
        .execute(
            _INSERT_BATCH,
            {
                **values,
                "batch_id": batch_id,
                "account_id": account_id,
                "created_at": now,
                "consumed_cost": Decimal(0),
            },
        )
        .scalar()
    )
    return inserted


def update_checked_batch(
    transaction: Session | Connection, pk: int, values: Mapping[str, Any]
) -> None:
    _connection(transaction).execute(_UPDATE_BATCH, {**values, "pk": pk})


def insert_snapshot(
    transaction: Session | Connection,
    account_id: int,
    profile: ProfileValues,
    *,
    now: datetime,
    kind: SnapshotKind,
    batch_pk: int | None = None,
) -> int:
    snapshot_id: int = (
        _connection(transaction)
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


def learn_user_id(transaction: Session | Connection, account_id: int, user_id: str) -> None:
    _connection(transaction).execute(_LEARN_USER_ID, {"account": account_id, "learned": user_id})
