"""The embedded SQLite database, without SQLAlchemy: a check straight on sqlite3.

A cold ``preflight check`` on the default database (a SQLite file) runs a handful of
statements of its own, and importing SQLAlchemy cost more than the rest of the process
together. When the database is a plain SQLite file already at the schema's head, the
check runs on a sqlite3 connection prepared exactly as the engine prepares its own
(:func:`~preflight.db.driver.prepare_connection`), in one ``BEGIN IMMEDIATE`` transaction,
with the very store a connection's transaction gets on SQLite
(:class:`~preflight.db.store_sqlite.SQLiteStore`, over any sqlite3 cursor). Anything else
(another URL form, a file that is not at head and must upgrade itself, a file that cannot
be opened) is left to the engine (:class:`preflight.db.session.Database`), which says
what is wrong exactly as before.

The connection's preparation, the path check with its messages and the busy timeout,
which the engine's connections share, are :mod:`preflight.db.driver`'s.

PostgreSQL the same way (:class:`EmbeddedPostgreSQL`): importing SQLAlchemy and its
PostgreSQL dialect costs a cold ``preflight check`` more than psycopg, the vendor's GET
and the check's two round trips together. A check there runs on one psycopg connection
with the store a connection's transaction gets on PostgreSQL
(:class:`~preflight.db.store_postgresql.PostgreSQLStore`). What that connection cannot do
well goes to the engine's path (the ``fallback``): a server that does not answer at once
or is not at head, a connection lost midway (the engine rides the outage out and runs the
work again from the start, as it would have), and a second thread while one is using it
(a thread never waits behind another account's lock for this connection's sake).

:func:`open_embedded` picks the class by the URL's backend, in one table.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from preflight.db.driver import (
    SCHEMA_HEAD,
    SQLITE_BUSY_TIMEOUT_MS,
    Cursor,
    check_sqlite_path,
    prepare_connection,
    sqlite_file,
    storage_errors,
)
from preflight.db.store import BatchState, WriteStore
from preflight.db.store_postgresql import PostgreSQLStore
from preflight.db.store_sqlite import SQLiteStore

T = TypeVar("T")


class Plain(Protocol):
    """Where a check's work runs: an embedded connection, or the engine's
    :class:`preflight.db.session.Database`."""

    def run_write(self, work: Callable[[WriteStore], T]) -> T: ...

    def peek_batch(self, batch_id: str) -> BatchState | None: ...


class EmbeddedSQLite:
    """One sqlite3 connection on a database file at the schema's head, for the statements
    of :class:`~preflight.db.store_sqlite.SQLiteStore`. Threads take turns (SQLite has one
    writer at a time anyway); close it when done."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._cursor = Cursor(connection)
        self._turn = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        connect_timeout: float = 0,
        fallback: Callable[[], Plain] | None = None,
    ) -> EmbeddedSQLite | None:
        """The database at ``url`` when it is a plain SQLite file at the schema's head;
        None otherwise (the engine's path then handles it). A path that cannot work fails
        here, as it does there, with the same ``StorageError``. (A file neither keeps
        anyone waiting to connect nor loses its connection: ``connect_timeout`` and
        ``fallback`` are PostgreSQL's.)"""
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

    def run_write(self, work: Callable[[WriteStore], T]) -> T:
        """:meth:`preflight.db.session.Database.run_write`: ``work`` with the write port of
        one write transaction (SQLite's store on this connection)."""
        return self.run_plain_write(lambda cursor: work(SQLiteStore(cursor)))

    def peek_batch(self, batch_id: str) -> BatchState | None:
        """:meth:`preflight.db.session.Database.peek_batch` on this connection."""
        found = self.peek_one(SQLiteStore.BATCH_BY_NAME, (batch_id,))
        return None if found is None else SQLiteStore.read_batch(found)

    def run_plain_write(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` on the cursor of one write transaction (``BEGIN IMMEDIATE``):
        committed when it returns, rolled back when it raises."""
        connection = self._connection
        with self._turn, storage_errors(sqlite3.Error):
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
        with self._turn, storage_errors(sqlite3.Error):
            cursor = self._connection.execute(sql, params)
            try:
                found: tuple[Any, ...] | None = cursor.fetchone()
            finally:
                cursor.close()  # an unfinished SELECT keeps its snapshot open
            return found

    def close(self) -> None:
        with self._turn:
            self._connection.close()


class EmbeddedPostgreSQL:
    """One psycopg connection on a PostgreSQL database at the schema's head, for the
    statements of :class:`~preflight.db.store_postgresql.PostgreSQLStore`; what it cannot
    do well goes to ``fallback`` (see the module's docstring). Close it when done."""

    def __init__(self, connection: Any, dbapi: Any, fallback: Callable[[], Plain]) -> None:
        self._connection = connection
        self._dbapi = dbapi  # the psycopg module: its errors
        self._fallback = fallback
        self._turn = threading.Lock()
        self._lost = False

    @classmethod
    def open(
        cls, url: str, *, connect_timeout: float, fallback: Callable[[], Plain]
    ) -> EmbeddedPostgreSQL | None:
        """The database at ``url`` (``postgresql+psycopg://``) when it answers now and is
        at the schema's head; None otherwise (the engine's path then handles it, with its
        outage window and its messages)."""
        if not url.startswith(_PSYCOPG):
            return None
        import psycopg  # cold path: `preflight check` on SQLite never loads psycopg

        try:
            connection = psycopg.connect(
                "postgresql://" + url.removeprefix(_PSYCOPG),
                connect_timeout=max(1, round(connect_timeout)),
            )
        except (psycopg.Error, ValueError):
            return None
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            connection.rollback()
        except psycopg.Error:
            row = None
        if row is None or row[0] != SCHEMA_HEAD:
            connection.close()
            return None
        return cls(connection, psycopg, fallback)

    def run_write(self, work: Callable[[WriteStore], T]) -> T:
        """:meth:`preflight.db.session.Database.run_write` on this connection: ``work``
        with the write port of one transaction, committed when it returns."""

        def in_one_transaction(connection: Any) -> T:
            result = work(PostgreSQLStore(connection, self._dbapi))
            with storage_errors(self._dbapi.Error):
                connection.commit()
            return result

        return self._here_or_there(in_one_transaction, lambda there: there.run_write(work))

    def peek_batch(self, batch_id: str) -> BatchState | None:
        """:meth:`preflight.db.session.Database.peek_batch` on this connection: one
        statement in autocommit."""

        def in_autocommit(connection: Any) -> BatchState | None:
            connection.autocommit = True
            try:
                with storage_errors(self._dbapi.Error):
                    found = connection.execute(
                        PostgreSQLStore.BATCH_BY_NAME, (batch_id,)
                    ).fetchone()
            finally:
                connection.autocommit = False
            return None if found is None else PostgreSQLStore.read_batch(tuple(found))

        return self._here_or_there(in_autocommit, lambda there: there.peek_batch(batch_id))

    def _here_or_there(self, here: Callable[[Any], T], there: Callable[[Plain], T]) -> T:
        """``here`` on this connection; ``there`` on the engine's path when another thread
        has the connection, or it was lost, before or during ``here`` (then nothing was
        committed, and the engine runs it again from the start)."""
        if self._lost or not self._turn.acquire(blocking=False):
            return there(self._fallback())
        try:
            connection = self._connection
            try:
                return here(connection)
            except BaseException:
                with suppress(self._dbapi.Error):  # the error that got us here says more
                    connection.rollback()
                if not connection.broken:
                    raise
                self._lose()
        finally:
            self._turn.release()
        return there(self._fallback())

    def _lose(self) -> None:
        self._lost = True
        with suppress(self._dbapi.Error):
            self._connection.close()

    def close(self) -> None:
        with self._turn, suppress(self._dbapi.Error):
            self._connection.close()


_PSYCOPG: Final = "postgresql+psycopg://"

#: The embedded path of each backend a database URL names (its scheme before any ``+``).
EMBEDDED: Final[dict[str, type[EmbeddedSQLite] | type[EmbeddedPostgreSQL]]] = {
    "sqlite": EmbeddedSQLite,
    "postgresql": EmbeddedPostgreSQL,
}


def open_embedded(
    url: str, *, connect_timeout: float, fallback: Callable[[], Plain]
) -> EmbeddedSQLite | EmbeddedPostgreSQL | None:
    """The embedded path of the database at ``url``, or None where the engine's path
    must take it (:meth:`EmbeddedSQLite.open`, :meth:`EmbeddedPostgreSQL.open`)."""
    embedded = EMBEDDED.get(url.split(":", 1)[0].split("+", 1)[0])
    if embedded is None:
        return None
    return embedded.open(url, connect_timeout=connect_timeout, fallback=fallback)
