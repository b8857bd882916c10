"""The check's and the record's statements on SQLite, straight through the sqlite3 cursor.

SQLite runs in process: a statement costs it a few microseconds, and SQLAlchemy's execution
of a cached Core statement ~25 µs more (contexts, events, result metadata). A check runs
six, a record four: here they are plain SQL on the session's own DBAPI connection, inside
its transaction, with the values in the form the column types store them
(:mod:`preflight.db.types`: amounts as canonical text, times as naive UTC text, JSON as
``json.dumps`` text; ``tests/unit/test_bulk_values.py`` pins the two conversions) and read
back the way those types read them. :mod:`preflight.db.repositories` calls these on
SQLite and its Core statements on PostgreSQL; the answers are the same dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from preflight.db.bulk import _driver_errors, sqlite_amount, sqlite_time

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
    """The session's sqlite3 connection in its current transaction; errors as SQLAlchemy's."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        self._dbapi: Any = dbapi

    @classmethod
    def of(cls, session: Session) -> Cursor:
        """The cursor of ``session``'s current transaction (kept in ``session.info`` while
        that transaction lasts: asking the session for its connection costs ~15 µs)."""
        transaction = session.get_transaction()
        kept = session.info.get(_KEPT)
        if kept is not None and kept[0] is transaction and transaction is not None:
            cursor: Cursor = kept[1]
            return cursor
        cursor = cls(session.connection())
        session.info[_KEPT] = (session.get_transaction(), cursor)
        return cursor

    def one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        with _driver_errors(self._connection, sql):
            row: tuple[Any, ...] | None = self._dbapi.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with _driver_errors(self._connection, sql):
            rows: list[tuple[Any, ...]] = self._dbapi.execute(sql, params).fetchall()
            return rows

    def run(self, sql: str, params: Sequence[Any]) -> None:
        with _driver_errors(self._connection, sql):
            self._dbapi.execute(sql, params)

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with _driver_errors(self._connection, sql):
            self._dbapi.executemany(sql, params)
