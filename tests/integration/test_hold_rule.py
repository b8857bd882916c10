"""The hold rule has one definition (:func:`preflight.domain.holds.hold`); each dialect's
store spells it (SQLite in Python, PostgreSQL in SQL) and is held to it here, over
generated batches: need, consumed cost, status, last activity and the hold expiry.

Each example runs in a transaction of its own that is rolled back: the database is the
test's, the rows the example's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select, update

from preflight.db.models import Account, Batch
from preflight.db.session import Database
from preflight.db.store import Added, BatchValues
from preflight.domain.holds import hold, hold_change
from preflight.domain.vocabulary import BatchStatus
from tests.support import upgrade_schema

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
_names = itertools.count(1)

amounts = st.decimals(min_value=0, max_value=1000, places=2)


@dataclass(frozen=True)
class Row:
    need: Decimal | None
    consumed: Decimal
    status: str
    quiet_for: timedelta  # since its last activity
    holding: bool  # whether it held when last written (else its hold was released)


rows = st.builds(
    Row,
    need=st.none() | amounts,
    consumed=amounts,
    status=st.sampled_from([s.value for s in BatchStatus]),
    quiet_for=st.integers(min_value=0, max_value=180).map(lambda m: timedelta(minutes=m)),
    holding=st.booleans(),
)
expiries = st.integers(min_value=1, max_value=120).map(lambda m: timedelta(minutes=m))
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    upgrade_schema(database_url)
    database = Database.from_url(database_url)
    yield database
    database.dispose()


@contextmanager
def _rolled_back(database: Database) -> Iterator[Connection]:
    with database.engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


def _batches(
    database: Database, connection: Connection, batches: list[Row]
) -> tuple[int, list[int]]:
    """An account with these batches, each holding what the rule gave it when last written
    (or nothing, released), and the account's held need their sum."""
    store = database.store(connection)
    account = store.account(f"acct-{next(_names)}", now=NOW).id
    pks = []
    total = Decimal(0)
    for row in batches:
        held = hold(row.status, row.need, row.consumed) if row.holding else None
        values = BatchValues(
            meter="credits",
            need=row.need,
            reserve=Decimal(0),
            verdict="go",
            verified=True,
            checked_at=NOW - row.quiet_for,
            last_activity_at=NOW - row.quiet_for,
            labels={},
            status=row.status,
            held=held,
        )
        pk = store.create_batch(f"b-{next(_names)}", account, values, now=NOW - row.quiet_for)
        assert pk is not None
        connection.execute(update(Batch).where(Batch.id == pk).values(consumed_cost=row.consumed))
        pks.append(pk)
        total += held or 0
    connection.execute(update(Account).where(Account.id == account).values(held_need=total))
    return account, pks


def _held(connection: Connection, pk: int) -> Decimal | None:
    return connection.execute(select(Batch.held).where(Batch.id == pk)).scalar_one()


def _held_need(connection: Connection, account: int) -> Decimal:
    return connection.execute(select(Account.held_need).where(Account.id == account)).scalar_one()


# Always among the examples: a need spent past (its hold is 0, not negative), a hold
# expired, a hold taken back.
OVERSPENT = Row(Decimal("1.00"), Decimal("2.50"), "open", timedelta(0), holding=False)
EXPIRED = Row(Decimal("5"), Decimal("1"), "open", timedelta(minutes=90), holding=True)
TAKEN_BACK = Row(Decimal("5"), Decimal("1"), "open", timedelta(minutes=1), holding=False)


@EXAMPLES
@given(batches=st.lists(rows, min_size=1, max_size=6), expiry=expiries)
@example(batches=[OVERSPENT, EXPIRED, TAKEN_BACK], expiry=timedelta(minutes=30))
def test_refreshed_holds_are_the_rule(
    database: Database, batches: list[Row], expiry: timedelta
) -> None:
    cutoff = NOW - expiry
    with _rolled_back(database) as connection:
        account, pks = _batches(database, connection, batches)
        before = _held_need(connection, account)
        change = database.store(connection).refresh_holds(account, cutoff=cutoff, checked=None)
        expected = [
            hold(r.status, r.need, r.consumed, last_activity_at=NOW - r.quiet_for, cutoff=cutoff)
            for r in batches
        ]
        assert [_held(connection, pk) for pk in pks] == expected
        assert change == sum((e or Decimal(0) for e in expected), Decimal(0)) - before


@EXAMPLES
@given(row=rows, cost=amounts, count=st.integers(min_value=1, max_value=3))
@example(row=TAKEN_BACK, cost=Decimal("7.25"), count=1)
def test_a_recorded_outcome_leaves_the_rule_held(
    database: Database, row: Row, cost: Decimal, count: int
) -> None:
    with _rolled_back(database) as connection:
        account, (pk,) = _batches(database, connection, [row])
        store = database.store(connection)
        name = connection.execute(select(Batch.batch_id).where(Batch.id == pk)).scalar_one()
        batch = store.batch(name)
        assert batch is not None
        before = _held_need(connection, account)
        store.record_activity(batch, Added(count=count, cost=cost), now=NOW)
        expected = hold(row.status, row.need, row.consumed + cost)
        assert _held(connection, pk) == expected
        assert _held_need(connection, account) == before + hold_change(batch.held, expected)
