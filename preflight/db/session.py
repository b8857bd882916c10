"""The engine (built once per process) and transaction scopes handed to repositories.

The engine is its dialect's connector's (:mod:`preflight.db.connectors`), chosen once when
the engine is built; so is everything else that differs by dialect. SQLite is made fit for
several writing processes there: WAL, a busy timeout, and write transactions that start
with ``BEGIN IMMEDIATE``. A deferred ``BEGIN`` that later upgrades from reading to writing
fails at once with "database is locked", whatever the timeout, because SQLite cannot wait
for a lock it would deadlock on.

The ORM is imported when a session is first asked for: the writes of a check, a record
and a snapshot run on a connection (:meth:`Database.run_write`, through the write port of
:mod:`preflight.db.store`) and need none of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Connection, Engine, exc, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from preflight.db.connectors import CONNECTORS, READ_ONLY, Connector, Row, connector_of
from preflight.db.driver import first_line, storage_errors
from preflight.db.outage import Outage
from preflight.db.store import BatchState, WriteStore
from preflight.db.types import Amount
from preflight.errors import ConfigError, StorageError
from preflight.logs import get_logger

if TYPE_CHECKING:
    from sqlalchemy.orm import Session as Session
    from sqlalchemy.orm import sessionmaker

__all__ = [
    "Database",
    "build_engine",
    "connector_in",
    "decimal_sum",
    "normalize_url",
    "translate_db_errors",
]

T = TypeVar("T")
Scope = TypeVar("Scope", "Session", Connection)
_log = get_logger("preflight.db")

#: Where a session made by :class:`Database` keeps its connector (``Session.info``).
_CONNECTOR: Final = "preflight_connector"


class decimal_sum(GenericFunction[Decimal]):  # the SQLite aggregate: preflight.db.driver
    """``SUM`` that stays exact: PostgreSQL's NUMERIC sum, or our aggregate on SQLite text."""

    type = Amount()
    name = "decimal_sum"
    inherit_cache = True


@compiles(decimal_sum, "postgresql")
def _decimal_sum_postgresql(element: decimal_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


def normalize_url(url: str) -> URL:
    """Parse a database URL; bare ``postgresql://`` means the psycopg 3 driver we ship."""
    # A bad URL is a bad setting (exit 2), not a storage failure: nothing was tried yet.
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise ConfigError(
            "database_url: not a database URL (sqlite:///PATH or postgresql://…)"
        ) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in CONNECTORS:
        raise ConfigError(
            f"database_url: unsupported database {parsed.get_backend_name()!r}: "
            "use sqlite or postgresql"
        )
    return parsed


def build_engine(url: str) -> Engine:
    """Build the one engine of a process, as its dialect's connector builds it.
    Parameters never appear in errors or logs."""
    parsed = normalize_url(url)
    return CONNECTORS[parsed.get_backend_name()].build_engine(parsed)


def connector_in(session: Session) -> Connector:
    """The connector of the :class:`Database` whose transaction ``session`` is (chosen
    once, when that was built)."""
    connector: Connector = session.info[_CONNECTOR]
    return connector


class Database:
    """The engine and the two kinds of transaction scope commands use.

    Commit happens here, at the edge: repositories only add and query.

    A database outage (PostgreSQL restarting, a network cut) is ridden out for up to
    ``outage_window`` seconds: opening a transaction retries transient connection errors
    with backoff, and :meth:`run_write` re-runs a whole unit of work whose connection broke
    midway. Only then does the caller get a ``StorageError``. The window is one per call,
    from the first failure it meets (:mod:`preflight.db.outage`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        outage_window: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        # The dialect, chosen once: each write transaction gets its connector's store.
        self.connector = connector_of(engine)
        self._read_only_engine = engine.execution_options(**{READ_ONLY: True})
        self._sessions: dict[bool, sessionmaker[Session]] = {}
        self._outage_window = outage_window
        self._sleep = sleep
        self._monotonic = monotonic

    @classmethod
    def from_url(cls, url: str, *, outage_window: float = 30.0) -> Database:
        return cls(build_engine(url), outage_window=outage_window)

    @contextmanager
    def write(self, _outage: Outage | None = None) -> Iterator[Session]:
        """One write transaction: commits on success, rolls back on any error."""
        with translate_db_errors(), self._open(self._session, _outage) as session:
            yield session
            session.commit()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read-only transaction (no write lock on SQLite)."""
        with translate_db_errors(), self._open(self._read_only_session) as session:
            yield session
            session.commit()

    @contextmanager
    def write_plain(self, _outage: Outage | None = None) -> Iterator[Connection]:
        """One write transaction on a connection, no session (work of plain statements):
        commits on success, rolls back on any error."""
        with translate_db_errors(), self._open(self._connection, _outage) as connection:
            yield connection
            connection.commit()

    def wait_until_reachable(self) -> None:
        """Connect once, riding out an outage (for work that opens its own connections,
        such as the schema check at start-up)."""
        with translate_db_errors(), self._open(self._read_only_connection):
            pass

    def run_write(self, work: Callable[[WriteStore], T]) -> T:
        """Run ``work`` with the write port (:mod:`preflight.db.store`) of one write
        transaction on a connection (no session, no ORM), again from the start when the
        connection broke midway (within the outage window). ``work`` must be safe to repeat
        after a rollback: every insert of ours is ``ON CONFLICT DO NOTHING`` or keyed."""
        return self._run(self.write_plain, lambda connection: work(self.store(connection)))

    @property
    def chunk_lines(self) -> int:
        """Lines per transaction of a bulk import (the dialect's store says)."""
        return self.connector.store.CHUNK_LINES

    def store(self, transaction: Session | Connection) -> WriteStore:
        """The write port on ``transaction``, for a verb that also uses the ORM in it."""
        if not isinstance(transaction, Connection):
            transaction = transaction.connection()
        return self.connector.store.on(transaction)

    def peek_batch(self, batch_id: str) -> BatchState | None:
        """The batch named ``batch_id`` as committed now, outside any transaction (a check
        refuses a contradiction before it spends a vendor call on it): one statement in
        autocommit (:meth:`peek`)."""
        store = self.connector.store
        found = self.peek(store.BATCH_BY_NAME, (batch_id,))
        return None if found is None else store.read_batch(found)

    def peek(self, sql: str, params: Sequence[Any]) -> Row | None:
        """The first row of one statement (the driver's placeholders) as committed now,
        outside any transaction, or None: :meth:`preflight.db.connectors.Connector.peek_one`."""
        return self.connector.peek_one(sql, params, self._peek_again)

    def _peek_again(self, sql: str, params: Sequence[Any]) -> Row | None:
        with translate_db_errors(), self._open(self._read_only_connection) as connection:
            row = connection.exec_driver_sql(sql, tuple(params)).first()
            connection.commit()
        return None if row is None else tuple(row)

    def _run(
        self,
        scope: Callable[[Outage], AbstractContextManager[Scope]],
        work: Callable[[Scope], T],
    ) -> T:
        # One window for the whole call: the transaction's opening retries in it too.
        outage = self._outage()
        while True:
            try:
                with scope(outage) as transaction:
                    return work(transaction)
            except StorageError as error:
                if not self.connector.transient(error.__cause__) or not outage.retry():
                    raise
                _log.warning("database_retry", attempt=outage.attempts, error=str(error))

    def _outage(self) -> Outage:
        return Outage(self._outage_window, monotonic=self._monotonic, sleep=self._sleep)

    def _sessions_of(self, read_only: bool) -> sessionmaker[Session]:
        factory = self._sessions.get(read_only)
        if factory is None:
            from sqlalchemy.orm import sessionmaker  # cold path: a check loads no ORM

            bind = self._read_only_engine if read_only else self.engine
            factory = self._sessions[read_only] = sessionmaker(
                bind, expire_on_commit=False, info={_CONNECTOR: self.connector}
            )
        return factory

    def _session(self) -> Session:
        return _began(self._sessions_of(read_only=False)())

    def _read_only_session(self) -> Session:
        return _began(self._sessions_of(read_only=True)())

    def _connection(self) -> Connection:
        return _began(self.engine.connect())

    def _read_only_connection(self) -> Connection:
        return _began(self._read_only_engine.connect())

    @contextmanager
    def _open(self, begin: Callable[[], Scope], outage: Outage | None = None) -> Iterator[Scope]:
        """A transaction (a session's or a connection's) that already holds a live
        connection, retried through an outage (``outage``: the window of the call this
        is part of); rolled back and closed on the way out unless the caller committed."""
        while True:
            try:
                transaction = begin()
                break
            except exc.DBAPIError as error:
                if not self.connector.transient(error):
                    raise
                outage = outage or self._outage()  # made on the first failure only
                if not outage.retry():
                    raise
                _log.warning("database_retry", attempt=outage.attempts, error=first_line(error))
        try:
            yield transaction
        finally:
            transaction.close()  # rolls back what was not committed

    def dispose(self) -> None:
        self.engine.dispose()


def _began(transaction: Scope) -> Scope:
    """``transaction`` (a new session, or a connection just made) begun, holding a live
    connection (BEGIN IMMEDIATE on SQLite, unless read-only); closed if that fails."""
    try:
        transaction.begin()
        if not isinstance(transaction, Connection):
            transaction.connection()  # a session connects, and begins, only when asked
    except BaseException:
        transaction.close()
        raise
    return transaction


def translate_db_errors() -> AbstractContextManager[None]:
    """Turn SQLAlchemy's driver errors into ``StorageError`` with a one-line message (no
    SQL, no parameters): :func:`preflight.db.driver.storage_errors`."""
    return storage_errors(exc.DBAPIError)
