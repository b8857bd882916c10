"""The examples that made the post-mortem numbers exact (a quota failure consumed nothing),
as tables on the services: finish and the audit's recorded spend (example 3), and the batch
lifecycle (example 7). The classifier's own examples are tables in tests/unit/test_classify.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from preflight.services import audit, batches, checks, outcomes
from preflight.services.runtime import Runtime
from tests.support import Clock
from tests.unit.services.fakes import FakeVendor, quota_failure, snapshot_kinds, succeeded


@pytest.mark.parametrize(
    ("declared", "own", "foreign"),
    [
        # The 402 declares 80 as `cost`, as `expected_cost`, or nothing: always own 250.
        ({"cost": "80"}, "250", "320"),
        ({"expected_cost": "80"}, "250", "320"),
        ({}, "250", "320"),
    ],
)
def test_finish_counts_consumed_cost_only(
    rt: Runtime,
    vendor: FakeVendor,
    clock: Clock,
    declared: dict[str, str],
    own: str,
    foreign: str,
) -> None:
    checks.check(rt, "b", need="400")  # credits 1000
    for n in range(5):
        clock.advance(seconds=10)
        succeeded(rt, "b", f"j{n}", "50", vendor)
    clock.advance(seconds=10)
    quota_failure(rt, "b", "j5", **declared)
    vendor.consume("320")  # nobody records it
    clock.advance(seconds=10)

    finished = batches.finish(rt, "b").to_dict()
    assert (finished["own_cost"], finished["foreign_consumption"]) == (own, foreign)
    assert (finished["preflight_balance"], finished["finish_balance"]) == ("1000", "430")
    shown = batches.show(rt, "b")
    assert shown.outcomes.cost == Decimal(own)


def test_the_audit_counts_no_402_cost_as_recorded_spend(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    (first,) = audit.run_audit(rt, account="default")
    assert first.findings == ()
    clock.advance(minutes=1)
    checks.check(rt, "b", need="100")
    vendor.consume("700")  # unrecorded
    clock.advance(minutes=1)
    quota_failure(rt, "b", "j1", cost="300")  # declared, never consumed
    clock.advance(minutes=1)
    (forced,) = audit.run_audit(rt, account="default", force=True)
    found = [f.amount for f in forced.findings if f.kind == "unexplained_consumption"]
    assert found == [Decimal(700)]


def test_lifecycle_never_checked_late_and_finished_twice(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    typo = succeeded(rt, "nightyl", "j1", "1")
    assert typo.created
    assert typo.warnings[0].startswith("batch 'nightyl' was never checked")

    checks.check(rt, "b", need="10")  # credits 1000
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "7", vendor)
    clock.advance(minutes=1)
    first = batches.finish(rt, "b")
    taken = len(snapshot_kinds(rt))
    vendor.credits = Decimal("1893")  # topped up after the batch
    clock.advance(minutes=1)

    second = batches.finish(rt, "b")
    assert second.already_finished
    assert (second.finished_at, second.summary) == (first.finished_at, first.summary)
    assert second.to_dict()["balance_drop"] == "7"  # not 100 -> 993 (drop -893)
    assert len(snapshot_kinds(rt)) == taken  # no new snapshot

    late = outcomes.record(rt, "b", {"job_id": "j2", "status": "succeeded", "cost": "3"})
    assert late.warnings == ("batch 'b' is finished: the outcome is stored and shown as late",)
    shown = batches.show(rt, "b")
    assert (shown.outcomes.late, [o.job_id for o in shown.late_outcomes]) == (1, ["j2"])
    assert batches.finish(rt, "b").summary.own_cost == Decimal(7)  # late is not counted
