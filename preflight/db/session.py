"""The engine (built once per process) and transaction scopes handed to repositories.

SQLite is made fit for several writing processes: WAL, a busy timeout, and write
transactions that start with ``BEGIN IMMEDIATE``. A deferred ``BEGIN`` that later
upgrades from reading to writing fails at once with "database is locked", whatever
the timeout, because SQLite cannot wait for a lock it would deadlock on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "Database",
    "Session",
    "build_engine",
    "decimal_sum",
    "is_sqlite",
    "normalize_url",
    "translate_db_errors",
]
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from preflight.db.liveness import POOL_RECYCLE_SECONDS, drop_dead_connections
from preflight.db.types import Amount
from preflight.domain.exact import exact
from preflight.errors import StorageError

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "preflight_read_only"


class decimal_sum(GenericFunction[Decimal]):
    """``SUM`` that stays exact: PostgreSQL's NUMERIC sum, or our aggregate on SQLite text."""

    type = Amount()
    name = "decimal_sum"
    inherit_cache = True


@compiles(decimal_sum, "postgresql")
def _decimal_sum_postgresql(element: decimal_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


class _SQLiteDecimalSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    @exact
    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = (self.total or Decimal(0)) + Decimal(value)

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")


def normalize_url(url: str) -> URL:
    """Parse a database URL; bare ``postgresql://`` means the psycopg 3 driver we ship."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise StorageError("database URL is not valid") from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise StorageError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    return parsed


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def build_engine(url: str) -> Engine:
    """Build the one engine of a process. Parameters never appear in errors or logs."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _build_sqlite_engine(parsed)
    return drop_dead_connections(
        create_engine(parsed, hide_parameters=True, pool_recycle=POOL_RECYCLE_SECONDS)
    )


def _build_sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create the database directory: {error.strerror}") from None
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, instead of the driver's own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
        dbapi_connection.create_aggregate("decimal_sum", 1, _SQLiteDecimalSum)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


class Database:
    """The engine and the two kinds of transaction scope commands use.

    Commit happens here, at the edge: repositories only add and query.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(
            engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(build_engine(url))

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commits on success, rolls back on any error."""
        with translate_db_errors(), self._writer() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read-only transaction (no write lock on SQLite)."""
        with translate_db_errors(), self._reader() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn driver errors into ``StorageError`` with a one-line message (no SQL, no parameters)."""
    try:
        yield
    except exc.DBAPIError as error:
        detail = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise StorageError(f"database error: {detail}") from error
