"""PostgreSQL's :class:`~preflight.db.store.WriteStore`: SQL straight on the psycopg
connection under the transaction, where merging statements saves round trips.

A round trip costs more than the statement: a check reads in one (:data:`_OPEN_CHECK`,
plus one to lock a batch that exists) and writes in one (:data:`_WRITE`: the batch, its
snapshot, the account's held need and user id). :data:`_WRITE` is also the one statement
that creates a batch and the one that stores a snapshot: its parts that a caller does not
need are switched off by its parameters.

Each table's written columns are listed once below; the statements are built from those
lists. The hold rule is spelled in SQL once (:func:`_hold`), and held to
:func:`preflight.domain.holds.hold` by ``tests/integration/test_hold_rule.py``. The lock
order is :mod:`preflight.db.store`'s. Nothing here imports the ORM (a check on PostgreSQL
loads none) or psycopg itself (a SQLite process never loads it): the driver's module is
the dialect's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from preflight.db.driver import storage_errors
from preflight.db.store import (
    AccountState,
    Added,
    BatchState,
    BatchValues,
    OutcomeStore,
    ProfileValues,
)
from preflight.db.values import meter_map_text, sqlite_amount
from preflight.domain.holds import hold_change
from preflight.domain.vocabulary import SnapshotKind

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from preflight.domain.outcome import OutcomeRow


def _same(value: Any) -> Any:
    return value


def utc(value: datetime | None) -> datetime | None:
    # psycopg answers in the session's time zone; the column types answer in UTC.
    return None if value is None else value.astimezone(UTC)


def _labels(value: Any) -> dict[str, Any]:
    return {} if value is None else dict(value)


_Column = tuple[str, Callable[[Any], Any]]

# ---------------------------------------------------------------- the column lists

#: batches, the columns a writer decides (:class:`BatchValues`' fields, in order), each
#: with its placeholder (JSON labels go as text).
BATCH_WRITTEN: Final = (
    ("meter", "%(meter)s"),
    ("need", "%(need)s"),
    ("reserve", "%(reserve)s"),
    ("verdict", "%(verdict)s"),
    ("verified", "%(verified)s"),
    ("checked_at", "%(checked_at)s"),
    ("last_activity_at", "%(last_activity_at)s"),
    ("labels", "%(labels)s::json"),
    ("status", "%(status)s"),
    ("held", "%(held)s"),
)
#: batches as the writers read them (:class:`BatchState`'s fields, in order; ``o`` is the
#: owning account).
BATCH_READ: Final[tuple[_Column, ...]] = (
    ("b.id", _same),
    ("b.batch_id", _same),
    ("b.account_id", _same),
    ("o.name", _same),
    ("b.meter", _same),
    ("b.need", _same),
    ("b.reserve", _same),
    ("b.status", _same),
    ("b.verified", _same),
    ("b.labels", _labels),
    ("b.checked_at", utc),
    ("b.finished_at", utc),
    ("b.consumed_cost", _same),
    ("b.held", _same),
)
#: accounts as the writers read them (:class:`AccountState`'s fields, in order).
ACCOUNT_READ: Final = ("a.id", "a.name", "a.user_id", "a.held_need")
#: snapshots, every column written, each with its placeholder in :data:`_WRITE`.
SNAPSHOT_WRITTEN: Final = (
    ("account_id", "%(account_id)s"),
    ("batch_pk", "batch.id"),
    ("outcome_id", "%(outcome_pk)s"),
    ("kind", "%(kind)s"),
    ("taken_at", "%(now)s"),
    ("credits", "%(credits)s"),
    ("api_quota_remaining", "%(quota)s"),
    ("extra_meters", "%(extra_meters)s"),
    ("tier", "%(tier)s"),
    ("user_id", "%(user_id)s"),
    ("raw", "%(raw)s"),
    ("http_status", "%(http_status)s"),
    ("latency_ms", "%(latency_ms)s"),
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
#: outcomes as :meth:`OutcomeInput.differences` compares them.
OUTCOME_COMPARED: Final[tuple[_Column, ...]] = (
    ("job_id", _same),
    ("attempt", _same),
    ("status", _same),
    ("cost", _same),
    ("expected_cost", _same),
    ("http_status", _same),
    ("error", _same),
    ("quota_failure", _same),
    ("occurred_at", utc),
)


def _hold(consumed: str) -> str:
    """The hold rule of :func:`preflight.domain.holds.hold` for a batch active now, over
    the columns of ``batches`` and the consumed cost ``consumed`` (SQL)."""
    return (
        f"CASE WHEN status = 'open' AND need IS NOT NULL THEN GREATEST(need - ({consumed}), 0) END"
    )


def _names(columns: Iterable[tuple[str, Any]]) -> str:
    return ", ".join(name for name, _ in columns)


# ---------------------------------------------------------------- the statements

_BATCH_FROM = "FROM batches AS b JOIN accounts AS o ON o.id = b.account_id"
BATCH_BY_NAME: Final = f"SELECT {_names(BATCH_READ)} {_BATCH_FROM} WHERE b.batch_id = %s"
_BATCH_BY_NAME_LOCKED: Final = f"{BATCH_BY_NAME} FOR NO KEY UPDATE OF b"
_ACCOUNT_BY_NAME: Final = f"SELECT {', '.join(ACCOUNT_READ)} FROM accounts AS a WHERE a.name = %s"
#: Step 1 of the lock order (:mod:`preflight.db.store`): the account's row, by name, by id,
#: or by a batch of the account.
_ACCOUNT_BY_NAME_LOCKED: Final = f"{_ACCOUNT_BY_NAME} FOR NO KEY UPDATE"
_LOCK_ACCOUNT: Final = "SELECT id FROM accounts WHERE id = %s FOR NO KEY UPDATE"
_LOCK_ACCOUNT_OF_BATCH: Final = (
    "SELECT id FROM accounts WHERE id = (SELECT account_id FROM batches WHERE batch_id = %s)"
    " FOR NO KEY UPDATE"
)
#: A new account, as the model's defaults make it; no row when it exists already.
_INSERT_ACCOUNT: Final = (
    "INSERT INTO accounts (name, created_at, held_need) VALUES (%s, %s, 0) ON CONFLICT DO NOTHING"
)
_ADD_HELD_NEED: Final = (
    "UPDATE accounts SET held_need = held_need + %s WHERE id = %s RETURNING held_need"
)
# The holds of the account's batches brought up to the cutoff, all but batch :checked's, in
# two data-modifying CTEs on disjoint rows, answering the change of its held need. A row
# another transaction has locked is skipped: that transaction is writing the batch, and
# sets its hold itself.
_REFRESH: Final = (
    "gone AS (SELECT id, held FROM batches WHERE account_id = {account}"
    " AND held IS NOT NULL AND last_activity_at < %(cutoff)s AND {other}"
    " FOR NO KEY UPDATE SKIP LOCKED),"
    " back AS (SELECT id FROM batches WHERE account_id = {account} AND {other}"
    " AND held IS NULL AND status = 'open' AND need IS NOT NULL"
    " AND last_activity_at >= %(cutoff)s FOR NO KEY UPDATE SKIP LOCKED),"
    " released AS (UPDATE batches SET held = NULL FROM gone WHERE batches.id = gone.id"
    " RETURNING -gone.held AS change),"
    f" taken AS (UPDATE batches SET held = {_hold('consumed_cost')}"
    " FROM back WHERE batches.id = back.id RETURNING batches.held AS change),"
    " changed AS (SELECT coalesce(sum(change), 0) AS change FROM"
    " (SELECT change FROM released UNION ALL SELECT change FROM taken) AS changes)"
)
_REFRESH_HOLDS: Final = (
    "WITH "
    + _REFRESH.format(account="%(account)s", other="id != %(checked)s")
    + " SELECT change FROM changed"
)
#: Step 1 of the lock order as a check's first statement.
_LOCK_ACCOUNT_NAMED: Final = "SELECT id FROM accounts WHERE name = %(name)s FOR NO KEY UPDATE"
#: A check's statement after the account's lock (pipelined behind it): the account's
#: holds refreshed (leaving the checked batch to the check), the account with that change,
#: and the account of the batch when it exists. It runs after the lock, so it sees every
#: earlier writer of the account.
_OPEN_CHECK: Final = (
    "WITH owner AS (SELECT id FROM accounts WHERE name = %(name)s), "
    + _REFRESH.format(account="(SELECT id FROM owner)", other="batch_id != %(batch_id)s")
    + f" SELECT {', '.join(ACCOUNT_READ)}, (SELECT change FROM changed), b.account_id"
    " FROM accounts AS a LEFT JOIN batches AS b ON b.batch_id = %(batch_id)s"
    " WHERE a.name = %(name)s"
)
_HAS_PREFLIGHT: Final = "SELECT 1 FROM snapshots WHERE batch_pk = %s AND kind = 'preflight' LIMIT 1"
_OUTCOME_PK: Final = "SELECT id FROM outcomes WHERE batch_pk = %s AND job_id = %s AND attempt = %s"
#: Outcomes stored for a batch: added to its totals from its current row (locked until
#: commit), so that concurrent writers of one batch add up; its hold before and after.
_RECORD_ACTIVITY: Final = (
    "WITH old AS (SELECT id, held FROM batches WHERE id = %(pk)s FOR NO KEY UPDATE)"
    " UPDATE batches SET outcome_count = outcome_count + %(n)s,"
    " failed_count = failed_count + %(failed)s,"
    " quota_failure_count = quota_failure_count + %(quota)s, last_activity_at = %(now)s,"
    " late_count = late_count"
    " + CASE WHEN finished_at IS NOT NULL AND finished_at < %(now)s THEN %(n)s ELSE 0 END,"
    f" consumed_cost = consumed_cost + %(cost)s, held = {_hold('consumed_cost + %(cost)s')}"
    " FROM old WHERE batches.id = old.id RETURNING old.held, batches.held, batches.finished_at"
)
#: The one statement that creates a batch, updates a checked one, stores a snapshot and
#: changes an account's held need (and learns its user id): each part on when its
#: parameter says so (:create, :update, :snapshot, a non-zero :delta or a user id). No
#: batch row comes back when :create found the batch created by another writer already,
#: and nothing else is written then.
_WRITE: Final = (
    f"WITH new_batch AS (INSERT INTO batches ({_names(BATCH_WRITTEN)},"
    " batch_id, account_id, created_at)"
    f" SELECT {', '.join(value for _, value in BATCH_WRITTEN)},"
    " %(batch_id)s, %(account_id)s, %(now)s WHERE %(create)s"
    " ON CONFLICT DO NOTHING RETURNING id),"
    f" updated AS (UPDATE batches SET {', '.join(f'{n} = {v}' for n, v in BATCH_WRITTEN)}"
    " WHERE id = %(batch_pk)s AND %(update)s RETURNING id),"
    " batch AS (SELECT id FROM new_batch UNION ALL SELECT id FROM updated"
    " UNION ALL SELECT %(batch_pk)s::integer WHERE NOT %(create)s AND NOT %(update)s),"
    f" snapshot AS (INSERT INTO snapshots ({_names(SNAPSHOT_WRITTEN)})"
    f" SELECT {', '.join(value for _, value in SNAPSHOT_WRITTEN)} FROM batch"
    " WHERE %(snapshot)s RETURNING id),"
    " account AS (UPDATE accounts SET held_need = held_need + %(delta)s,"
    " user_id = coalesce(user_id, %(user_id)s) WHERE id = %(account_id)s"
    " AND EXISTS (SELECT 1 FROM batch)"
    " AND (%(delta)s <> 0 OR (user_id IS NULL AND %(user_id)s IS NOT NULL)))"
    " SELECT EXISTS (SELECT 1 FROM batch), (SELECT id FROM batch), (SELECT id FROM snapshot)"
)
# Outcomes: first one COPY straight into the table (the usual chunk: new keys only); a key
# stored already fails it whole, and the chunk goes through a temporary table (its rows
# live as long as the transaction) and one INSERT … SELECT … ON CONFLICT DO NOTHING.
_COPY_DIRECT: Final = f"COPY outcomes ({', '.join(OUTCOME_WRITTEN)}) FROM STDIN"
_STAGE_CREATE: Final = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS preflight_outcomes_in (batch_pk integer, job_id text,"
    " attempt integer, status text, http_status integer, cost numeric, expected_cost numeric,"
    " error text, quota_failure boolean, occurred_at timestamptz, recorded_at timestamptz,"
    " line integer) ON COMMIT DELETE ROWS"
)
_STAGE_CLEAR: Final = "DELETE FROM preflight_outcomes_in"
_STAGE_COPY: Final = f"COPY preflight_outcomes_in ({', '.join(OUTCOME_WRITTEN)}, line) FROM STDIN"
# How many rows went in and, only when that is fewer than were staged (a key stored
# already, or given twice), which keys: usually one row instead of every key.
_STAGE_INSERT: Final = (
    f"WITH inserted AS (INSERT INTO outcomes ({', '.join(OUTCOME_WRITTEN)})"
    f" SELECT {', '.join(OUTCOME_WRITTEN)} FROM preflight_outcomes_in ORDER BY line"
    " ON CONFLICT (batch_pk, job_id, attempt) DO NOTHING RETURNING job_id, attempt)"
    " SELECT NULL, NULL, (SELECT count(*) FROM inserted)"
    " UNION ALL SELECT job_id, attempt, NULL FROM inserted"
    " WHERE (SELECT count(*) FROM inserted) < %s"
)
_STORED_OUTCOMES: Final = (
    f"SELECT {_names(OUTCOME_COMPARED)} FROM outcomes WHERE batch_pk = %s AND job_id = ANY(%s)"
)
_DELETE_OUTCOME: Final = "DELETE FROM outcomes WHERE batch_pk = %s AND job_id = %s AND attempt = %s"


def batch_state(row: Sequence[Any]) -> BatchState:
    """A row of :data:`BATCH_READ`'s columns as a :class:`BatchState`."""
    return BatchState(*[read(value) for (_, read), value in zip(BATCH_READ, row, strict=True)])


@lru_cache(maxsize=4096)
def copy_time(value: datetime) -> str:
    """An aware time as COPY text for a ``timestamptz`` column (cached: psycopg then copies
    text instead of formatting a datetime per row)."""
    return value.isoformat()


def _outcome_rows(
    batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
) -> list[tuple[Any, ...]]:
    # COPY text: amounts and times as their (cached) text.
    recorded = copy_time(now)
    return [
        (
            batch_pk,
            job_id,
            attempt,
            status,
            http_status,
            sqlite_amount(cost),
            sqlite_amount(expected),
            error,
            quota,
            recorded if at is None else copy_time(at),
            recorded,
        )
        for _, (job_id, attempt, status, http_status, cost, expected, error, quota, at, _) in items
    ]


class PostgreSQLStore(OutcomeStore):
    """The write port on PostgreSQL, over the psycopg connection of a transaction."""

    #: The batch by name (:class:`BatchState`'s columns), and its row's reading.
    BATCH_BY_NAME: Final = BATCH_BY_NAME
    read_batch = staticmethod(batch_state)
    #: Lines per transaction of a bulk import: a chunk locks one batch row, and fewer
    #: commits (each waits for the disk) are worth more.
    CHUNK_LINES: Final = 5000

    def __init__(self, driver: Any, dbapi: Any) -> None:
        self._driver = driver
        self._dbapi = dbapi  # the psycopg module: its errors

    @classmethod
    def on(cls, connection: Connection) -> PostgreSQLStore:
        """The store of a SQLAlchemy connection's transaction (a session's included)."""
        return cls(connection.connection.driver_connection, connection.dialect.dbapi)

    def _one(self, sql: str, params: Any) -> tuple[Any, ...] | None:
        with storage_errors(self._dbapi.Error):
            row: tuple[Any, ...] | None = self._driver.execute(sql, params).fetchone()
            return row

    def _run(self, sql: str, params: Any) -> None:
        with storage_errors(self._dbapi.Error):
            self._driver.execute(sql, params)

    # ---------------------------------------------------------------- accounts

    def account(self, name: str, *, now: datetime) -> AccountState:
        row = self._one(_ACCOUNT_BY_NAME, (name,))
        if row is None:
            self._run(_INSERT_ACCOUNT, (name, now))
            row = self._one(_ACCOUNT_BY_NAME, (name,))
            assert row is not None
        return AccountState(*row)

    def lock_account(self, name: str, *, now: datetime) -> AccountState:
        """One round trip for an account that exists. A new one is inserted with ``ON
        CONFLICT DO NOTHING``, which waits for a concurrent transaction that inserted it
        first to end; then it exists, committed, and is locked."""
        row = self._one(_ACCOUNT_BY_NAME_LOCKED, (name,))
        if row is None:
            self._run(_INSERT_ACCOUNT, (name, now))
            row = self._one(_ACCOUNT_BY_NAME_LOCKED, (name,))
            assert row is not None
        return AccountState(*row)

    def lock_account_of(self, account_id: int) -> None:
        self._run(_LOCK_ACCOUNT, (account_id,))

    def shift_held_need(self, account_id: int, delta: Decimal) -> Decimal:
        row = self._one(_ADD_HELD_NEED, (delta, account_id))
        assert row is not None
        total: Decimal = row[0]
        return total

    # ---------------------------------------------------------------- batches

    def batch(self, batch_id: str, *, lock: bool = False) -> BatchState | None:
        if lock:
            self._run(_LOCK_ACCOUNT_OF_BATCH, (batch_id,))
        return self._batch(batch_id, lock=lock)

    def _batch(self, batch_id: str, *, lock: bool) -> BatchState | None:
        row = self._one(_BATCH_BY_NAME_LOCKED if lock else BATCH_BY_NAME, (batch_id,))
        return None if row is None else batch_state(row)

    def open_check(
        self, account: str, batch_id: str, *, now: datetime, hold_cutoff: datetime
    ) -> tuple[AccountState, BatchState | None, Decimal]:
        """The account's lock, then the holds, the account and whether the batch exists, in
        one round trip (a pipeline of the two statements: the server runs the second once
        the first holds the lock), plus one to lock a batch that exists. A new account is
        created, locked, and read again."""
        params = {"name": account, "batch_id": batch_id, "cutoff": hold_cutoff}
        driver = self._driver
        with storage_errors(self._dbapi.Error):
            with driver.pipeline():
                locked = driver.execute(_LOCK_ACCOUNT_NAMED, {"name": account})
                opened = driver.execute(_OPEN_CHECK, params)
            row = opened.fetchone() if locked.fetchone() is not None else None
        if row is None:  # a new account: create it, locked, then read again
            self.lock_account(account, now=now)
            row = self._one(_OPEN_CHECK, params)
            assert row is not None
        state = AccountState(*row[:4])
        change: Decimal = row[4]
        owner = row[5]
        if owner is None:
            return state, None, change
        # A batch of another account is read, not locked: the check refuses it.
        return state, self._batch(batch_id, lock=owner == state.id), change

    def create_batch(
        self, batch_id: str, account_id: int, values: BatchValues, *, now: datetime
    ) -> int | None:
        created, pk, _ = self._write(account_id, now, values=values, batch_id=batch_id, create=True)
        return pk if created else None

    def refresh_holds(self, account_id: int, *, cutoff: datetime, checked: int | None) -> Decimal:
        params = {"account": account_id, "cutoff": cutoff, "checked": checked or 0}
        row = self._one(_REFRESH_HOLDS, params)
        assert row is not None
        change: Decimal = row[0]
        return change

    def record_activity(self, batch: BatchState, added: Added, *, now: datetime) -> datetime | None:
        """The batch row is updated from its current values, whatever ``batch`` says."""
        self.lock_account_of(batch.account_id)
        params = {
            "pk": batch.pk,
            "n": added.count,
            "failed": added.failed,
            "quota": added.quota_failures,
            "now": now,
            "cost": added.cost,
        }
        row = self._one(_RECORD_ACTIVITY, params)
        assert row is not None
        delta = hold_change(row[0], row[1])
        if delta:
            self.shift_held_need(batch.account_id, delta)
        finished_at: datetime | None = row[2]
        return finished_at

    # ---------------------------------------------------------------- snapshots

    def has_preflight_snapshot(self, batch_pk: int) -> bool:
        return self._one(_HAS_PREFLIGHT, (batch_pk,)) is not None

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
        _, _, snapshot_id = self._write(
            account_id, now, batch_pk=batch_pk, profile=profile, kind=kind, outcome_pk=outcome_pk
        )
        assert snapshot_id is not None
        return snapshot_id

    # ---------------------------------------------------------------- a check's writes

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
        """One round trip."""
        created, pk, snapshot_id = self._write(
            account.id,
            now,
            values=values,
            batch_id=batch_id,
            create=batch is None,
            batch_pk=batch.pk if batch is not None else None,
            delta=held_need_change,
            profile=profile,
            kind=kind,
        )
        if not created:
            return None
        assert pk is not None
        return pk, snapshot_id

    def _write(
        self,
        account_id: int,
        now: datetime,
        *,
        values: BatchValues | None = None,
        batch_id: str | None = None,
        create: bool = False,
        batch_pk: int | None = None,
        delta: Decimal = Decimal(0),
        profile: ProfileValues | None = None,
        kind: SnapshotKind | None = None,
        outcome_pk: int | None = None,
    ) -> tuple[bool, int | None, int | None]:
        """:data:`_WRITE`: (whether the batch was there to write, its pk, the snapshot's id)."""
        params: dict[str, Any] = {
            "account_id": account_id,
            "now": now,
            "batch_id": batch_id,
            "create": create,
            "update": values is not None and not create,
            "batch_pk": batch_pk,
            "delta": delta,
            "snapshot": profile is not None,
            "outcome_pk": outcome_pk,
            "kind": kind.value if kind is not None else None,
            "credits": profile.credits if profile else None,
            "quota": profile.api_quota_remaining if profile else None,
            "extra_meters": meter_map_text(profile.extra_meters) if profile else None,
            "tier": profile.tier if profile else None,
            "user_id": profile.user_id if profile else None,
            "raw": profile.raw if profile else None,
            "http_status": profile.http_status if profile else None,
            "latency_ms": profile.latency_ms if profile else None,
        }
        for name, _ in BATCH_WRITTEN:
            params[name] = getattr(values, name) if values is not None else None
        if values is not None:
            params["labels"] = json.dumps(dict(values.labels))
        row = self._one(_WRITE, params)
        assert row is not None
        return bool(row[0]), row[1], row[2]

    # ---------------------------------------------------------------- outcomes

    def outcome_pk(self, batch_pk: int, job_id: str, attempt: int) -> int | None:
        row = self._one(_OUTCOME_PK, (batch_pk, job_id, attempt))
        return None if row is None else int(row[0])

    def _insert_outcomes(
        self, batch_pk: int, items: Sequence[tuple[int, OutcomeRow]], now: datetime
    ) -> set[tuple[str, int]] | None:
        rows = _outcome_rows(batch_pk, items, now)
        with storage_errors(self._dbapi.Error), self._driver.cursor() as cursor:
            cursor.execute("SAVEPOINT preflight_copy")
            try:
                with cursor.copy(_COPY_DIRECT) as copy:
                    for row in rows:
                        copy.write_row(row)
            except self._dbapi.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT preflight_copy")
            else:
                cursor.execute("RELEASE SAVEPOINT preflight_copy")
                return None
            cursor.execute(_STAGE_CREATE)
            cursor.execute(_STAGE_CLEAR)
            with cursor.copy(_STAGE_COPY) as copy:
                for line, row in enumerate(rows):
                    copy.write_row((*row, line))
            cursor.execute(_STAGE_INSERT, (len(rows),))
            (_, _, count), *keys = cursor.fetchall()
            if count == len(rows):
                return None
            return {(job_id, attempt) for job_id, attempt, _ in keys}

    def _stored_outcomes(
        self, batch_pk: int, job_ids: Iterable[str]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        with storage_errors(self._dbapi.Error):
            rows = self._driver.execute(_STORED_OUTCOMES, (batch_pk, list(set(job_ids))))
            found: dict[tuple[str, int], dict[str, Any]] = {}
            for row in rows:
                values = {
                    name: read(value)
                    for (name, read), value in zip(OUTCOME_COMPARED, row, strict=True)
                }
                found[(values["job_id"], values["attempt"])] = values
            return found

    def _delete_outcomes(self, batch_pk: int, keys: Iterable[tuple[str, int]]) -> None:
        with storage_errors(self._dbapi.Error), self._driver.cursor() as cursor:
            cursor.executemany(_DELETE_OUTCOME, [(batch_pk, job, attempt) for job, attempt in keys])
