"""The totals each batch keeps (counts, late, consumed cost, hold) and each account's held need
always equal what recounting the stored outcomes gives, on SQLite and PostgreSQL: after single
records, bulk imports with repeats and a conflict, finishes, late outcomes, expired holds, and
writers recording into one batch at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from preflight.api import Preflight
from preflight.db.models import Account, Batch, Outcome
from preflight.domain.verdict import outstanding_need
from preflight.errors import UsageError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.support import Clock, upgrade_schema

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture
def sandbox_options() -> dict[str, Any]:
    return {"credits": Decimal("1000000")}


@pytest.fixture
def clock_start() -> datetime:
    return T0


@pytest.fixture
def settings_env(database_url: str, sandbox: SandboxServer) -> dict[str, str]:
    upgrade_schema(database_url)
    return {
        "PREFLIGHT_DATABASE_URL": database_url,
        "PREFLIGHT_VENDOR_URL": sandbox.url,
        "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        "PREFLIGHT_HOLD_EXPIRY": "6h",
    }


@pytest.fixture
def app(settings_env: dict[str, str], clock: Clock) -> Iterator[Preflight]:
    with Preflight(load_settings(settings_env), clock=clock) as pf:
        yield pf


def _recount(app: Preflight, hold_cutoff: datetime | None = None) -> None:
    """Every batch's kept totals equal a recount; every account's held need, the sum of holds."""
    with app.database.read() as session:
        batches = session.scalars(sa.select(Batch)).all()
        for batch in batches:
            outcomes = session.scalars(sa.select(Outcome).where(Outcome.batch_pk == batch.id)).all()
            late = [o for o in outcomes if batch.finished_at and o.recorded_at > batch.finished_at]
            consumed = sum((o.cost or Decimal(0) for o in outcomes), Decimal(0))
            assert (
                batch.outcome_count,
                batch.failed_count,
                batch.quota_failure_count,
                batch.late_count,
                batch.consumed_cost,
            ) == (
                len(outcomes),
                sum(o.status == "failed" for o in outcomes),
                sum(o.quota_failure for o in outcomes),
                len(late),
                consumed,
            ), batch.batch_id
            if batch.held is not None:
                assert batch.status == "open"
                assert batch.held == outstanding_need(batch.need, consumed)
            elif hold_cutoff is not None:
                # Not holding: finished, blocked, without a need, or quiet since the cutoff.
                assert (
                    batch.status != "open"
                    or batch.need is None
                    or batch.last_activity_at < hold_cutoff
                ), batch.batch_id
        for account in session.scalars(sa.select(Account)).all():
            held = [b.held for b in batches if b.account_id == account.id and b.held is not None]
            assert account.held_need == sum(held, Decimal(0)), account.name


def _lines(*rows: dict[str, Any]) -> list[str]:
    return [json.dumps({"status": "succeeded", **row}) + "\n" for row in rows]


def test_totals_follow_records_imports_finishes_and_late_outcomes(
    app: Preflight, clock: Clock
) -> None:
    app.check("a", need="100")
    app.check("b", need="0.3")
    app.record("a", {"job_id": "j1", "status": "succeeded", "cost": "10.5"})
    app.record("a", {"job_id": "j1", "status": "succeeded", "cost": "10.5"})  # a repeat
    app.record("a", {"job_id": "q1", "status": "failed", "http_status": 402, "cost": "7"})
    app.record("a", {"job_id": "e1", "status": "failed", "http_status": 500, "cost": "1"})
    _recount(app)

    clock.advance(minutes=1)
    app.record_many(
        "b",
        _lines(
            {"job_id": "k1", "cost": "0.1"},
            {"job_id": "k2", "cost": "0.2"},
            {"job_id": "k1", "cost": "0.1"},  # repeated within the file
            {"job_id": "k3", "status": "failed", "http_status": 402},
        ),
    )
    _recount(app)
    with pytest.raises(UsageError, match="line 3"):
        app.record_many(
            "b",
            _lines(
                {"job_id": "k4", "cost": "0.000000000001"},
                {"job_id": "k2", "cost": "0.2"},  # already stored, identical
                {"job_id": "k1", "cost": "9"},  # contradicts what is stored
                {"job_id": "k5", "cost": "1"},  # after the bad line: not kept
            ),
        )
    _recount(app)

    clock.advance(minutes=1)
    app.finish("a", snapshot=False)
    clock.advance(minutes=1)
    app.record("a", {"job_id": "late", "status": "succeeded", "cost": "2"})
    app.record_many("a", _lines({"job_id": "late-2", "cost": "3"}))
    _recount(app)
    assert app.show("a").outcomes.late == 2

    # A batch first seen by an outcome (never checked): no need, no hold.
    app.record("c", {"job_id": "x", "status": "succeeded", "cost": "5"})
    _recount(app)
    # A check that blocks the batch releases its hold; a later go takes it back.
    blocked = app.check("b", need="99999999")
    assert blocked.status == "blocked"
    _recount(app)
    assert app.check("b", need="0.5").status == "open"
    _recount(app)


def test_a_quiet_batch_stops_holding_and_holds_again_when_active(
    app: Preflight, clock: Clock
) -> None:
    app.check("quiet", need="100")
    app.record("quiet", {"job_id": "j", "status": "succeeded", "cost": "30"})
    clock.advance(hours=7)
    assert app.check("other", need="1").outstanding_other == Decimal(0)
    _recount(app, hold_cutoff=clock.now - app.settings.hold_expiry)
    app.record("quiet", {"job_id": "k", "status": "succeeded", "cost": "20"})
    assert app.check("other", need="1").outstanding_other == Decimal(50)
    _recount(app)
    # A check with a longer hold expiry takes back a batch a shorter one let go.
    clock.advance(hours=7)
    assert app.check("other", need="1").outstanding_other == Decimal(0)
    longer = {**app.settings.__dict__, "hold_expiry": app.settings.hold_expiry * 3}
    with Preflight(type(app.settings)(**longer), clock=clock) as patient:
        assert patient.check("other", need="1").outstanding_other == Decimal(50)
    _recount(app)


def test_writers_recording_into_one_batch_at_once_add_up(
    settings_env: dict[str, str], clock: Clock
) -> None:
    with Preflight(load_settings(settings_env), clock=clock) as first:
        first.check("shared", need="1000")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with Preflight(load_settings(settings_env), clock=clock) as pf:
                for i in range(15):
                    pf.record(
                        "shared", {"job_id": f"w{n}-{i}", "status": "succeeded", "cost": "1.5"}
                    )
                    if i == 7:  # checks of this batch and of others, among the records
                        pf.check("shared")
                        pf.check(f"own-{n}", need="5")
                pf.record_many(
                    "shared", _lines(*({"job_id": f"m{n}-{i}", "cost": "2"} for i in range(20)))
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with Preflight(load_settings(settings_env), clock=clock) as pf:
        shown = pf.show("shared")
        assert shown.outcomes.total == 4 * 35
        assert shown.outcomes.cost == Decimal("4") * (15 * Decimal("1.5") + 20 * 2)
        _recount(pf)
        assert pf.check("next", need="1").outstanding_other == (
            Decimal(1000) - shown.outcomes.cost + 4 * 5
        )


@pytest.mark.parametrize(
    "fault", [{"status": 503, "count": -1}, {"kind": "malformed", "count": -1}]
)
def test_a_check_without_a_usable_profile_keeps_the_batch_and_its_hold_right(
    app: Preflight, sandbox: SandboxServer, fault: dict[str, Any]
) -> None:
    app.check("held", need="40")
    sandbox.inject(fault)
    first = app.check("new-while-down", need="10", fail_open=True)  # created without snapshot
    again = app.check("held", need="50", fail_open=True)  # an existing batch, no snapshot
    sandbox.reset()
    assert first.snapshot_id is None
    assert first.verdict.value == "unavailable"
    assert again.snapshot_id is None
    _recount(app)
    assert app.check("other", need="1").outstanding_other == Decimal(60)


def test_the_contradiction_read_survives_a_pooled_connection_that_fails(
    app: Preflight, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = app.database.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads in process: no connection to lose")
    app.check("mine", need="1")
    real = engine.raw_connection
    dbapi = engine.dialect.dbapi
    assert dbapi is not None
    invalidated: list[bool] = []

    class _Driver:
        autocommit = False

        def execute(self, *_args: object) -> object:
            raise dbapi.OperationalError("server closed the connection unexpectedly")

    class _Lost:
        """A pooled connection whose server went away after the checkout."""

        def __init__(self) -> None:
            self.pooled = real()
            self.driver_connection = _Driver()

        def invalidate(self) -> None:
            invalidated.append(True)
            self.pooled.invalidate()

        def close(self) -> None:
            self.pooled.close()

    monkeypatch.setattr(engine, "raw_connection", _Lost)
    gets = sandbox.request_counts.get("GET /api/open/v1/profile", 0)
    # A recheck that contradicts the stored batch is still refused before the vendor call,
    # by the read done again in a read transaction.
    with pytest.raises(UsageError, match="a recheck cannot switch it"):
        app.check("mine", meter="api_quota_remaining")
    assert invalidated == [True]
    assert sandbox.request_counts.get("GET /api/open/v1/profile", 0) == gets
