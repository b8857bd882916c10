"""The audit's ``projected_shortfall``: an open batch whose forecast runs out before it
finishes is reported once, to the webhook like the other kinds, and again only after its
forecast has recovered. Python API against the sandbox, SQLite and PostgreSQL, clock set."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from preflight.api import Preflight
from preflight.sandbox import SandboxServer
from tests.integration.test_audit import START, AppFactory
from tests.integration.test_audit import clock_start as clock_start
from tests.integration.test_audit import make_app as make_app
from tests.integration.test_audit import receiver as receiver
from tests.integration.test_audit import url as url
from tests.support import Clock

KIND = "projected_shortfall"


def shortfalls(outcome: Any) -> list[dict[str, Any]]:
    return [f.to_dict() for f in outcome.findings if f.to_dict()["kind"] == KIND]


def the_issues_example(app: Preflight, sandbox: SandboxServer, clock: Clock) -> None:
    sandbox.set_balance(credits=Decimal(200))
    app.check("B", need="100")
    sandbox.consume(Decimal(160))  # own 40, and 120 that nothing recorded
    for minute in range(1, 5):
        at = (START + timedelta(minutes=minute)).isoformat()
        app.record("B", {"job_id": f"j{minute}", "status": "succeeded", "cost": "10", "at": at})
    clock.advance(minutes=4)


def test_reported_once_until_the_forecast_recovers(
    make_app: AppFactory,
    clock: Clock,
    sandbox: SandboxServer,
    receiver: tuple[str, list[Any]],
) -> None:
    hook, bodies = receiver
    app = make_app(alert_webhook_url=hook, alert_kinds=KIND)
    the_issues_example(app, sandbox, clock)
    [first] = app.audit()
    [finding] = shortfalls(first)
    assert (finding["batches"], finding["amount"]) == (["B"], "50")  # 60 needed, 10 its share
    detail = finding["detail"]
    assert (detail["minutes_to_empty"], detail["minutes_to_finish"]) == ("1.0", "6.0")
    assert (detail["runs_out_first"], detail["decision"]) == (True, "stop")
    assert first.steps["projected_shortfall"] == {"ok": True, "running_out": ["B"], "new": ["B"]}
    # To the webhook like the other kinds.
    [body] = bodies
    [posted] = body["findings"]
    assert (posted["kind"], posted["amount"], posted["batches"]) == (KIND, "50", ["B"])

    clock.advance(minutes=15)
    [still] = app.audit()  # still running out: not again
    assert shortfalls(still) == []
    assert still.steps["projected_shortfall"]["running_out"] == ["B"]

    sandbox.set_balance(credits=Decimal(10_000))  # a top-up: the forecast recovers
    clock.advance(minutes=15)
    [recovered] = app.audit()
    assert shortfalls(recovered) == []
    assert recovered.steps["projected_shortfall"]["running_out"] == []

    sandbox.set_balance(credits=Decimal(20))  # someone spends it all: running out anew
    clock.advance(minutes=15)
    [again] = app.audit()
    assert [f["batches"] for f in shortfalls(again)] == [["B"]]
    assert len(app.findings(kind=KIND)) == 2
    assert len(bodies) == 2


def test_a_batch_on_course_or_finished_is_not_reported(
    make_app: AppFactory, clock: Clock, sandbox: SandboxServer
) -> None:
    app = make_app()
    sandbox.set_balance(credits=Decimal(1000))
    app.check("fine", need="100")
    app.check("done", need="100")
    sandbox.consume(Decimal(20))
    app.record("fine", {"job_id": "j", "status": "succeeded", "cost": "10"})
    app.record("done", {"job_id": "j", "status": "succeeded", "cost": "10"})
    app.finish("done", snapshot=False)
    clock.advance(minutes=2)
    [outcome] = app.audit()
    assert shortfalls(outcome) == []
    assert outcome.steps["projected_shortfall"]["running_out"] == []
