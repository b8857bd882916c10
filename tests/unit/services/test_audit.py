"""``audit.run_audit``: one claimed run per account and period, ``force``, the next period,
unexplained consumption with the exact amount, a rejected token, reclassification."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from preflight.db.models import AuditClaim, AuditRun
from preflight.services import audit, checks, outcomes
from preflight.services.audit import ALREADY_AUDITED, AUTH_SKIP
from preflight.services.results import AuditOutcome
from preflight.services.runtime import Runtime
from tests.support import CLOCK_START, Clock
from tests.unit.services.fakes import FakeVendor, snapshot_row, succeeded

STEPS = [
    "snapshot",
    "consumption",
    "low_balance",
    "stale_batches",
    "projected_shortfall",
    "reclassify",
    "retention",
]
NEXT_PERIOD = CLOCK_START + timedelta(minutes=15)


def audit_default(rt: Runtime, *, force: bool = False) -> AuditOutcome:
    (outcome,) = audit.run_audit(rt, account="default", force=force)
    return outcome


def runs(rt: Runtime) -> list[tuple[int | None, str]]:
    """Every audit run as (claim id, status), in order."""
    with rt.database.read() as session:
        return [
            (claim_id, status)
            for claim_id, status in session.execute(
                sa.select(AuditRun.claim_id, AuditRun.status).order_by(AuditRun.id)
            )
        ]


def claims(rt: Runtime) -> list[str]:
    with rt.database.read() as session:
        return list(session.scalars(sa.select(AuditClaim.status).order_by(AuditClaim.id)))


def test_a_first_run_claims_the_period_and_takes_an_audit_snapshot(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    clock.advance(minutes=3)
    outcome = audit_default(rt)

    assert (outcome.account, outcome.period_start, outcome.skipped, outcome.status) == (
        "default",
        CLOCK_START,
        False,
        "ok",
    )
    assert list(outcome.steps) == STEPS
    assert all(step["ok"] for step in outcome.steps.values())
    assert outcome.findings == ()
    snapshot = snapshot_row(rt, outcome.snapshot_id)
    assert (snapshot.kind, snapshot.credits, snapshot.taken_at) == (
        "audit",
        Decimal(1000),
        clock.now,
    )
    assert claims(rt) == ["done"]
    assert runs(rt)[0][1] == "ok"
    assert runs(rt)[0][0] is not None  # the run belongs to the claim


def test_a_second_run_in_the_period_is_skipped_unless_forced(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    audit_default(rt)
    clock.advance(minutes=14, seconds=59)
    again = audit_default(rt)

    assert (again.skipped, again.reason, again.audit_run_id, again.snapshot_id) == (
        True,
        ALREADY_AUDITED,
        None,
        None,
    )
    assert vendor.reads == 1

    forced = audit_default(rt, force=True)
    assert (forced.skipped, forced.status, forced.period_start) == (False, "ok", CLOCK_START)
    assert snapshot_row(rt, forced.snapshot_id).kind == "audit"
    assert vendor.reads == 2
    assert [claim for claim, _ in runs(rt)][1] is None  # a forced run claims nothing
    assert claims(rt) == ["done"]


def test_the_next_period_runs_again(rt: Runtime, vendor: FakeVendor, clock: Clock) -> None:
    first = audit_default(rt)
    clock.now = NEXT_PERIOD
    second = audit_default(rt)

    assert (second.skipped, second.period_start, second.status) == (False, NEXT_PERIOD, "ok")
    assert second.snapshot_id != first.snapshot_id
    assert claims(rt) == ["done", "done"]
    assert second.steps["consumption"]["windows"] == 1


def test_spend_nobody_recorded_between_two_audits_is_a_finding(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    audit_default(rt)
    clock.advance(minutes=1)
    start = checks.check(rt, "b", need="100")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "100", vendor)
    vendor.consume("37.5")  # nobody records this
    clock.now = NEXT_PERIOD
    outcome = audit_default(rt)

    (finding,) = outcome.findings
    assert (finding.kind, finding.account, finding.amount, finding.batches) == (
        "unexplained_consumption",
        "default",
        Decimal("37.5"),
        ("b",),
    )
    assert (finding.window_start, finding.window_end) == (
        CLOCK_START + timedelta(minutes=1),
        clock.now,
    )
    assert finding.detail["drop"] == "137.5"
    assert finding.detail["recorded_cost"] == "100"
    assert finding.detail["snapshot_ids"] == [start.snapshot_id, outcome.snapshot_id]
    assert finding.audit_run_id == outcome.audit_run_id


def test_a_rejected_token_is_not_tried_again_until_it_changes(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    vendor.token = "rotated"
    failed = audit_default(rt)
    assert (failed.status, failed.snapshot_id, failed.steps["snapshot"]["auth_failed"]) == (
        "auth_failed",
        None,
        True,
    )
    assert list(failed.steps) == ["snapshot"]

    clock.now = NEXT_PERIOD
    skipped = audit_default(rt)
    assert (skipped.skipped, skipped.status, skipped.reason) == (True, "skipped", AUTH_SKIP)
    assert vendor.reads == 1


def test_every_account_with_a_token_is_audited(
    rt: Runtime, vendor: FakeVendor, vendor_b: FakeVendor
) -> None:
    audited = audit.run_audit(rt)
    assert [(o.account, o.status) for o in audited] == [("default", "ok"), ("team-b", "ok")]
    assert snapshot_row(rt, audited[1].snapshot_id).credits == Decimal(500)
    assert (vendor.reads, vendor_b.reads) == (1, 1)


def test_an_inconclusive_failure_is_reclassified_once_an_audit_measures_it(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    checks.check(rt, "b", need="100")
    clock.advance(minutes=1)
    line = '{"job_id": "j1", "status": "failed", "http_status": 402, "cost": "20"}'
    assert outcomes.record_many(rt, "b", [line]).tags == {"inconclusive": 1}
    vendor.consume("990")  # others left 10: less than the job's 20
    clock.advance(minutes=2)
    outcome = audit_default(rt)

    assert outcome.steps["reclassify"] == {
        "ok": True,
        "batches": 1,
        "tags": {"concurrent_consumption": 1},
    }
