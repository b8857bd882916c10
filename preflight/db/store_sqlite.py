"""SQLite's :class:`~preflight.db.store.WriteStore`: plain SQL on a sqlite3 cursor.

SQLite runs in process: a statement costs it a few microseconds, and SQLAlchemy's execution
of a cached Core statement ~25 µs more. The statements here run straight on the sqlite3
connection under the transaction (the embedded check's own, or a session's or a
connection's: :class:`preflight.db.driver.Cursor`), with the values in the form the column
types store them (:mod:`preflight.db.values`: amounts as canonical text, times as naive
UTC text, JSON as ``json.dumps`` text; ``tests/unit/test_bulk_values.py`` pins them) and
read back the way those types read them. ``BEGIN IMMEDIATE`` has already serialised the
writers, so a value read in the transaction is still current when written back, and the
hold rule is :func:`preflight.domain.holds.hold` itself.

Each table's written columns are listed once below, with their stored form; the
statements are built from those lists. Nothing here imports SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from preflight.db.driver import Cursor
from preflight.db.store import (
    AccountState,
    Added,
    BatchState,
    BatchValues,
    OutcomeStore,
    ProfileValues,
)
from preflight.db.values import meter_map_text, sqlite_amount, sqlite_time
from preflight.domain.exact import exact
from preflight.domain.holds import hold, hold_change
from preflight.domain.vocabulary import SnapshotKind

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from preflight.domain.outcome import OutcomeRow


def _same(value: Any) -> Any:
    return value


def _time(value: datetime | None) -> str | None:
    return None if value is None else sqlite_time(value)


def _flag(value: bool) -> int:
    return 1 if value else 0


def amount(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _labels(text: str | None) -> dict[str, Any]:
    return {} if text is None else dict(json.loads(text))


_Column = tuple[str, Callable[[Any], Any]]

# ---------------------------------------------------------------- the column lists

#: batches, the columns a writer decides (:class:`BatchValues`' fields, in order).
BATCH_WRITTEN: Final[tuple[_Column, ...]] = (
    ("meter", _same),
    ("need", sqlite_amount),
    ("reserve", sqlite_amount),
    ("verdict", _same),
    ("verified", _flag),
    ("checked_at", _time),
    ("last_activity_at", _time),
    ("labels", json.dumps),
    ("status", _same),
    ("held", sqlite_amount),
)
#: batches as the writers read them (:class:`BatchState`'s fields, in order; ``o`` is
#: the owning account), each with the reading of its stored form.
BATCH_READ: Final[tuple[_Column, ...]] = (
    ("b.id", _same),
    ("b.batch_id", _same),
    ("b.account_id", _same),
    ("o.name", _same),
    ("b.meter", _same),
    ("b.need", amount),
    ("b.reserve", amount),
    ("b.status", _same),
    ("b.verified", bool),
    ("b.labels", _labels),
    ("b.checked_at", moment),
    ("b.finished_at", moment),
    ("b.consumed_cost", amount),
    ("b.held", amount),
)
#: accounts as the writers read them (:class:`AccountState`'s fields, in order).
ACCOUNT_READ: Final[tuple[_Column, ...]] = (
    ("a.id", _same),
    ("a.name", _same),
    ("a.user_id", _same),
    ("a.held_need", Decimal),
)
#: snapshots, every column written, in the order :meth:`SQLiteStore.store_snapshot` gives.
SNAPSHOT_WRITTEN: Final = (
    "account_id",
    "batch_pk",
    "outcome_id",
    "kind",
    "taken_at",
    "credits",
    "api_quota_remaining",
    "extra_meters",
    "tier",
    "user_id",
    "raw",
    "http_status",
    "latency_ms",
)
#: outcomes, every column written, in the order of :func:`_outcome_rows`' tuples.
OUTCOME_WRITTEN: Final = (
    "batch_pk",
    "job_id",
    "attempt",
    "status",
    "http_status",
    "cost",
    "expected_cost",
    "error",
    "quota_failure",
    "occurred_at",
    "recorded_at",
)
#: outcomes as :meth:`OutcomeInput.differences` compares them, each read from its stored form.
OUTCOME_COMPARED: Final[tuple[_Column, ...]] = (
    ("job_id", _same),
    ("attempt", _same),
    ("status", _same),
    ("cost", amount),
    ("expected_cost", amount),
    ("http_status", _same),
    ("error", _same),
    ("quota_failure", bool),
    ("occurred_at", moment),
)


def _names(columns: Iterable[_Column]) -> str:
    return ", ".join(name for name, _ in columns)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# ---------------------------------------------------------------- the statements

_BATCH_FROM = "FROM batches AS b JOIN accounts AS o ON o.id = b.account_id"
BATCH_BY_NAME: Final = f"SELECT {_names(BATCH_READ)} {_BATCH_FROM} WHERE b.batch_id = ?"
_ACCOUNT_BY_NAME: Final = f"SELECT {_names(ACCOUNT_READ)} FROM accounts AS a WHERE a.name = ?"
#: The account and, when it exists, the batch (whatever its account): one statement.
_ACCOUNT_AND_BATCH: Final = (
    f"SELECT {_names(ACCOUNT_READ)}, {_names(BATCH_READ)} FROM accounts AS a"
    " LEFT JOIN batches AS b ON b.batch_id = ? LEFT JOIN accounts AS o ON o.id = b.account_id"
    " WHERE a.name = ?"
)
#: A new account, as the model's defaults make it (``held_need`` 0).
_INSERT_ACCOUNT: Final = (
    "INSERT INTO accounts (name, created_at, held_need) VALUES (?, ?, '0') ON CONFLICT DO NOTHING"
)
_LEARN_USER_ID: Final = "UPDATE accounts SET user_id = ? WHERE id = ? AND user_id IS NULL"
_HELD_NEED: Final = "SELECT held_need FROM accounts WHERE id = ?"
_SET_HELD_NEED: Final = "UPDATE accounts SET held_need = ? WHERE id = ?"
#: A new batch, its totals as the model's defaults make them (0); no row when it exists.
_INSERT_BATCH: Final = (
    f"INSERT INTO batches ({_names(BATCH_WRITTEN)}, batch_id, account_id, created_at)"
    f" VALUES ({_marks(len(BATCH_WRITTEN) + 3)}) ON CONFLICT DO NOTHING RETURNING id"
)
_UPDATE_BATCH: Final = (
    f"UPDATE batches SET {', '.join(f'{name} = ?' for name, _ in BATCH_WRITTEN)} WHERE id = ?"
)
# The partial indexes' WHERE clauses, spelled so that SQLite's planner sees them implied.
_HOLDS_TO_REFRESH: Final = (
    "SELECT id, held, need, consumed_cost, status, last_activity_at FROM batches"
    " WHERE account_id = ? AND held IS NOT NULL AND last_activity_at < ? AND id != ?"
    " UNION ALL SELECT id, held, need, consumed_cost, status, last_activity_at FROM batches"
    " WHERE account_id = ? AND id != ? AND held IS NULL AND status = 'open'"
    " AND need IS NOT NULL AND last_activity_at >= ?"
)
_SET_HELD: Final = "UPDATE batches SET held = ? WHERE id = ?"
_RECORD_ACTIVITY: Final = (
    "UPDATE batches SET outcome_count = outcome_count + ?, failed_count = failed_count + ?,"
    " quota_failure_count = quota_failure_count + ?, late_count = late_count + ?,"
    " consumed_cost = ?, held = ?, last_activity_at = ? WHERE id = ?"
)
_HAS_PREFLIGHT: Final = "SELECT 1 FROM snapshots WHERE batch_pk = ? AND kind = 'preflight' LIMIT 1"
_INSERT_SNAPSHOT: Final = (
    f"INSERT INTO snapshots ({', '.join(SNAPSHOT_WRITTEN)})"
    f" VALUES ({_marks(len(SNAPSHOT_WRITTEN))}) RETURNING id"
)
_INSERT_OUTCOMES: Final = (
    f"INSERT INTO outcomes ({', '.join(OUTCOME_WRITTEN)}) VALUES ({_marks(len(OUTCOME_WRITTEN))})"
    " ON CONFLICT (batch_pk, job_id, attempt) DO NOTHING"
)
_OUTCOME_PK: Final = "SELECT id FROM outcomes WHERE batch_pk = ? AND job_id = ? AND attempt = ?"
_LAST_OUTCOME: Final = "SELECT max(id) FROM outcomes"
_OUTCOMES_SINCE: Final = "SELECT job_id, attempt FROM outcomes WHERE batch_pk = ? AND id > ?"
_DELETE_OUTCOME: Final = "DELETE FROM outcomes WHERE batch_pk = ? AND job_id = ? AND attempt = ?"


def batch_state(row: Sequence[Any]) -> BatchState:
    """A row of :data:`BATCH_READ`'s columns as a :class:`BatchState`."""
    return BatchState(*[read(value) for (_, read), value in zip(BATCH_READ, row, strict=True)])


def _account_state(row: Sequence[Any]) -> AccountState:
    return AccountState(row[0], row[1], row[2], Decimal(row[3]))


def _outcome_rows(
    batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
) -> list[tuple[Any, ...]]:
    recorded = sqlite_time(now)
    return [
        (
            batch_pk,
            job_id,
            attempt,
            status,
            http_status,
            None if cost is None else sqlite_amount(cost),
            None if expected is None else sqlite_amount(expected),
            error,
            1 if quota else 0,
            recorded if at is None else sqlite_time(at),
            recorded,
        )
        for _, (job_id, attempt, status, http_status, cost, expected, error, quota, at, _) in items
    ]


class SQLiteStore(OutcomeStore):
    """The write port on SQLite, over a sqlite3 cursor inside a write transaction."""

    #: The batch by name (:class:`BatchState`'s columns), and its row's reading.
    BATCH_BY_NAME: Final = BATCH_BY_NAME
    read_batch = staticmethod(batch_state)
    #: Lines per transaction of a bulk import: SQLite's write lock is the whole
    #: database's, and a chunk of 1,000 holds it ~10 ms.
    CHUNK_LINES: Final = 1000

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    @classmethod
    def on(cls, connection: Connection) -> SQLiteStore:
        """The store of a SQLAlchemy connection's transaction (a session's included)."""
        return cls(Cursor(connection.connection.dbapi_connection))

    # ---------------------------------------------------------------- accounts

    def account(self, name: str, *, now: datetime) -> AccountState:
        cursor = self._cursor
        row = cursor.one(_ACCOUNT_BY_NAME, (name,))
        if row is None:
            cursor.run(_INSERT_ACCOUNT, (name, sqlite_time(now)))
            row = cursor.one(_ACCOUNT_BY_NAME, (name,))
            assert row is not None
        return _account_state(row)

    def lock_account(self, name: str, *, now: datetime) -> AccountState:
        """The transaction's ``BEGIN IMMEDIATE`` holds the database's write lock already."""
        return self.account(name, now=now)

    def lock_account_of(self, account_id: int) -> None:
        """The transaction's ``BEGIN IMMEDIATE`` holds the database's write lock already."""

    @exact
    def shift_held_need(
        self, account_id: int, delta: Decimal, *, current: Decimal | None = None
    ) -> Decimal:
        """``current``: the account's held need read earlier in this transaction (still
        current: the transaction holds SQLite's write lock)."""
        if current is None:
            found = self._cursor.one(_HELD_NEED, (account_id,))
            assert found is not None
            current = Decimal(found[0])
        total = current + delta
        self._cursor.run(_SET_HELD_NEED, (sqlite_amount(total), account_id))
        return total

    # ---------------------------------------------------------------- batches

    def batch(self, batch_id: str, *, lock: bool = False) -> BatchState | None:
        found = self._cursor.one(BATCH_BY_NAME, (batch_id,))
        return None if found is None else batch_state(found)

    def open_check(
        self, account: str, batch_id: str, *, now: datetime, hold_cutoff: datetime
    ) -> tuple[AccountState, BatchState | None, Decimal]:
        row = self._cursor.one(_ACCOUNT_AND_BATCH, (batch_id, account))
        if row is None:
            state, batch = self.account(account, now=now), self.batch(batch_id)
        else:
            state = _account_state(row)
            batch = None if row[4] is None else batch_state(row[4:])
        change = self.refresh_holds(
            state.id, cutoff=hold_cutoff, checked=batch.pk if batch else None
        )
        return state, batch, change

    def create_batch(
        self, batch_id: str, account_id: int, values: BatchValues, *, now: datetime
    ) -> int | None:
        found = self._cursor.one(
            _INSERT_BATCH, (*_written(values), batch_id, account_id, sqlite_time(now))
        )
        return None if found is None else int(found[0])

    @exact
    def refresh_holds(self, account_id: int, *, cutoff: datetime, checked: int | None) -> Decimal:
        """Usually nothing changes: index lookups that find no row."""
        checked_pk = checked or 0
        at = sqlite_time(cutoff)
        rows = self._cursor.all(
            _HOLDS_TO_REFRESH, (account_id, at, checked_pk, account_id, checked_pk, at)
        )
        if not rows:
            return Decimal(0)
        delta = Decimal(0)
        changes: list[tuple[str | None, int]] = []
        for pk, held, need, consumed, status, last_activity in rows:
            new = hold(
                status,
                amount(need),
                Decimal(consumed),
                last_activity_at=moment(last_activity),
                cutoff=cutoff,
            )
            delta += hold_change(amount(held), new)
            changes.append((sqlite_amount(new), pk))
        self._cursor.run_many(_SET_HELD, changes)
        return delta

    @exact
    def record_activity(self, batch: BatchState, added: Added, *, now: datetime) -> datetime | None:
        """``batch`` was read in this write transaction: its values are current."""
        late = batch.finished_at is not None and now > batch.finished_at
        consumed = batch.consumed_cost + added.cost
        after = hold(batch.status, batch.need, consumed)
        self._cursor.run(
            _RECORD_ACTIVITY,
            (
                added.count,
                added.failed,
                added.quota_failures,
                added.count if late else 0,
                sqlite_amount(consumed),
                sqlite_amount(after),
                sqlite_time(now),
                batch.pk,
            ),
        )
        delta = hold_change(batch.held, after)
        if delta:
            self.shift_held_need(batch.account_id, delta)
        return batch.finished_at

    # ---------------------------------------------------------------- snapshots

    def has_preflight_snapshot(self, batch_pk: int) -> bool:
        return self._cursor.one(_HAS_PREFLIGHT, (batch_pk,)) is not None

    def store_snapshot(
        self,
        account_id: int,
        profile: ProfileValues,
        *,
        now: datetime,
        kind: SnapshotKind,
        batch_pk: int | None = None,
        outcome_pk: int | None = None,
        learn: bool = True,
    ) -> int:
        """``learn``: False when the account's user id is known already."""
        found = self._cursor.one(
            _INSERT_SNAPSHOT,
            (
                account_id,
                batch_pk,
                outcome_pk,
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
        if learn and profile.user_id is not None:
            self._cursor.run(_LEARN_USER_ID, (profile.user_id, account_id))
        return int(found[0])

    # ---------------------------------------------------------------- a check's writes

    @exact
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
        if batch is None:
            pk = self.create_batch(batch_id, account.id, values, now=now)
            if pk is None:
                return None
        else:
            pk = batch.pk
            self._cursor.run(_UPDATE_BATCH, (*_written(values), pk))
        if held_need_change:
            self.shift_held_need(account.id, held_need_change, current=account.held_need)
        snapshot_id: int | None = None
        if profile is not None:
            assert kind is not None
            snapshot_id = self.store_snapshot(
                account.id,
                profile,
                now=now,
                kind=kind,
                batch_pk=pk,
                learn=account.user_id is None,
            )
        return pk, snapshot_id

    # ---------------------------------------------------------------- outcomes

    def outcome_pk(self, batch_pk: int, job_id: str, attempt: int) -> int | None:
        found = self._cursor.one(_OUTCOME_PK, (batch_pk, job_id, attempt))
        return None if found is None else int(found[0])

    def _insert_outcomes(
        self, batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
    ) -> set[tuple[str, int]] | None:
        cursor = self._cursor
        before = 0
        if len(items) > 1:
            found = cursor.one(_LAST_OUTCOME, ())
            before = int(found[0] or 0) if found else 0
        count = cursor.run_many(_INSERT_OUTCOMES, _outcome_rows(batch_pk, items, now))
        if count == len(items):
            return None
        if count == 0:
            return set()
        # Some keys were stored already. SQLite's write lock is ours: the rows numbered
        # above the highest id before the insert are exactly this insert's.
        return {(job, attempt) for job, attempt in cursor.all(_OUTCOMES_SINCE, (batch_pk, before))}

    def _stored_outcomes(
        self, batch_pk: int, job_ids: Iterable[str]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        wanted = sorted(set(job_ids))
        found: dict[tuple[str, int], dict[str, Any]] = {}
        select = f"SELECT {_names(OUTCOME_COMPARED)} FROM outcomes WHERE batch_pk = ? AND job_id IN"
        for start in range(0, len(wanted), 500):  # SQLite's limit of parameters is 999+
            chunk = wanted[start : start + 500]
            for row in self._cursor.all(f"{select} ({_marks(len(chunk))})", (batch_pk, *chunk)):
                values = {
                    name: read(value)
                    for (name, read), value in zip(OUTCOME_COMPARED, row, strict=True)
                }
                found[(values["job_id"], values["attempt"])] = values
        return found

    def _delete_outcomes(self, batch_pk: int, keys: Iterable[tuple[str, int]]) -> None:
        self._cursor.run_many(_DELETE_OUTCOME, [(batch_pk, job, attempt) for job, attempt in keys])


def _written(values: BatchValues) -> list[Any]:
    """``values`` in :data:`BATCH_WRITTEN`'s order and stored forms."""
    return [store(getattr(values, name)) for name, store in BATCH_WRITTEN]
