"""The check's and the record's statements on SQLite, straight through the sqlite3 cursor.

SQLite runs in process: a statement costs it a few microseconds, and SQLAlchemy's execution
of a cached Core statement ~25 µs more (contexts, events, result metadata). A check runs
six, a record four: here they are plain SQL on the session's own DBAPI connection, inside
its transaction, with the values in the form the column types store them
(:mod:`preflight.db.values`: amounts as canonical text, times as naive UTC text, JSON as
``json.dumps`` text; ``tests/unit/test_bulk_values.py`` pins the two conversions) and read
back the way those types read them. :mod:`preflight.db.writes` calls these on SQLite and
Core statements on PostgreSQL; the answers are the same dataclasses.

Nothing here imports SQLAlchemy: a check on an embedded SQLite file runs these on a bare
sqlite3 connection in a transaction of its own (:mod:`preflight.db.embedded`), the same
statements a session's transaction runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from preflight.db.values import sqlite_amount, sqlite_time

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

BATCH_BY_NAME: Final = (
    "SELECT b.id, b.batch_id, b.account_id, o.name, b.meter, b.need, b.reserve, b.status,"
    " b.verified, b.labels, b.checked_at, b.finished_at, b.consumed_cost, b.held"
    " FROM batches AS b JOIN accounts AS o ON o.id = b.account_id WHERE b.batch_id = ?"
)
#: The account and, when it exists, the batch (whatever its account).
ACCOUNT_AND_BATCH: Final = (
    "SELECT a.id, a.name, a.user_id, a.held_need,"
    " b.id, b.batch_id, b.account_id, o.name, b.meter, b.need, b.reserve, b.status,"
    " b.verified, b.labels, b.checked_at, b.finished_at, b.consumed_cost, b.held"
    " FROM accounts AS a LEFT JOIN batches AS b ON b.batch_id = ?"
    " LEFT JOIN accounts AS o ON o.id = b.account_id WHERE a.name = ?"
)
# The partial indexes' WHERE clauses, spelled so that SQLite's planner sees them implied.
HOLDS_TO_REFRESH: Final = (
    "SELECT id, held, need, consumed_cost, 0 FROM batches WHERE account_id = ?"
    " AND held IS NOT NULL AND last_activity_at < ? AND id != ?"
    " UNION ALL SELECT id, held, need, consumed_cost, 1 FROM batches WHERE account_id = ?"
    " AND id != ? AND held IS NULL AND status = 'open' AND need IS NOT NULL"
    " AND last_activity_at >= ?"
)
SET_HELD: Final = "UPDATE batches SET held = ? WHERE id = ?"
HELD_NEED: Final = "SELECT held_need FROM accounts WHERE id = ?"
SET_HELD_NEED: Final = "UPDATE accounts SET held_need = ? WHERE id = ?"
#: What a check decides about its batch, in the order of the two statements below.
_CHECKED: Final = (
    "meter",
    "need",
    "reserve",
    "verdict",
    "verified",
    "checked_at",
    "last_activity_at",
    "labels",
    "status",
    "held",
)
INSERT_BATCH: Final = (
    "INSERT INTO batches (meter, need, reserve, verdict, verified, checked_at,"
    " last_activity_at, labels, status, held, batch_id, account_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id"
)
UPDATE_BATCH: Final = (
    "UPDATE batches SET meter = ?, need = ?, reserve = ?, verdict = ?, verified = ?,"
    " checked_at = ?, last_activity_at = ?, labels = ?, status = ?, held = ? WHERE id = ?"
)
HAS_PREFLIGHT: Final = "SELECT 1 FROM snapshots WHERE batch_pk = ? AND kind = 'preflight' LIMIT 1"
ACCOUNT_BY_NAME: Final = "SELECT id, name, user_id, held_need FROM accounts WHERE name = ?"
#: A new account, as the model's defaults make it (``held_need`` 0).
INSERT_ACCOUNT: Final = (
    "INSERT INTO accounts (name, created_at, held_need) VALUES (?, ?, '0') ON CONFLICT DO NOTHING"
)
LEARN_USER_ID: Final = "UPDATE accounts SET user_id = ? WHERE id = ? AND user_id IS NULL"
INSERT_SNAPSHOT: Final = (
    "INSERT INTO snapshots (account_id, batch_pk, kind, taken_at, credits, api_quota_remaining,"
    " extra_meters, tier, user_id, raw, http_status, latency_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " RETURNING id"
)
RECORD_ACTIVITY: Final = (
    "UPDATE batches SET outcome_count = outcome_count + ?, failed_count = failed_count + ?,"
    " quota_failure_count = quota_failure_count + ?, late_count = late_count + ?,"
    " consumed_cost = ?, held = ?, last_activity_at = ? WHERE id = ?"
)


# ---------------------------------------------------------------- values


def amount(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def batch_values(row: Sequence[Any]) -> tuple[Any, ...]:
    """A batch row of :data:`BATCH_BY_NAME` as ``BatchState``'s fields."""
    (pk, batch_id, account_id, owner, meter, need, reserve, status, verified, labels) = row[:10]
    checked_at, finished_at, consumed, held = row[10:14]
    return (
        pk,
        batch_id,
        account_id,
        owner,
        meter,
        amount(need),
        amount(reserve),
        status,
        bool(verified),
        json.loads(labels) if labels is not None else {},
        moment(checked_at),
        moment(finished_at),
        amount(consumed),
        amount(held),
    )


def checked_values(values: Mapping[str, Any]) -> list[Any]:
    """A check's batch values (:data:`_CHECKED`), stored form."""
    return [
        values["meter"],
        sqlite_amount(values["need"]),
        sqlite_amount(values["reserve"]),
        values["verdict"],
        1 if values["verified"] else 0,
        sqlite_time(values["checked_at"]),
        sqlite_time(values["last_activity_at"]),
        json.dumps(values["labels"]),
        values["status"],
        sqlite_amount(values["held"]),
    ]


# ---------------------------------------------------------------- execution

_KEPT: Final = "preflight.sqlite_cursor"


class Cursor:
    """Statements on a sqlite3 connection, inside the transaction its owner began: a
    session's (:meth:`of`), or the embedded check's own (:mod:`preflight.db.embedded`,
    which turns the driver's errors into ``StorageError`` for the whole transaction)."""

    def __init__(self, dbapi: Any) -> None:
        self._dbapi = dbapi

    @classmethod
    def of(cls, transaction: Session | Connection | Cursor) -> Cursor:
        """The cursor of ``transaction``: itself when it is one; for a session or a
        connection, the cursor of its current transaction (kept in its ``info`` while that
        transaction lasts: asking a session for its connection costs ~15 µs)."""
        if isinstance(transaction, Cursor):
            return transaction
        current = transaction.get_transaction()
        kept = transaction.info.get(_KEPT)
        if kept is not None and kept[0] is current and current is not None:
            cursor: Cursor = kept[1]
            return cursor
        from sqlalchemy import Connection  # loaded already: there is a session or a connection

        if isinstance(transaction, Connection):
            cursor = _SessionCursor(transaction)
        else:
            cursor = _SessionCursor(transaction.connection())
        transaction.info[_KEPT] = (transaction.get_transaction(), cursor)
        return cursor

    def one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._dbapi.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._dbapi.execute(sql, params).fetchall()
        return rows

    def run(self, sql: str, params: Sequence[Any]) -> None:
        self._dbapi.execute(sql, params)

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._dbapi.executemany(sql, params)


class _SessionCursor(Cursor):
    """A session's (or a connection's) sqlite3 connection; errors raised as SQLAlchemy's,
    which the transaction's scope words (:func:`preflight.db.session.translate_db_errors`)."""

    def __init__(self, connection: Connection) -> None:
        from preflight.db.bulk import _driver_errors  # loaded already: there is a session

        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        super().__init__(dbapi)
        self._connection = connection
        self._errors = _driver_errors

    def one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        with self._errors(self._connection, sql):
            row: tuple[Any, ...] | None = self._dbapi.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._errors(self._connection, sql):
            rows: list[tuple[Any, ...]] = self._dbapi.execute(sql, params).fetchall()
            return rows

    def run(self, sql: str, params: Sequence[Any]) -> None:
        with self._errors(self._connection, sql):
            self._dbapi.execute(sql, params)

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._errors(self._connection, sql):
            self._dbapi.executemany(sql, params)
