"""Outcome rows through the driver's fast path: executemany on SQLite, COPY on PostgreSQL.

A bulk import stores up to millions of rows. Through SQLAlchemy's ``insert()`` every value
would pass the column types' bind processors and every chunk would become one multi-row
``INSERT … VALUES (…), (…) RETURNING`` that PostgreSQL parses afresh (11,000 placeholders).
Here the rows are plain tuples, already in the form the column types store — on SQLite an
amount's canonical text and a naive UTC time's text, exactly as
:mod:`preflight.db.types` writes them (``tests/unit/test_bulk_values.py`` pins that) —
and go in with one ``executemany`` (SQLite) or one ``COPY`` into a temporary table and one
``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`` (PostgreSQL).

Both run on the session's connection, inside its transaction; driver errors are raised as
SQLAlchemy's ``DBAPIError`` so that :func:`preflight.db.session.translate_db_errors`
turns them into ``StorageError`` as usual.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import Connection, exc

from preflight.db.session import Database, is_sqlite
from preflight.db.values import sqlite_amount as sqlite_amount
from preflight.db.values import sqlite_time as sqlite_time

#: The stored columns of an outcome, in the order of the row tuples.
COLUMNS: Final = (
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
_SQLITE_INSERT: Final = (
    "INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status, cost, expected_cost,"
    " error, quota_failure, occurred_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (batch_pk, job_id, attempt) DO NOTHING"
)
# The staging table lives as long as the connection; its rows, as long as the transaction.
_PG_CREATE: Final = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS preflight_outcomes_in (batch_pk integer, job_id text,"
    " attempt integer, status text, http_status integer, cost numeric, expected_cost numeric,"
    " error text, quota_failure boolean, occurred_at timestamptz, recorded_at timestamptz,"
    " line integer) ON COMMIT DELETE ROWS"
)
_PG_CLEAR: Final = "DELETE FROM preflight_outcomes_in"
_PG_COPY_DIRECT: Final = (
    "COPY outcomes (batch_pk, job_id, attempt, status, http_status, cost, expected_cost,"
    " error, quota_failure, occurred_at, recorded_at) FROM STDIN"
)
_PG_COPY: Final = (
    "COPY preflight_outcomes_in (batch_pk, job_id, attempt, status, http_status, cost,"
    " expected_cost, error, quota_failure, occurred_at, recorded_at, line) FROM STDIN"
)
# Answers how many rows went in and, only when that is fewer than were staged (a key
# stored already, or given twice), which keys: usually one row instead of every key.
_PG_INSERT: Final = (
    "WITH inserted AS (INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status,"
    " cost, expected_cost, error, quota_failure, occurred_at, recorded_at)"
    " SELECT batch_pk, job_id, attempt, status, http_status, cost, expected_cost, error,"
    " quota_failure, occurred_at, recorded_at FROM preflight_outcomes_in ORDER BY line"
    " ON CONFLICT (batch_pk, job_id, attempt) DO NOTHING RETURNING job_id, attempt)"
    " SELECT NULL, NULL, (SELECT count(*) FROM inserted)"
    " UNION ALL SELECT job_id, attempt, NULL FROM inserted"
    " WHERE (SELECT count(*) FROM inserted) < %s"
)


def chunk_lines(database: Database) -> int:
    """Lines per transaction of a bulk import: SQLite's write lock is the whole database's
    (a chunk of 1,000 holds it ~10 ms); on PostgreSQL a chunk locks one batch row, and
    fewer commits (each waits for the disk) are worth more."""
    return 1000 if is_sqlite(database.engine) else 5000


@lru_cache(maxsize=4096)
def copy_time(value: datetime) -> str:
    """An aware time as COPY text for a ``timestamptz`` column (cached like
    :func:`sqlite_time`: psycopg then copies text instead of formatting a datetime)."""
    return value.isoformat()


@contextmanager
def _driver_errors(connection: Connection, statement: str) -> Iterator[None]:
    dbapi = connection.dialect.dbapi
    assert dbapi is not None
    try:
        yield
    except dbapi.Error as error:
        raise exc.DBAPIError.instance(
            statement, None, error, dbapi.Error, hide_parameters=True, dialect=connection.dialect
        ) from error


def insert_sqlite(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert outcome rows (SQLite values), skipping stored keys; how many went in."""
    with _driver_errors(connection, _SQLITE_INSERT):
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(_SQLITE_INSERT, rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()


def last_outcome_id(connection: Connection) -> int:
    """The highest outcome id (0 when there is none): SQLite numbers new rows above it."""
    value = connection.exec_driver_sql("SELECT max(id) FROM outcomes").scalar()
    return int(value or 0)


def inserted_since(connection: Connection, batch_pk: int, after_id: int) -> set[tuple[str, int]]:
    """Keys of ``batch_pk`` stored with an id above ``after_id`` (SQLite, under its write lock)."""
    rows = connection.exec_driver_sql(
        "SELECT job_id, attempt FROM outcomes WHERE batch_pk = ? AND id > ?", (batch_pk, after_id)
    )
    return {(job_id, attempt) for job_id, attempt in rows}


def insert_postgresql(
    connection: Connection, rows: Sequence[tuple[Any, ...]]
) -> set[tuple[str, int]] | None:
    """Insert outcome rows (Python values) in row order, each key once, skipping keys
    already stored; the keys inserted, or None when every row went in.

    First one COPY straight into ``outcomes``, under a savepoint: the usual chunk (new keys
    only) is then done, with the least work the database can do. A key stored already
    makes COPY fail as a whole; the chunk then goes through a temporary table and one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING``, which says which keys went in."""
    from psycopg.errors import UniqueViolation

    driver = connection.connection.driver_connection
    assert driver is not None
    with _driver_errors(connection, _PG_INSERT), driver.cursor() as cursor:
        cursor.execute("SAVEPOINT preflight_copy")
        try:
            with cursor.copy(_PG_COPY_DIRECT) as copy:
                for row in rows:
                    copy.write_row(row)
        except UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT preflight_copy")
        else:
            cursor.execute("RELEASE SAVEPOINT preflight_copy")
            return None
        cursor.execute(_PG_CREATE)
        cursor.execute(_PG_CLEAR)
        with cursor.copy(_PG_COPY) as copy:
            for line, row in enumerate(rows):
                copy.write_row((*row, line))
        cursor.execute(_PG_INSERT, (len(rows),))
        (_, _, count), *keys = cursor.fetchall()
        if count == len(rows):
            return None
        return {(job_id, attempt) for job_id, attempt, _ in keys}
