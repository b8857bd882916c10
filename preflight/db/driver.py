"""The ground floor of db/: the sqlite3 connection's preparation, the SQLite path checks,
the busy timeout, the exact decimal sum, the sqlite3 cursor the SQLite store runs on, and
the one translation of a driver's error into ``StorageError``.

Every other module of db/ may import this one; it imports none of them, and no
SQLAlchemy: a cold check on an embedded SQLite file (:mod:`preflight.db.embedded`) runs
on it alone.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from preflight.domain.exact import exact
from preflight.errors import StorageError

#: The newest migration. Every command compares the database against it, and reading it
#: from Alembic's script directory would import Alembic (~0.1 s) on every start-up;
#: tests/integration/test_migrations.py pins it to Alembic's actual head. Here, on the
#: ground floor, because the embedded check compares against it too, without SQLAlchemy.
SCHEMA_HEAD: Final = "0008"

#: How long a SQLite writer waits for another one's lock before it gives up.
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


def first_line(error: BaseException) -> str:
    """The first line of a driver's error (or of the one SQLAlchemy wraps): the driver's own
    words, never the statement or its parameters."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def database_error(error: BaseException) -> StorageError:
    """A driver's error (or SQLAlchemy's wrapping of one) as ``StorageError``."""
    return StorageError(f"database error: {first_line(error)}")


@contextmanager
def storage_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Errors of the kinds given (a driver's, or SQLAlchemy's ``DBAPIError``) raised as
    :func:`database_error`'s ``StorageError``, the driver's error as its cause."""
    try:
        yield
    except kinds as error:
        raise database_error(error) from error


class _SQLiteDecimalSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    @exact
    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = (self.total or Decimal(0)) + Decimal(value)

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")


def prepare_connection(dbapi_connection: Any) -> None:
    """Make a new sqlite3 connection fit for several writing processes: transactions begun
    by us (``BEGIN IMMEDIATE`` to write), WAL, a busy timeout, foreign keys, and the exact
    ``decimal_sum`` aggregate (amounts are text on SQLite)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
    dbapi_connection.create_aggregate("decimal_sum", 1, _SQLiteDecimalSum)


def check_sqlite_path(path: Path) -> None:
    """Create the database's directory, and open the file once, so that a path that cannot
    work fails now with the path and the cause (SQLite itself says only "unable to open
    database file")."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(
            f"cannot create the database directory {path.parent}: {error.strerror}"
        ) from None
    if not path.parent.is_dir():
        raise StorageError(f"cannot use {path}: {path.parent} is not a directory")
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as error:
        raise StorageError(
            f"cannot open the database file {path}: {_os_cause(path, error)}"
        ) from None


def _os_cause(path: Path, error: sqlite3.Error) -> str:
    """The operating system's reason a file cannot be opened, where there is one."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as os_error:
        return os_error.strerror or str(error)
    return str(error)


def sqlite_file(url: str) -> str | None:
    """The file of a plain SQLite URL, ``sqlite:///PATH``, as the URL spells it; None for
    every other URL: another database, an in-memory one, a ``file:`` URI, query
    parameters, or a path that the URL parser would rewrite (``%``-escapes) or that the
    engine would treat apart (``~``)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            database = url.removeprefix(prefix)
            break
    else:
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if any(char in database for char in "%?#~"):
        return None
    return database


class Cursor:
    """Statements on a sqlite3 connection, inside the transaction its owner began (the
    embedded check's own, or a session's or a connection's): sqlite3's errors come out as
    ``StorageError``, as from any transaction."""

    def __init__(self, dbapi: Any) -> None:
        self._dbapi = dbapi

    def one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        with storage_errors(sqlite3.Error):
            cursor = self._dbapi.execute(sql, params)
            row: tuple[Any, ...] | None = cursor.fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with storage_errors(sqlite3.Error):
            rows: list[tuple[Any, ...]] = self._dbapi.execute(sql, params).fetchall()
            return rows

    def run(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement; how many rows it changed."""
        with storage_errors(sqlite3.Error):
            return int(self._dbapi.execute(sql, params).rowcount)

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> int:
        """Run one statement for each parameter row; how many rows they changed."""
        with storage_errors(sqlite3.Error):
            return int(self._dbapi.executemany(sql, params).rowcount)
