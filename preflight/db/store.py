"""The write port: every write a check, a record and a snapshot make, as one
:class:`WriteStore` with one class per dialect, chosen once when the transaction opens.

- :class:`preflight.db.store_sqlite.SQLiteStore` runs on any sqlite3 cursor: the embedded
  check's own connection (:mod:`preflight.db.embedded`, no SQLAlchemy) or the one under a
  session's or a connection's transaction. ``BEGIN IMMEDIATE`` has serialised the writers
  already; amounts are text there, so increments are done exactly in Python, by the hold
  rule of :mod:`preflight.domain.holds` itself.
- :class:`preflight.db.store_postgresql.PostgreSQLStore` runs on the psycopg connection
  under a transaction, with a handful of statements that each do what SQLite does in
  several (a round trip costs more than a statement).

Each statement exists once per dialect, in that dialect's module, built from its one
column list per table; the logic both share (what a stored outcome contradicts, what new
outcomes add to their batch) is here, once (as httpx keeps its client's logic in one base
and the I/O per flavour). :meth:`preflight.db.session.Database.run_write` and
:meth:`preflight.db.embedded.EmbeddedSQLite.run_write` hand the work a store; a verb that
also needs the ORM in the same transaction asks :meth:`~preflight.db.session.Database.store`
for one over its session.

**One decision at a time per account; the lock order.** A check decides from the
account's ``held_need`` (what its open batches still need), so every transaction that
changes it (a check, a record, a finish, a hold released or taken back) is serialised with
every other one of the same account, *before* it reads it. Every such writer takes, in
this order and no other:

1. the account's row (:meth:`WriteStore.lock_account`, :meth:`WriteStore.lock_account_of`),
   as its first row lock, and before it inserts a batch of the account;
2. then the batch rows it changes (``FOR NO KEY UPDATE``);
3. and changes ``held_need`` by an increment, under the lock it holds since step 1.

The stores take step 1 themselves where the operation opens a writer's work
(:meth:`~WriteStore.open_check`, :meth:`~WriteStore.batch` with ``lock``,
:meth:`~WriteStore.record_activity`); a writer that creates a batch for outcomes takes it
with :meth:`~WriteStore.lock_account`. On SQLite, ``BEGIN IMMEDIATE`` has taken the
database's one write lock before the first statement: step 1 is that lock. On PostgreSQL
(READ COMMITTED) step 1 is ``SELECT … FOR NO KEY UPDATE`` of the account's row, the
account's own lock: a writer that changes ``held_need`` takes it by doing so, whether or
not it asked first, and ``INSERT … ON CONFLICT`` of a new account makes a second first
check wait for the first one's row. ``FOR NO KEY UPDATE``, never ``FOR UPDATE``: inserting
a batch, an outcome or a snapshot takes ``KEY SHARE`` on the row it refers to (the foreign
key), which must not wait for a writer. So writers of one account wait only in this
order, and writers of different accounts never wait for each other. A refresh of holds
skips rows another writer has locked (``SKIP LOCKED``): that writer sets their hold itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from preflight.domain.errors import ConflictError
from preflight.domain.exact import exact
from preflight.domain.vocabulary import BatchStatus, OutcomeStatus, SnapshotKind

if TYPE_CHECKING:
    from preflight.domain.outcome import OutcomeInput, OutcomeRow


@dataclass(frozen=True)
class AccountState:
    """An account as the writers read it."""

    id: int
    name: str
    user_id: str | None
    held_need: Decimal


@dataclass(frozen=True)
class BatchState:
    """One batch as the writers read it."""

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


@dataclass(frozen=True)
class BatchValues:
    """What a writer decides about a batch: everything, for a check; for outcomes of a
    batch never checked, :meth:`unverified`. The fields are the batch's columns that a
    writer sets, in the order of each dialect's column list."""

    meter: str | None
    need: Decimal | None
    reserve: Decimal
    verdict: str | None
    verified: bool
    checked_at: datetime | None
    last_activity_at: datetime
    labels: Mapping[str, Any]
    status: str
    held: Decimal | None

    @classmethod
    def unverified(cls, now: datetime) -> BatchValues:
        """A batch that outcomes name before any check: open, unverified, no need."""
        return cls(
            meter=None,
            need=None,
            reserve=Decimal(0),
            verdict=None,
            verified=False,
            checked_at=None,
            last_activity_at=now,
            labels={},
            status=BatchStatus.OPEN.value,
            held=None,
        )


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
    added: Added = field(default_factory=Added)


class WriteStore(Protocol):
    """The writes of a check, a record and a snapshot, inside one transaction that the
    caller owns (nothing here commits). See the module's docstring for the lock order."""

    def account(self, name: str, *, now: datetime) -> AccountState:
        """The account named ``name``, created on first use."""
        ...

    def lock_account(self, name: str, *, now: datetime) -> AccountState:
        """The account named ``name``, created on first use, locked until the transaction
        ends: step 1 of the lock order. Two first uses at once both get it: the second
        waits for the first's new row, then locks it."""
        ...

    def lock_account_of(self, account_id: int) -> None:
        """Lock the account ``account_id`` until the transaction ends: step 1 of the lock
        order, for a writer that knows the account by its batch."""
        ...

    def batch(self, batch_id: str, *, lock: bool = False) -> BatchState | None:
        """The batch named ``batch_id``; ``lock``: its account's row, then its own, locked
        until the transaction ends (steps 1 and 2 of the lock order)."""
        ...

    def open_check(
        self, account: str, batch_id: str, *, now: datetime, hold_cutoff: datetime
    ) -> tuple[AccountState, BatchState | None, Decimal]:
        """A check's reads: the account (created on first use, and locked first), the batch
        (None when there is none; locked when it is the account's), and the change of the
        account's held need once its other batches' holds are brought up to
        ``hold_cutoff`` (the caller applies it)."""
        ...

    def has_preflight_snapshot(self, batch_pk: int) -> bool: ...

    def outcome_pk(self, batch_pk: int, job_id: str, attempt: int) -> int | None:
        """The stored outcome (job, attempt) of batch ``batch_pk``; None when there is none."""
        ...

    def create_batch(
        self, batch_id: str, account_id: int, values: BatchValues, *, now: datetime
    ) -> int | None:
        """Insert a batch; its id, or None when a concurrent writer created it first."""
        ...

    def store_snapshot(
        self,
        account_id: int,
        profile: ProfileValues,
        *,
        now: datetime,
        kind: SnapshotKind,
        batch_pk: int | None = None,
        outcome_pk: int | None = None,
    ) -> int:
        """Insert one snapshot (and keep the vendor's user id on the account the first time
        a profile tells it); its id."""
        ...

    def shift_held_need(self, account_id: int, delta: Decimal) -> Decimal:
        """Add ``delta`` to the account's held need; its new value."""
        ...

    def refresh_holds(self, account_id: int, *, cutoff: datetime, checked: int | None) -> Decimal:
        """Bring the account's holds up to ``cutoff`` (now − the hold expiry), all but batch
        ``checked``'s; the change of its held need, which the caller applies."""
        ...

    def store_check(
        self,
        *,
        account: AccountState,
        batch: BatchState | None,
        batch_id: str,
        values: BatchValues,
        now: datetime,
        held_need_change: Decimal,
        profile: ProfileValues | None,
        kind: SnapshotKind | None,
    ) -> tuple[int, int | None] | None:
        """Write what a check decided: the batch (inserted, or updated), the change of the
        account's held need, the snapshot (with ``profile``). (batch pk, snapshot id), or
        None when the batch did not exist when read and another writer created it since
        (nothing was written then)."""
        ...

    def store_outcomes(
        self, batch: BatchState, rows: Sequence[tuple[int, OutcomeRow]], now: datetime
    ) -> StoredOutcomes:
        """Store numbered outcomes in order, up to the first one that contradicts a stored
        outcome or an earlier line; the batch's totals are left to :meth:`record_activity`."""
        ...

    def record_activity(self, batch: BatchState, added: Added, *, now: datetime) -> datetime | None:
        """Outcomes were stored for ``batch`` at ``now``: add them to its totals, mark the
        activity, and bring its hold (and its account's held need) up to date; the
        account's row is locked first. Returns when the batch was finished, as this update
        found it under the lock (None: open), which may be newer than ``batch`` says: a
        finish can commit between the read of ``batch`` and the lock."""
        ...


_FAILED = OutcomeStatus.FAILED.value


@exact
def added_by(rows: Iterable[OutcomeRow]) -> Added:
    """What these outcomes add to their batch's totals."""
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


class OutcomeStore:
    """:meth:`WriteStore.store_outcomes` once for both dialects, over three statements
    each dialect spells: insert rows skipping stored keys, read stored rows by key, delete
    rows by key."""

    def _insert_outcomes(
        self, batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
    ) -> set[tuple[str, int]] | None:
        """Insert in order, each key once, skipping keys already stored; the keys
        inserted, or None when every row went in."""
        raise NotImplementedError

    def _stored_outcomes(
        self, batch_pk: int, job_ids: Iterable[str]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """Stored outcomes of the batch for these jobs, by (job_id, attempt), each as
        :meth:`preflight.domain.outcome.OutcomeInput.differences` compares them."""
        raise NotImplementedError

    def _delete_outcomes(self, batch_pk: int, keys: Iterable[tuple[str, int]]) -> None:
        """Take back rows this transaction inserted (nothing refers to them yet)."""
        raise NotImplementedError

    def store_outcomes(
        self, batch: BatchState, rows: Sequence[tuple[int, OutcomeRow]], now: datetime
    ) -> StoredOutcomes:
        """Identical repeats are duplicates, not errors. Every line is inserted without
        being looked up first (a key given twice goes in once, from its first line); only
        when some did not go in are the lines compared with each other and with what is
        stored. That line and every later one are not kept."""
        inserted = self._insert_outcomes(batch.pk, rows, now)
        if inserted is None:  # the usual case: all new, all distinct
            return StoredOutcomes(len(rows), 0, None, added_by(row for _, row in rows))
        # cold path: a check (and the usual record) loads no outcome parsing
        from preflight.domain.outcome import outcome_from_row, outcome_row

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
                        f"job {item.job_id!r} attempt {item.attempt} was given on line "
                        f"{earlier[0]} with different values"
                    ),
                )
                break
        candidates = list(first.values())
        leftovers = [(n, i) for n, i in candidates if (i.job_id, i.attempt) not in inserted]
        if leftovers:
            stored = self._stored_outcomes(batch.pk, {i.job_id for _, i in leftovers})
            for line_no, item in leftovers:
                differences = item.differences(stored[(item.job_id, item.attempt)])
                if differences:
                    if conflict is None or line_no < conflict[0]:
                        conflict = (line_no, _conflict_error(batch.batch_id, item, differences))
                    break
        if conflict is not None:
            # Lines from the conflicting one on went in with the rest: keep only those
            # before it. A key went in from its first line in the chunk.
            first_line: dict[tuple[str, int], int] = {}
            for n, i in items:
                first_line.setdefault((i.job_id, i.attempt), n)
            undone = {key for key in inserted if first_line[key] >= conflict[0]}
            if undone:
                self._delete_outcomes(batch.pk, undone)
                inserted -= undone
        processed = sum(1 for n, _ in items if conflict is None or n < conflict[0])
        added = added_by(outcome_row(i) for _, i in candidates if (i.job_id, i.attempt) in inserted)
        return StoredOutcomes(len(inserted), processed - len(inserted), conflict, added)


def _conflict_error(batch_id: str, item: OutcomeInput, differences: list[str]) -> ConflictError:
    return ConflictError(
        f"job {item.job_id!r} attempt {item.attempt} of batch {batch_id!r} is already "
        f"recorded with a different {', '.join(differences)}; outcomes are never "
        "overwritten (record it as a new attempt instead)"
    )
