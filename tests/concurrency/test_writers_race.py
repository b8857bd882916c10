"""Every kind of writer of one account's held need at once: checks of new batches,
re-checks, single records, bulk records and a finish, racing on the same batches, now and
past the hold expiry (the checks then release a quiet batch's hold). None deadlocks (a
deadlock would surface as a retried transaction or an error), and afterwards the account's
held need is still the sum of its batches' holds: of its open batches' outstanding need.

Also: two first checks of a brand-new account at once both succeed, on one account row;
and (PostgreSQL) a check waits for a writer of its own account, never for another's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from preflight.api import Preflight
from preflight.domain.verdict import Verdict
from preflight.sandbox import SandboxServer
from tests.concurrency.conftest import new_account, settings_with
from tests.concurrency.support import (
    VendorGate,
    account_rows,
    assert_serialised,
    run_together,
)

OLD = 7  # batches checked before the race, need 10 each; the last one left quiet
#: Past the hold expiry (6 hours): the writers' checks release the quiet batch's hold.
LATER = timedelta(hours=7)


def _held_sum(url: str, account: str) -> Decimal:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            held = connection.execute(
                sa.text(
                    "SELECT b.held FROM batches AS b JOIN accounts AS a ON a.id = b.account_id"
                    " WHERE a.name = :name AND b.held IS NOT NULL"
                ),
                {"name": account},
            ).scalars()
            return sum((Decimal(str(value)) for value in held), Decimal(0))
    finally:
        engine.dispose()


def race_round(url: str, gate: VendorGate, account: str, number: int, *, later: bool) -> None:
    """One round on a new account: OLD batches checked, then every writer at once, now or
    (``later``) past the hold expiry of the batches checked before."""
    old = [f"{account}-old-{j}" for j in range(OLD)]
    settings = settings_with(url, gate, account)
    offset = LATER if later else timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + offset

    def record(facade: Preflight, batch_id: str) -> Any:
        gate.wait()
        return facade.record(
            batch_id,
            {"job_id": f"job-{number}", "status": "succeeded", "cost": "3"},
            snapshot=False,
            account=account,
        )

    def record_many(facade: Preflight, batch_id: str) -> Any:
        gate.wait()
        lines = [f'{{"job_id": "bulk-{k}", "status": "succeeded", "cost": "2"}}' for k in range(3)]
        return facade.record_many(batch_id, lines, account=account)

    def finish(facade: Preflight, batch_id: str) -> Any:
        gate.wait()
        return facade.finish(batch_id, snapshot=False)

    def check(facade: Preflight, batch_id: str) -> Any:
        return facade.check(batch_id, need=10, account=account)  # meets the gate inside

    writers: list[tuple[Callable[[Preflight, str], Any], str]] = [
        *((record, batch_id) for batch_id in old[:4]),
        (record_many, old[0]),
        (record_many, old[4]),
        (check, old[0]),  # re-checks of batches being recorded
        (check, old[1]),
        (finish, old[5]),
        *((check, f"{account}-new-{k}") for k in range(4)),
    ]
    with ExitStack() as stack:
        setup = stack.enter_context(Preflight(settings))
        for batch_id in old:
            setup.check(batch_id, need=10, account=account)
        facades = [stack.enter_context(Preflight(settings, clock=clock)) for _ in writers]
        for facade in facades:
            facade.vendor(account)
        gate.arm(len(writers))
        with capture_logs() as logs:
            run_together(
                [
                    partial(write, facade, batch_id)
                    for (write, batch_id), facade in zip(writers, facades, strict=True)
                ]
            )
        gate.disarm()
    assert [e for e in logs if e["event"] == "database_retry"] == []
    rows = account_rows(url, account)
    # Held: old-0 10 − 3 − 6, old-1..3 10 − 3, old-4 10 − 6, old-5 finished, the new ones
    # 10 each, and the quiet old-6 10 until its hold expires.
    assert rows.held_need == _held_sum(url, account)
    assert rows.held_need == Decimal(1 + 7 * 3 + 4 + 10 * 4 + (0 if later else 10))
    if not later:
        assert rows.held_need == rows.outstanding


@pytest.mark.parametrize("later", [False, True], ids=["now", "past-the-hold-expiry"])
def test_checks_records_and_a_finish_of_one_account_at_once(
    url: str, gate: VendorGate, sandbox: SandboxServer, later: bool
) -> None:
    sandbox.set_balance(credits=Decimal(1000))
    for number in range(2):
        race_round(url, gate, new_account(), number, later=later)


@pytest.mark.parametrize("checks", [2, 5])
def test_first_checks_of_a_new_account_at_once(
    url: str, gate: VendorGate, sandbox: SandboxServer, checks: int
) -> None:
    sandbox.set_balance(credits=Decimal(100))
    account = new_account()
    settings = settings_with(url, gate, account)
    with ExitStack() as stack:
        facades = [stack.enter_context(Preflight(settings)) for _ in range(checks)]
        for facade in facades:
            facade.vendor(account)
        gate.arm(checks)
        results = run_together(
            [
                partial(facade.check, f"{account}-{n}", need=30, account=account)
                for n, facade in enumerate(facades)
            ]
        )
    answered = {result.batch_id: result.verdict for result in results}
    assert_serialised(url, account, answered, batch_prefix=account, held_before=Decimal(0))
    expected = {Verdict.GO: min(checks, 3), Verdict.AT_RISK: max(checks - 3, 0)}
    assert {v: list(answered.values()).count(v) for v in expected} == expected
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                sa.text("SELECT count(*) FROM accounts WHERE name = :name"), {"name": account}
            ).scalar_one()
    finally:
        engine.dispose()
    assert count == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_check_waits_for_its_own_account_only(
    url: str, gate: VendorGate, sandbox: SandboxServer
) -> None:
    """An open transaction holds account A's row, as a writer of A does, and adds 95 to its
    held need: a check of another account goes through meanwhile; a check of A waits for
    it, then decides from what it committed (at risk at a balance of 100, need 10)."""
    sandbox.set_balance(credits=Decimal(100))
    mine, other = new_account(), new_account()
    settings = settings_with(url, gate, mine, other)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        facades = [stack.enter_context(Preflight(settings)) for _ in range(2)]
        for facade, account in zip(facades, (mine, other), strict=True):
            facade.check(f"{account}-first", account=account)  # creates the account
        holder = stack.enter_context(engine.connect())
        holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        holder.execute(
            sa.text("UPDATE accounts SET held_need = held_need + 95 WHERE name = :name"),
            {"name": mine},
        )
        # Another account's check is not held up: it ends while the lock is held.
        (elsewhere,) = run_together(
            [partial(facades[1].check, f"{other}-1", need=10, account=other)], timeout=60
        )
        assert elsewhere.verdict is Verdict.GO
        waiting: list[Any] = []
        waiter = threading.Thread(
            target=lambda: waiting.append(facades[0].check(f"{mine}-1", need=10, account=mine)),
            daemon=True,
        )
        waiter.start()
        with engine.connect() as watcher:
            blocked = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"
            )
            # Waits on the condition itself: a backend blocked by the holder's lock.
            while not watcher.execute(blocked, {"holder": holder_pid}).scalar_one():
                waiter.join(0.01)  # never returns early, unless the check did not wait
                assert waiter.is_alive(), "the check did not wait for its account's writer"
                watcher.commit()
        assert not waiting
        holder.commit()
        waiter.join(60)
    assert [result.verdict for result in waiting] == [Verdict.AT_RISK]
