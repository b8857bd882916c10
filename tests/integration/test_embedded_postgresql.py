"""The embedded PostgreSQL path of a cold check (preflight.db.embedded): one psycopg
connection, no SQLAlchemy, and the engine's path for whatever it cannot do well: a
database not at head or not answering, a connection lost midway, a second thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import pytest

from preflight.api import Preflight
from preflight.db.embedded import EmbeddedPostgreSQL, open_embedded
from preflight.db.session import Database
from preflight.db.store import BatchState, WriteStore
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.conftest import fresh_postgres_schema
from tests.integration.test_embedded_check import _story
from tests.support import Clock, upgrade_schema

pytestmark = pytest.mark.postgres

T = TypeVar("T")
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Fallback:
    """The engine's path, counting what it was handed."""

    def __init__(self, url: str) -> None:
        self.database = Database.from_url(url)
        self.writes = 0
        self.peeks = 0

    def __call__(self) -> Fallback:
        return self

    def run_write(self, work: Callable[[WriteStore], T]) -> T:
        self.writes += 1
        return self.database.run_write(work)

    def peek_batch(self, batch_id: str) -> BatchState | None:
        self.peeks += 1
        return self.database.peek_batch(batch_id)


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh schema, beside ``postgres_url``'s."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
def url(postgres_url: str) -> str:
    upgrade_schema(postgres_url)
    return postgres_url


@pytest.fixture
def fallback(url: str) -> Iterator[Fallback]:
    engine_path = Fallback(url)
    yield engine_path
    engine_path.database.dispose()


def _libpq(url: str) -> str:
    return "postgresql://" + url.removeprefix("postgresql+psycopg://")


def _held_need(url: str, account: str) -> Decimal | None:
    with psycopg.connect(_libpq(url)) as connection:
        row = connection.execute(
            "SELECT held_need FROM accounts WHERE name = %s", (account,)
        ).fetchone()
    return None if row is None else Decimal(row[0])


def _hold(account: str, amount: str) -> Callable[[WriteStore], int]:
    def work(store: WriteStore) -> int:
        state = store.lock_account(account, now=NOW)
        store.shift_held_need(state.id, Decimal(amount))
        return state.id

    return work


def _never() -> Fallback:
    raise AssertionError("opening never goes to the engine")


def test_it_opens_only_a_psycopg_database_that_answers_at_the_schemas_head(
    postgres_url: str,
) -> None:
    kwargs: dict[str, Any] = {"connect_timeout": 2, "fallback": _never}
    assert open_embedded(postgres_url, **kwargs) is None  # an empty schema: not at head
    upgrade_schema(postgres_url)
    embedded = open_embedded(postgres_url, **kwargs)
    assert isinstance(embedded, EmbeddedPostgreSQL)
    embedded.close()
    # Left to the engine: another driver, and a server that does not answer.
    assert open_embedded(postgres_url.replace("+psycopg", "+psycopg2"), **kwargs) is None
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:9/test"
    assert open_embedded(unreachable, **kwargs) is None


def test_its_writes_commit_and_its_errors_roll_back(url: str, fallback: Fallback) -> None:
    embedded = open_embedded(url, connect_timeout=2, fallback=fallback)
    assert isinstance(embedded, EmbeddedPostgreSQL)
    try:
        embedded.run_write(_hold("a", "10"))

        def fails(store: WriteStore) -> None:
            _hold("a", "5")(store)
            raise ValueError("the check refused")

        with pytest.raises(ValueError, match="the check refused"):
            embedded.run_write(fails)
        assert _held_need(url, "a") == Decimal(10)  # the second one rolled back
        embedded.run_write(_hold("a", "1"))  # the connection is still good
        assert _held_need(url, "a") == Decimal(11)
        assert embedded.peek_batch("none") is None
    finally:
        embedded.close()
    assert (fallback.writes, fallback.peeks) == (0, 0)


def test_a_connection_lost_midway_hands_the_work_whole_to_the_engine(
    url: str, fallback: Fallback
) -> None:
    connection = psycopg.connect(_libpq(url))
    embedded = EmbeddedPostgreSQL(connection, psycopg, fallback)
    pid = connection.info.backend_pid
    try:
        embedded.run_write(_hold("b", "10"))
        first_tries: list[int] = []

        def lost_midway(store: WriteStore) -> int:
            account = _hold("b", "3")(store)
            if not first_tries:
                first_tries.append(account)
                with psycopg.connect(_libpq(url), autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                _hold("b", "0")(store)  # the next statement meets the lost connection
            return account

        embedded.run_write(lost_midway)
        # Run again from the start by the engine: 3 held once, not twice.
        assert _held_need(url, "b") == Decimal(13)
        assert fallback.writes == 1
        # The embedded connection is not used again.
        embedded.run_write(_hold("b", "1"))
        assert embedded.peek_batch("none") is None
        assert (fallback.writes, fallback.peeks) == (2, 1)
        assert _held_need(url, "b") == Decimal(14)
    finally:
        embedded.close()


def test_a_second_thread_goes_to_the_engine_instead_of_waiting(
    url: str, fallback: Fallback
) -> None:
    embedded = open_embedded(url, connect_timeout=2, fallback=fallback)
    assert isinstance(embedded, EmbeddedPostgreSQL)
    inside, leave = threading.Event(), threading.Event()

    def slow(store: WriteStore) -> int:
        account = _hold("c", "1")(store)
        inside.set()
        assert leave.wait(timeout=60)
        return account

    thread = threading.Thread(target=embedded.run_write, args=(slow,))
    thread.start()
    try:
        assert inside.wait(timeout=60)
        embedded.run_write(_hold("d", "2"))  # another account: not behind the first
        assert embedded.peek_batch("none") is None
        assert (fallback.writes, fallback.peeks) == (1, 1)
    finally:
        leave.set()
        thread.join(timeout=60)
        embedded.close()
    assert (_held_need(url, "c"), _held_need(url, "d")) == (Decimal(1), Decimal(2))


def _pg_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(_libpq(url)) as connection:
        for table in ("accounts", "batches", "snapshots", "outcomes", "failure_tags"):
            cursor = connection.execute(f"SELECT * FROM {table} ORDER BY id")
            names = [column.name for column in cursor.description or ()]
            tables[table] = [
                tuple(v for n, v in zip(names, row, strict=True) if n != "latency_ms")
                for row in cursor.fetchall()
            ]
    return tables


def test_the_embedded_check_answers_and_stores_what_the_engine_path_does(
    sandbox: SandboxServer, postgres_url: str, request: pytest.FixtureRequest
) -> None:
    # The story of tests/integration/test_embedded_check.py (SQLite), on PostgreSQL: the
    # same answers and the same rows, whichever path the checks took.
    results = {}
    for embedded in (True, False):
        url = postgres_url if embedded else request.getfixturevalue("second_postgres_url")
        upgrade_schema(url)
        sandbox.reset()
        settings = load_settings(
            {
                "PREFLIGHT_DATABASE_URL": url,
                "PREFLIGHT_VENDOR_URL": sandbox.url,
                "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
                "PREFLIGHT_BACKOFF_BASE": "0.01",
                "PREFLIGHT_BACKOFF_MAX": "0.02",
            }
        )
        clock = Clock()
        database = None if embedded else Database.from_url(url)
        with Preflight(settings, database=database, clock=clock) as pf:
            first = pf.runtime.plain_database
            assert isinstance(first, EmbeddedPostgreSQL) is embedded
            answers = _story(pf, sandbox, clock)
            assert pf.runtime.plain_database is first
        results[embedded] = (answers, _pg_rows(url))
    assert results[True][0] == results[False][0]
    for table, rows in results[False][1].items():
        assert results[True][1][table] == rows, table
    assert len(results[False][1]["snapshots"]) == 12
