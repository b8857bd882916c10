"""`Preflight.check` through the Python API, on SQLite and PostgreSQL, against the sandbox vendor.

Verdicts from the outstanding need of the account's other open batches, the hold expiry
(time moved with ``clock=``), rechecks that keep the first snapshot, and exact decimals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from preflight.api import CheckResult, Preflight
from preflight.db.models import Batch, Snapshot
from preflight.db.session import Database
from preflight.domain.verdict import Verdict
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.support import Clock, upgrade_schema

MakePreflight = Callable[..., Preflight]


@pytest.fixture
def url(database_url: str) -> str:
    """SQLite upgrades itself on first use; PostgreSQL needs `preflight db upgrade`."""
    if not database_url.startswith("sqlite"):
        upgrade_schema(database_url)
    return database_url


@pytest.fixture
def make_preflight(url: str, sandbox: SandboxServer) -> Iterator[MakePreflight]:
    opened: list[Preflight] = []

    def make(clock: Callable[[], datetime] | None = None, **environ: str) -> Preflight:
        settings = load_settings(
            {
                "PREFLIGHT_DATABASE_URL": url,
                "PREFLIGHT_VENDOR_URL": sandbox.url,
                "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
                "PREFLIGHT_BACKOFF_BASE": "0.01",
                **environ,
            }
        )
        app = Preflight(settings, clock=clock) if clock else Preflight(settings)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()


def _assert_verdict(result: CheckResult, verdict: Verdict, outstanding: str | None) -> None:
    assert result.verdict is verdict, result.reason
    expected = None if outstanding is None else Decimal(outstanding)
    assert result.outstanding_other == expected, result.reason


# ---------------------------------------------------------------- go and recheck


def test_go_then_rechecks_keep_the_first_snapshot(
    make_preflight: MakePreflight, sandbox: SandboxServer
) -> None:
    with make_preflight() as pf:
        first = pf.check("nightly", need="10", labels={"team": "tts"})
        sandbox.consume(Decimal("50"))
        second = pf.check("nightly", need=Decimal("10"))
        third = pf.check("nightly")

    assert first.go
    _assert_verdict(first, Verdict.GO, "0")
    assert (first.balance, first.need, first.meter) == (Decimal(1200), Decimal(10), "credits")
    assert first.snapshot_kind == "preflight"
    assert (second.snapshot_kind, second.balance) == ("recheck", Decimal(1150))
    assert third.snapshot_kind == "recheck"
    assert third.need == Decimal(10)  # the declared need is kept by a recheck without one

    shown = make_preflight().show("nightly").to_dict()  # a fresh instance reads what was stored
    assert [(s["id"], s["kind"], s["credits"]) for s in shown["snapshots"]] == [
        (first.snapshot_id, "preflight", "1200"),
        (second.snapshot_id, "recheck", "1150"),
        (third.snapshot_id, "recheck", "1150"),
    ]
    assert shown["labels"] == {"team": "tts"}


# ---------------------------------------------------------------- outstanding need


def test_at_risk_counts_what_other_open_batches_still_need(
    make_preflight: MakePreflight,
) -> None:
    with make_preflight() as pf:
        _assert_verdict(pf.check("a", need="1000"), Verdict.GO, "0")
        at_risk = pf.check("b", need="300")
        # a spends 800 of its 1000: it still holds 200; b holds its 300.
        pf.record("a", {"job_id": "j1", "status": "succeeded", "cost": "800"})
        after_spending = pf.check("c", need="300")
        # Without a declared need a batch holds nothing.
        _assert_verdict(pf.check("no-need"), Verdict.GO, "800")
        # Only the others count, never the batch itself.
        own = pf.check("c", need="300")

    _assert_verdict(at_risk, Verdict.AT_RISK, "1000")
    assert at_risk.go  # advisory: at_risk may still be dispatched
    assert at_risk.status == "open"
    _assert_verdict(after_spending, Verdict.GO, "500")
    _assert_verdict(own, Verdict.GO, "500")


def test_a_batch_quiet_for_longer_than_the_hold_expiry_stops_counting(
    make_preflight: MakePreflight, clock: Clock
) -> None:
    with make_preflight(clock, PREFLIGHT_HOLD_EXPIRY="6h") as pf:
        _assert_verdict(pf.check("crashed", need="1000"), Verdict.GO, "0")
        clock.advance(hours=1)
        _assert_verdict(pf.check("second", need="300"), Verdict.AT_RISK, "1000")

        clock.advance(hours=5, minutes=30)  # crashed: quiet 6h30m; second: 5h30m
        _assert_verdict(pf.check("third", need="300"), Verdict.GO, "300")

        # An outcome is activity: the batch holds its outstanding need again.
        pf.record("crashed", {"job_id": "late", "status": "succeeded", "cost": "100"})
        clock.advance(minutes=10)
        _assert_verdict(pf.check("fourth", need="300"), Verdict.AT_RISK, "1500")


def test_finished_and_blocked_batches_do_not_count(
    make_preflight: MakePreflight, sandbox: SandboxServer
) -> None:
    with make_preflight() as pf:
        _assert_verdict(pf.check("done", need="1000"), Verdict.GO, "0")
        pf.record("done", {"job_id": "j1", "status": "succeeded", "cost": "10"})
        pf.finish("done", snapshot=False)
        blocked = pf.check("too-big", need="5000")
        after = pf.check("next", need="300")

    _assert_verdict(blocked, Verdict.INSUFFICIENT, "0")
    assert blocked.status == "blocked"
    assert not blocked.go
    _assert_verdict(after, Verdict.GO, "0")


# ---------------------------------------------------------------- exact decimals


def test_amounts_round_trip_exactly(
    make_preflight: MakePreflight, sandbox: SandboxServer, url: str
) -> None:
    balance = Decimal("1200.000000000001")
    sandbox.set_balance(credits=balance)
    with make_preflight() as pf:
        exact = pf.check("exact", need="1200.000000000001")
        over = pf.check("over", need="1200.000000000002", meter="credits")
        pf.finish("exact", snapshot=False)  # from here on, only "costs" holds a need
        pf.check("costs", need="1")
        for n, cost in enumerate(["0.1", "0.2", "0.000000000001"]):
            pf.record("costs", {"job_id": f"j{n}", "status": "succeeded", "cost": cost})
        # The recorded costs are summed in SQL: a float sum would not leave exactly this.
        summed = pf.check("reader", need="0.5")

    _assert_verdict(exact, Verdict.GO, "0")  # balance == need exactly
    assert format(exact.balance, "f") == "1200.000000000001"
    assert over.verdict is Verdict.INSUFFICIENT
    assert format(summed.outstanding_other, "f") == "0.699999999999"
    assert exact.to_dict()["balance"] == "1200.000000000001"

    shown = make_preflight().show("exact").to_dict()
    assert shown["need"] == "1200.000000000001"
    assert [s["credits"] for s in shown["snapshots"]] == ["1200.000000000001"]

    database = Database.from_url(url)
    try:
        with database.read() as session:
            stored = session.scalars(
                sa.select(Snapshot.credits).join(Batch).where(Batch.batch_id == "exact")
            ).one()
            need = session.scalars(sa.select(Batch.need).where(Batch.batch_id == "over")).one()
    finally:
        database.dispose()
    assert isinstance(stored, Decimal)
    assert format(stored, "f") == "1200.000000000001"
    assert format(need, "f") == "1200.000000000002"


def test_a_balance_equal_to_a_long_need_is_go(
    make_preflight: MakePreflight, sandbox: SandboxServer
) -> None:
    amount = Decimal("123456789012345678901234567890.000000000001")  # 42 significant digits
    sandbox.set_balance(credits=amount)
    with make_preflight() as pf:
        result = pf.check("long", need=amount)

    assert result.balance == amount
    assert result.verdict is Verdict.GO, result.reason


def test_insert_ignoring_conflicts_says_whether_it_inserted(database_url: str) -> None:
    # psycopg 3 reports rowcount -1 for an INSERT: the answer must not come from there.
    from datetime import UTC, datetime

    from preflight.db.migrate import upgrade
    from preflight.db.models import Account
    from preflight.db.repositories import insert_if_absent
    from preflight.db.session import Database

    database = Database.from_url(database_url)
    try:
        upgrade(database.engine)
        values = {"name": "racing", "created_at": datetime.now(UTC)}
        with database.write() as session:
            assert insert_if_absent(session, Account, values) is not None
            assert insert_if_absent(session, Account, values) is None
    finally:
        database.dispose()
