"""One read statement outside any transaction of the caller's: a pooled connection in
autocommit, no session.

For a lookup that must see the latest committed state and nothing else (a request's
bearer token before its verb runs, a batch before a check spends a vendor call on it), a
read transaction through the ORM costs SQLite ~400 µs (session, BEGIN, the ORM's execution
and row loading, COMMIT) for a statement that takes it a few µs, and PostgreSQL three round
trips (BEGIN, SELECT, COMMIT) instead of one. Autocommit loses nothing here: a single
statement is its own snapshot, so a row committed (or revoked) a moment ago is seen.

Values come back as the driver reads them, not through the column types: the caller turns
them into its own types (:mod:`preflight.db.store_sqlite` has the SQLite conversions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc

from preflight.db.driver import storage_errors

if TYPE_CHECKING:
    from preflight.db.session import Database


def peek_one(
    database: Database, sqlite_sql: str, postgresql_sql: str, params: Sequence[Any]
) -> tuple[Any, ...] | None:
    """The first row of the statement (``?`` placeholders on SQLite, ``%s`` on PostgreSQL),
    or None. Errors are ``StorageError`` as from any transaction.

    On PostgreSQL, a connection that fails is dropped and the statement is run again in a
    read transaction, which rides out an outage like every other (a pooled connection may
    have died since its checkout looked at it)."""
    engine = database.engine
    dbapi = engine.dialect.dbapi
    assert dbapi is not None
    if engine.dialect.name == "sqlite":
        with storage_errors(exc.DBAPIError, dbapi.Error):
            raw = engine.raw_connection()
            try:
                cursor = raw.driver_connection.execute(sqlite_sql, params)  # type: ignore[union-attr]
                try:
                    found: tuple[Any, ...] | None = cursor.fetchone()
                finally:
                    cursor.close()  # an unfinished SELECT keeps its snapshot open
            finally:
                raw.close()
        return found
    try:
        pooled = engine.raw_connection()
    except exc.DBAPIError:
        pooled = None
    if pooled is not None:
        try:
            driver: Any = pooled.driver_connection
            driver.autocommit = True
            try:
                row = driver.execute(postgresql_sql, params).fetchone()
            finally:
                driver.autocommit = False
            return None if row is None else tuple(row)
        except dbapi.Error:
            pooled.invalidate()
        finally:
            pooled.close()
    with database.read() as session:
        again = session.connection().exec_driver_sql(postgresql_sql, tuple(params)).first()
        return None if again is None else tuple(again)
