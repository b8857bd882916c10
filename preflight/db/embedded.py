"""The embedded SQLite database, without SQLAlchemy: a check straight on sqlite3.

A cold ``preflight check`` on the default database (a SQLite file) runs three statements
of its own (:mod:`preflight.db.sqlite_fast`), and importing SQLAlchemy cost more than the
rest of the process together. When the database is a plain SQLite file already at the
schema's head, the check runs on a sqlite3 connection prepared exactly as the engine
prepares its own (:func:`prepare_connection`), in one ``BEGIN IMMEDIATE`` transaction, with
the very statements a session's transaction runs on SQLite (:mod:`preflight.db.writes`
takes either). Anything else (another URL form, a file that is not at head and must
upgrade itself, a file that cannot be opened) is left to the engine
(:class:`preflight.db.session.Database`), which says what is wrong exactly as before.

Also here, for both: the connection's preparation, the path check with its messages, and
the busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from preflight.db.migrate import SCHEMA_HEAD
from preflight.db.sqlite_fast import Cursor
from preflight.domain.exact import exact
from preflight.errors import StorageError

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    ``decimal_sum`` aggregate."""
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


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The driver's errors as ``StorageError``, worded as for a session's transaction."""
    try:
        yield
    except sqlite3.Error as error:
        lines = str(error).strip().splitlines()
        raise StorageError(
            f"database error: {lines[0] if lines else type(error).__name__}"
        ) from error


class EmbeddedSQLite:
    """One sqlite3 connection on a database file at the schema's head, for the statements
    of :mod:`preflight.db.sqlite_fast`. Threads take turns (SQLite has one writer at a
    time anyway); close it when done."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._cursor = Cursor(connection)
        self._turn = threading.Lock()

    @classmethod
    def open(cls, url: str) -> EmbeddedSQLite | None:
        """The database at ``url`` when it is a plain SQLite file at the schema's head;
        None otherwise (the engine's path then handles it). A path that cannot work fails
        here, as it does there, with the same ``StorageError``."""
        path = sqlite_file(url)
        if path is None:
            return None
        check_sqlite_path(Path(path))  # the same path, the same words as the engine's
        try:
            connection = sqlite3.connect(  # as the engine's driver opens it
                os.path.abspath(path),
                timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
        except sqlite3.Error:
            return None
        try:
            prepare_connection(connection)
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            row = None
        if row is None or row[0] != SCHEMA_HEAD:
            connection.close()
            return None
        return cls(connection)

    def run_plain_write(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` in one write transaction (``BEGIN IMMEDIATE``): committed when it
        returns, rolled back when it raises."""
        connection = self._connection
        with self._turn, _storage_errors():
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._cursor)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    with suppress(sqlite3.Error):  # the error that got us here says more
                        connection.execute("ROLLBACK")
                raise
            return result

    def peek_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row of one statement in autocommit, or None."""
        with self._turn, _storage_errors():
            cursor = self._connection.execute(sql, params)
            try:
                found: tuple[Any, ...] | None = cursor.fetchone()
            finally:
                cursor.close()  # an unfinished SELECT keeps its snapshot open
            return found

    def close(self) -> None:
        with self._turn:
            self._connection.close()
