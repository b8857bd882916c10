"""One connector per dialect, chosen once per engine: everything of db/ that differs by
dialect outside the write port's statements (as procrastinate keeps one connector per
driver).

A connector knows how its dialect's engine is built, which write port
(:mod:`preflight.db.store`) a transaction gets, how one statement is read in autocommit
outside any transaction (a request's bearer token, a batch before a check spends a vendor
call on it), how the driver hands back times and JSON there, which errors are a lost
connection worth another try, its ``INSERT … ON CONFLICT``, and whether the schema
upgrades itself. :func:`connector_of` is the one place that looks at an engine's dialect;
:class:`preflight.db.session.Database` asks it once, when it is built, and every function
of db/ then asks the connector it holds, never the dialect's name.

The autocommit read (:meth:`Connector.peek_one`): for a lookup that must see the latest
committed state and nothing else, a read transaction through the ORM costs SQLite ~400 µs
(session, BEGIN, the ORM's execution and row loading, COMMIT) for a statement that takes
it a few µs, and PostgreSQL three round trips (BEGIN, SELECT, COMMIT) instead of one.
Autocommit loses nothing here: a single statement is its own snapshot, so a row
committed (or revoked) a moment ago is seen. Values come back as the driver reads them,
not through the column types: :attr:`Connector.read_time` and :attr:`Connector.read_json` read
them as the column types would.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Final

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from preflight.db.driver import (
    SQLITE_BUSY_TIMEOUT_MS,
    check_sqlite_path,
    prepare_connection,
    storage_errors,
)
from preflight.db.liveness import POOL_RECYCLE_SECONDS, drop_dead_connections
from preflight.db.store_postgresql import PostgreSQLStore, utc
from preflight.db.store_sqlite import SQLiteStore, moment
from preflight.errors import StorageError

#: The execution option of an engine whose SQLite transactions only read (``BEGIN
#: DEFERRED``: no write lock).
READ_ONLY: Final = "preflight_read_only"

Row = tuple[Any, ...]
#: The same statement again, in a read transaction that rides out an outage.
Again = Callable[[str, Sequence[Any]], Row | None]


def _same(value: Any) -> Any:
    return value


@cache
def _percent(sql: str) -> str:
    return sql.replace("?", "%s")


class Connector:
    """What differs by dialect, for one engine (see the module's docstring)."""

    #: The SQLAlchemy dialect's name, which :func:`connector_of` looks up.
    name: ClassVar[str]
    #: The write port's class on this dialect.
    store: ClassVar[type[SQLiteStore] | type[PostgreSQLStore]]
    #: The schema upgrades itself on first use (the embedded SQLite file); a shared
    #: PostgreSQL changes only with an explicit ``preflight db upgrade``.
    upgrades_itself: ClassVar[bool]
    #: A time as the driver reads it outside the column types, as an aware UTC datetime.
    read_time: Callable[[Any], datetime | None]
    #: A JSON column as the driver reads it outside the column types, as Python values.
    read_json: Callable[[Any], Any]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self.dbapi: Any = dbapi
        # The dialect package's own ``insert`` (``on_conflict_do_nothing``, spelled alike
        # by both), from the package the engine has loaded already: a SQLite process never
        # loads PostgreSQL's (~30 ms, asyncpg's module included).
        self.insert: Callable[..., Any] = importlib.import_module(
            f"sqlalchemy.dialects.{self.name}"
        ).insert

    @classmethod
    def build_engine(cls, url: URL) -> Engine:
        """The one engine of a process. Parameters never appear in errors or logs."""
        raise NotImplementedError

    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders) in the driver's own placeholders."""
        raise NotImplementedError

    def peek_one(self, sql: str, params: Sequence[Any], again: Again) -> Row | None:
        """The first row of one statement (the driver's placeholders) in autocommit, or
        None; errors are ``StorageError`` as from any transaction. ``again`` is the
        statement in a read transaction, for a connection found dead."""
        raise NotImplementedError

    def transient(self, error: BaseException | None) -> bool:
        """A lost or refused connection, which another try may not meet."""
        raise NotImplementedError

    def set_varchar_length(
        self, connection: Connection, table: str, column: str, old: int, new: int
    ) -> None:
        """Declare ``table.column`` VARCHAR(``new``) instead of VARCHAR(``old``), keeping
        its rows (a migration's step: :mod:`preflight.db.varchar`)."""
        raise NotImplementedError


class SQLiteConnector(Connector):
    """SQLite: a file (or one in-memory database) in this process."""

    name = "sqlite"
    store = SQLiteStore
    upgrades_itself = True
    read_time = staticmethod(moment)  # naive UTC text
    read_json = staticmethod(json.loads)  # text

    @classmethod
    def build_engine(cls, url: URL) -> Engine:
        database = url.database
        in_memory = not database or database == ":memory:"
        if not in_memory and database and not database.startswith("file:"):
            check_sqlite_path(Path(database).expanduser())
        connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if in_memory:
            # Each connection to ":memory:" is a database of its own: one connection, shared
            # by every session and thread, makes ``sqlite://`` one database (tests use it).
            connect_args["check_same_thread"] = False
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args=connect_args,
            poolclass=StaticPool if in_memory else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # isolation_level None: SQLAlchemy's "begin" event issues BEGIN, not the driver.
            prepare_connection(dbapi_connection)

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

        return engine

    def sql(self, statement: str) -> str:
        return statement

    def peek_one(self, sql: str, params: Sequence[Any], again: Again) -> Row | None:
        # No connection of SQLite's is lost: ``again`` is never needed.
        with storage_errors(exc.DBAPIError, self.dbapi.Error):
            raw = self.engine.raw_connection()
            try:
                cursor = raw.driver_connection.execute(sql, params)  # type: ignore[union-attr]
                try:
                    found: Row | None = cursor.fetchone()
                finally:
                    cursor.close()  # an unfinished SELECT keeps its snapshot open
            finally:
                raw.close()
        return found

    def transient(self, error: BaseException | None) -> bool:
        # SQLite's "database is locked" is already waited out by the busy timeout.
        return False

    def set_varchar_length(
        self, connection: Connection, table: str, column: str, old: int, new: int
    ) -> None:
        # SQLite never enforces a VARCHAR's length: only the declared type changes, by
        # SQLite's own recipe for a schema change that leaves the stored rows as they are
        # (https://sqlite.org/lang_altertable.html, "making other kinds of table schema
        # changes"): edit the table's CREATE statement, bump the schema version so that
        # every connection re-reads it, and check the database's integrity. Copying the
        # table (Alembic's batch mode) would drop and recreate a table others reference.
        sql = connection.scalar(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
        )
        declared = re.compile(rf"(\b{column}\s+VARCHAR\(){old}(\))", re.IGNORECASE)
        edited, count = declared.subn(rf"\g<1>{new}\g<2>", sql)
        if count != 1:
            raise StorageError(f"{table}.{column} is not declared VARCHAR({old}): {sql!r}")
        version = connection.scalar(text("PRAGMA schema_version"))
        connection.exec_driver_sql("PRAGMA writable_schema = ON")
        try:
            connection.execute(
                text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
                {"sql": edited, "t": table},
            )
            connection.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
        finally:
            connection.exec_driver_sql("PRAGMA writable_schema = OFF")
        problems = connection.scalar(text("PRAGMA integrity_check"))
        if problems != "ok":
            raise StorageError(f"the SQLite schema edit left the database inconsistent: {problems}")


class PostgreSQLConnector(Connector):
    """PostgreSQL over psycopg 3: a server shared by many hosts, over a pool."""

    name = "postgresql"
    store = PostgreSQLStore
    upgrades_itself = False
    read_time = staticmethod(utc)  # in the session's time zone
    read_json = staticmethod(_same)  # psycopg decodes JSON

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        driver = self.dbapi  # the store's statements raise the driver's own
        self._lost = (
            exc.OperationalError,
            exc.InterfaceError,
            driver.OperationalError,
            driver.InterfaceError,
        )

    @classmethod
    def build_engine(cls, url: URL) -> Engine:
        return drop_dead_connections(
            create_engine(url, hide_parameters=True, pool_recycle=POOL_RECYCLE_SECONDS)
        )

    def sql(self, statement: str) -> str:
        return _percent(statement)

    def peek_one(self, sql: str, params: Sequence[Any], again: Again) -> Row | None:
        # A pooled connection may have died since its checkout looked at it: then it is
        # dropped, and the statement runs again in a read transaction (riding out an outage).
        try:
            pooled = self.engine.raw_connection()
        except exc.DBAPIError:
            pooled = None
        if pooled is not None:
            try:
                driver: Any = pooled.driver_connection
                driver.autocommit = True
                try:
                    row = driver.execute(sql, params).fetchone()
                finally:
                    driver.autocommit = False
                return None if row is None else tuple(row)
            except self.dbapi.Error:
                pooled.invalidate()
            finally:
                pooled.close()
        return again(sql, params)

    def transient(self, error: BaseException | None) -> bool:
        return isinstance(error, self._lost) or bool(
            getattr(error, "connection_invalidated", False)
        )

    def set_varchar_length(
        self, connection: Connection, table: str, column: str, old: int, new: int
    ) -> None:
        # In place; widening a VARCHAR rewrites no row (narrowing checks every row).
        connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({new})")


#: The connectors by the SQLAlchemy dialect's (and the URL's backend's) name.
CONNECTORS: Final[dict[str, type[Connector]]] = {
    connector.name: connector for connector in (SQLiteConnector, PostgreSQLConnector)
}


def connector_of(engine: Engine) -> Connector:
    """The connector of ``engine``: the one place db/ looks at an engine's dialect."""
    return CONNECTORS[engine.dialect.name](engine)
