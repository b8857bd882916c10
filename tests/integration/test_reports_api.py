"""The report's read models through the Python API, on SQLite and PostgreSQL, with the
clock moved by the test: the batch's window, the span of the timeline (one snapshot
before the check, one after the last outcome), other batches' spans, a batch that was
never checked, and an account's period with its burn rate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from preflight.api import Preflight
from preflight.errors import UsageError
from preflight.report.render import render_account, render_batch
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.support import Clock, upgrade_schema


@pytest.fixture
def app(database_url: str, sandbox: SandboxServer, clock: Clock) -> Iterator[Preflight]:
    if not database_url.startswith("sqlite"):
        upgrade_schema(database_url)
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BURN_WINDOW": "1h",
        }
    )
    with Preflight(settings, clock=clock) as opened:
        yield opened


def test_the_batch_timeline_spans_the_check_to_after_the_last_outcome(
    app: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal("500"))
    before = app.profile()  # a manual snapshot before the check
    clock.advance(minutes=5)
    app.check("B", need="100")
    checked = clock.now
    clock.advance(minutes=1)
    app.check("other", need="10")
    clock.advance(minutes=1)
    sandbox.consume(Decimal("40"), "credits")
    app.record("B", {"job_id": "j1", "status": "succeeded", "cost": "40"})
    clock.advance(minutes=1)
    app.finish("B")
    finished = clock.now
    clock.advance(minutes=10)
    after = app.profile()
    clock.advance(minutes=10)
    app.profile()  # later than the first one after the batch: not in the span

    data = app.report("B")
    assert (data.window_start, data.window_end) == (checked, finished)
    ids = [s.id for s in data.timeline]
    assert ids[0] == before.snapshot_id
    assert ids[-1] == after.snapshot_id
    assert (data.start, data.end) == (before.taken_at, after.taken_at)
    assert len(ids) == 5  # manual, B's check, other's check, B's finish, manual
    assert [(o.batch_id, o.status, o.end) for o in data.others] == [
        ("other", "open", checked + timedelta(minutes=1))
    ]
    assert data.split is not None
    assert (data.split.drop, data.split.own, data.split.foreign) == (40, 40, 0)
    assert data.meter == "credits"
    json.dumps(data.to_dict())
    assert 'id="snapshot-' in render_batch(data)


def test_a_batch_never_checked_has_no_split(app: Preflight, clock: Clock) -> None:
    app.record("typo", {"job_id": "j1", "status": "failed", "http_status": 402})
    data = app.report("typo")
    assert data.split is None
    assert [f.tag for f in data.report.quota_failures] == ["inconclusive"]
    assert "No split: the batch has no preflight snapshot" in render_batch(data)


def test_unknown_batch_and_account(app: Preflight) -> None:
    with pytest.raises(UsageError, match="no batch 'nope'"):
        app.report("nope")
    with pytest.raises(UsageError, match="no account 'nobody'"):
        app.account_report("nobody", app.runtime.clock() - timedelta(days=1))


def test_the_account_report_over_a_period_with_burn_rate_and_runway(
    app: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal("1000"))
    app.profile()
    start = clock.now
    for _ in range(4):  # 100 per 20 minutes: 300 an hour
        clock.advance(minutes=20)
        sandbox.consume(Decimal("100"), "credits")
        app.profile()
    app.check("B", need="10")
    data = app.account_report(None, start - timedelta(minutes=1))
    assert data.account == "default"
    assert len(data.timeline) == 6
    assert data.burn is not None
    assert (data.burn.balance, data.burn.consumed, data.burn.per_hour) == (
        Decimal(600),
        Decimal(300),
        Decimal("300.000000"),
    )
    assert data.burn.runway_hours == Decimal("2.00")
    assert [b.batch_id for b in data.batches] == ["B"]
    json.dumps(data.to_dict())
    html = render_account(data)
    assert "runway (hours)" in html
    assert ">2.00<" in html
