"""The write paths' rows: the accounts, batches, holds and snapshots a check and a record
read and write, over a transaction that the caller owns. Nothing here commits.

``check`` and ``record`` run thousands of times a minute: they read and write with plain
statements (no ORM objects, no unit of work), a handful per transaction. On SQLite these
are :mod:`preflight.db.sqlite_fast`'s, run on the transaction's sqlite3 connection:
``BEGIN IMMEDIATE`` has already serialised the writers, and increments of amounts (text
there) are done exactly in Python. On PostgreSQL they are
:mod:`preflight.db.writes_postgresql`'s, under the lock order below.

**One decision at a time per account; the lock order.** A check decides from the
account's ``held_need`` (what its open batches still need), so every transaction that
changes it (a check, a record, a finish, a hold released or taken back) is serialised
with every other one of the same account, *before* it reads it. Every such writer takes,
in this order and no other:

1. the account's row (:func:`lock_account`, :func:`lock_account_of`), as its first row
   lock, and before it inserts a batch of the account;
2. then the batch rows it changes (FOR NO KEY UPDATE);
3. and changes ``held_need`` by an increment, under the lock it holds since step 1.

On SQLite, ``BEGIN IMMEDIATE`` has taken the database's one write lock before the first
statement: step 1 is that lock, and the account's row is read as it is. On PostgreSQL
(READ COMMITTED) step 1 is ``SELECT … FOR NO KEY UPDATE`` of the account's row: the
transaction's later statements each see every transaction of the account that committed
before it got the lock. The row lock, not an advisory lock keyed by the account, because
it is the account's own lock: a writer that changes ``held_need`` takes it by doing so,
whether or not it asked first; nothing maps accounts to keys (no two accounts ever share
one); and ``INSERT … ON CONFLICT`` of a new account makes a second first check wait for
the first one's row. FOR NO KEY UPDATE, not FOR UPDATE: inserting a batch or a snapshot
takes KEY SHARE on its account (the foreign key), which must not wait for a check. Those
KEY SHARE locks, and an outcome's insert (KEY SHARE on its batch), conflict with no lock
above, so writers of one account wait only in this order, and writers of different
accounts never wait for each other.

The transaction is a session (:meth:`preflight.db.session.Database.run_write`), a
connection (:meth:`~preflight.db.session.Database.run_plain_write`: a check, no ORM), on
either dialect, or, for a check on an embedded SQLite file, a bare sqlite3 transaction
(:class:`preflight.db.embedded.EmbeddedSQLite`): the same SQLite statements run on any.
This module imports no SQLAlchemy, and the PostgreSQL side only when a PostgreSQL
transaction asks for it, so that a check on SQLite loads none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from preflight.db import sqlite_fast as fast
from preflight.db.values import meter_map_text, sqlite_amount, sqlite_time
from preflight.domain.exact import exact
from preflight.domain.verdict import outstanding_need
from preflight.domain.vocabulary import BatchStatus, SnapshotKind

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from preflight.db.embedded import EmbeddedSQLite
    from preflight.db.session import Database

    #: A write transaction: a session, a connection, or the embedded check's sqlite3 one.
    Transaction = Session | Connection | fast.Cursor


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


def _postgresql(transaction: Transaction) -> Session | Connection | None:
    """The session or connection, when ``transaction`` is on PostgreSQL (its side of each
    function is :mod:`preflight.db.writes_postgresql`, imported then); None on SQLite."""
    if isinstance(transaction, fast.Cursor):
        return None
    bind = transaction.get_bind() if hasattr(transaction, "get_bind") else transaction
    return transaction if bind.dialect.name == "postgresql" else None


# ---------------------------------------------------------------- the account lock


def lock_account(transaction: Transaction, name: str, *, now: datetime) -> AccountState:
    """The account named ``name``, created on first use, locked until the transaction
    ends: step 1 of the lock order (module docstring). Two first uses at once both get
    it: the second waits for the first's new row, then locks it."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.lock_account(session, name, now=now)
    return account_state(transaction, name, now=now)


def lock_account_of(transaction: Transaction, account_id: int) -> None:
    """Lock the account ``account_id`` until the transaction ends: step 1 of the lock order
    (module docstring), for a writer that knows the account by its batch."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        postgresql.lock_account_of(session, account_id)


# ---------------------------------------------------------------- reads


def peek_batch(database: Database | EmbeddedSQLite, batch_id: str) -> BatchState | None:
    """The batch named ``batch_id`` as stored now, outside any transaction of the caller's
    (a check refuses a contradiction before it spends a vendor call on it): one statement in
    autocommit on a pooled connection (:func:`preflight.db.peek.peek_one`). On SQLite that is
    ~40 µs instead of ~110; on PostgreSQL one round trip instead of three."""
    from preflight.db.embedded import EmbeddedSQLite

    if isinstance(database, EmbeddedSQLite):
        found = database.peek_one(fast.BATCH_BY_NAME, (batch_id,))
        return None if found is None else BatchState(*fast.batch_values(found))
    from preflight.db.peek import peek_one
    from preflight.db.session import is_sqlite
    from preflight.db.writes_postgresql import PG_BATCH_BY_NAME

    found = peek_one(database, fast.BATCH_BY_NAME, PG_BATCH_BY_NAME, (batch_id,))
    if found is None:
        return None
    return (
        BatchState(*fast.batch_values(found)) if is_sqlite(database.engine) else BatchState(*found)
    )


def account_state(transaction: Transaction, name: str, *, now: datetime) -> AccountState:
    """The account named ``name``, created on first use."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.account_state(session, name, now=now)
    cursor = fast.Cursor.of(transaction)
    row = cursor.one(fast.ACCOUNT_BY_NAME, (name,))
    if row is None:
        cursor.run(fast.INSERT_ACCOUNT, (name, sqlite_time(now)))
        row = cursor.one(fast.ACCOUNT_BY_NAME, (name,))
        assert row is not None
    return AccountState(row[0], row[1], row[2], Decimal(row[3]))


def open_check(
    transaction: Transaction, name: str, batch_id: str, *, now: datetime, hold_cutoff: datetime
) -> tuple[AccountState, BatchState | None, Decimal]:
    """A check's reads: the account named ``name`` (created on first use, and locked
    first: :func:`lock_account`), the batch named ``batch_id`` (None when there is none;
    locked until the transaction ends), and the change of the account's held need once
    its other batches' holds are brought up to ``hold_cutoff`` (the caller applies it).
    PostgreSQL: one round trip (the lock and the reads pipelined), plus one to lock a
    batch that exists."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.open_check(session, name, batch_id, now=now, hold_cutoff=hold_cutoff)
    account, batch = account_and_batch(transaction, name, batch_id, now=now)
    change = refresh_holds(
        transaction, account.id, cutoff=hold_cutoff, checked=batch.pk if batch else None
    )
    return account, batch, change


def account_and_batch(
    transaction: Transaction, name: str, batch_id: str, *, now: datetime
) -> tuple[AccountState, BatchState | None]:
    """The account named ``name`` (created on first use) and the batch named ``batch_id``
    (None when there is none), the batch's row locked until the transaction ends. Usually
    one statement: a second locks a batch that exists (PostgreSQL)."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.account_and_batch(session, name, batch_id, now=now)
    row = fast.Cursor.of(transaction).one(fast.ACCOUNT_AND_BATCH, (batch_id, name))
    if row is None:
        return account_state(transaction, name, now=now), batch_state(transaction, batch_id)
    account = AccountState(row[0], row[1], row[2], Decimal(row[3]))
    return account, None if row[4] is None else BatchState(*fast.batch_values(row[4:]))


def batch_state(
    transaction: Transaction, batch_id: str, *, lock: bool = False
) -> BatchState | None:
    """The batch named ``batch_id``; ``lock``: its row locked until the transaction ends
    (PostgreSQL, after its account's: the lock order above; SQLite's write transaction
    holds the whole database already)."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.batch_state(session, batch_id, lock=lock)
    found = fast.Cursor.of(transaction).one(fast.BATCH_BY_NAME, (batch_id,))
    return None if found is None else BatchState(*fast.batch_values(found))


def has_preflight_snapshot(transaction: Transaction, batch_pk: int) -> bool:
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.has_preflight_snapshot(session, batch_pk)
    return fast.Cursor.of(transaction).one(fast.HAS_PREFLIGHT, (batch_pk,)) is not None


# ---------------------------------------------------------------- holds


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
    transaction: Transaction, account_id: int, delta: Decimal, *, current: Decimal | None = None
) -> Decimal:
    """Add ``delta`` to the account's held need; its new value. ``current`` (SQLite): the
    value read earlier in this transaction."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.shift_held_need(session, account_id, delta)
    cursor = fast.Cursor.of(transaction)
    if current is None:
        found = cursor.one(fast.HELD_NEED, (account_id,))
        assert found is not None
        current = Decimal(found[0])
    total = current + delta
    cursor.run(fast.SET_HELD_NEED, (sqlite_amount(total), account_id))
    return total


@exact
def refresh_holds(
    transaction: Transaction, account_id: int, *, cutoff: datetime, checked: int | None
) -> Decimal:
    """Bring the account's holds up to ``cutoff`` (now − hold expiry): batches holding but
    quiet since before it let go, open batches with a need active since take theirs back
    (all but batch ``checked``, whose hold its check sets).
    Returns the change of the account's held need, which the caller applies (usually
    nothing changes: index lookups that find no row).

    On PostgreSQL a row another transaction has locked is skipped: that transaction is
    writing the batch, and sets its hold itself.
    """
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.refresh_holds(session, account_id, cutoff=cutoff, checked=checked)
    cursor = fast.Cursor.of(transaction)
    checked_pk = checked or 0
    rows = cursor.all(
        fast.HOLDS_TO_REFRESH,
        (
            account_id,
            sqlite_time(cutoff),
            checked_pk,
            account_id,
            checked_pk,
            sqlite_time(cutoff),
        ),
    )
    if not rows:
        return Decimal(0)
    delta = Decimal(0)
    changes: list[tuple[str | None, int]] = []
    for pk, held, need, consumed, taking in rows:
        new = outstanding_need(Decimal(need), Decimal(consumed)) if taking else None
        delta += hold_change(fast.amount(held), new)
        changes.append((sqlite_amount(new), pk))
    cursor.run_many(fast.SET_HELD, changes)
    return delta


# ---------------------------------------------------------------- a check's writes


@exact
def store_check(
    transaction: Transaction,
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
    session = _postgresql(transaction)
    if batch is None and session is not None:
        from preflight.db import writes_postgresql as postgresql

        # The batch, its snapshot and the account's held need in one round trip.
        return postgresql.store_new_check(
            session,
            account=account,
            values=values,
            batch_id=batch_id,
            now=now,
            held_need_change=held_need_change,
            profile=profile,
            kind=kind,
        )
    if batch is None:
        pk = insert_checked_batch(
            transaction, values, batch_id=batch_id, account_id=account.id, now=now
        )
        if pk is None:
            return None
    else:
        pk = batch.pk
        update_checked_batch(transaction, pk, values)
    if held_need_change:
        shift_held_need(transaction, account.id, held_need_change, current=account.held_need)
    snapshot_id: int | None = None
    if profile is not None:
        assert kind is not None
        snapshot_id = insert_snapshot(
            transaction, account.id, profile, now=now, kind=kind, batch_pk=pk
        )
        if account.user_id is None and profile.user_id is not None:
            learn_user_id(transaction, account.id, profile.user_id)
    return pk, snapshot_id


def insert_checked_batch(
    transaction: Transaction,
    values: Mapping[str, Any],
    *,
    batch_id: str,
    account_id: int,
    now: datetime,
) -> int | None:
    """Insert a batch a check creates (``values``: what the check decided); its id, or None
    when a concurrent writer created it first."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.insert_checked_batch(
            session, values, batch_id=batch_id, account_id=account_id, now=now
        )
    found = fast.Cursor.of(transaction).one(
        fast.INSERT_BATCH,
        (*fast.checked_values(values), batch_id, account_id, sqlite_time(now)),
    )
    return None if found is None else int(found[0])


def update_checked_batch(transaction: Transaction, pk: int, values: Mapping[str, Any]) -> None:
    """Store what a check decided about an existing batch."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        postgresql.update_checked_batch(session, pk, values)
        return
    fast.Cursor.of(transaction).run(fast.UPDATE_BATCH, (*fast.checked_values(values), pk))


def insert_snapshot(
    transaction: Transaction,
    account_id: int,
    profile: ProfileValues,
    *,
    now: datetime,
    kind: SnapshotKind,
    batch_pk: int | None = None,
) -> int:
    """Insert one snapshot without the ORM; its id."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        return postgresql.insert_snapshot(
            session, account_id, profile, now=now, kind=kind, batch_pk=batch_pk
        )
    found = fast.Cursor.of(transaction).one(
        fast.INSERT_SNAPSHOT,
        (
            account_id,
            batch_pk,
            kind.value,
            sqlite_time(now),
            sqlite_amount(profile.credits),
            sqlite_amount(profile.api_quota_remaining),
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


def learn_user_id(transaction: Transaction, account_id: int, user_id: str) -> None:
    """Keep the vendor's user id on the account the first time a profile tells it."""
    session = _postgresql(transaction)
    if session is not None:
        from preflight.db import writes_postgresql as postgresql

        postgresql.learn_user_id(session, account_id, user_id)
        return
    fast.Cursor.of(transaction).run(fast.LEARN_USER_ID, (user_id, account_id))
