"""``batches.finish`` and the post-mortem reads: ``show``, ``failures``, ``batches`` and
``findings``."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from preflight.errors import UsageError
from preflight.services import audit, batches, checks
from preflight.services.results import LateOutcome
from preflight.services.runtime import Runtime
from tests.support import CLOCK_START, Clock
from tests.unit.services.fakes import (
    FakeVendor,
    concurrent_failure,
    quota_failure,
    snapshot_kinds,
    succeeded,
)


def minutes(n: float) -> datetime:
    return CLOCK_START + timedelta(minutes=n)


# ---------------------------------------------------------------- finish


@pytest.mark.parametrize(
    ("before_recheck", "topup", "after_recheck", "drop", "foreign", "lower_bound"),
    [
        ("0", None, "0", "100", "0", False),
        ("250", None, "0", "350", "250", False),
        ("250", None, "50.5", "400.5", "300.5", False),
        # A top-up between the readings: that segment says nothing, F is a lower bound.
        ("20", "500", "30", "-350", "30", True),
    ],
)
def test_finish_compares_own_cost_with_the_balance_drop(
    rt: Runtime,
    vendor: FakeVendor,
    clock: Clock,
    before_recheck: str,
    topup: str | None,
    after_recheck: str,
    drop: str,
    foreign: str,
    lower_bound: bool,
) -> None:
    start = checks.check(rt, "b", need="200")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "100", vendor)
    vendor.consume(before_recheck)
    if topup:
        vendor.credits = Decimal(vendor.credits or 0) + Decimal(topup)
    clock.advance(minutes=1)
    between = checks.check(rt, "b")
    vendor.consume(after_recheck)
    clock.advance(minutes=1)
    result = batches.finish(rt, "b")

    summary = result.summary
    assert (summary.meter, summary.own_cost, summary.drop) == (
        "credits",
        Decimal(100),
        Decimal(drop),
    )
    assert summary.foreign is not None
    assert (summary.foreign.amount, summary.foreign.is_lower_bound) == (
        Decimal(foreign),
        lower_bound,
    )
    assert summary.foreign.snapshot_ids[:2] == (start.snapshot_id, between.snapshot_id)
    assert (result.finished_at, result.already_finished, result.snapshot_error) == (
        clock.now,
        False,
        None,
    )
    assert result.to_dict()["balance_drop"] == drop
    assert batches.show(rt, "b").batch.status == "finished"


def test_a_second_finish_answers_the_first_ones_numbers(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    checks.check(rt, "b")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "100", vendor)
    vendor.consume("250")
    clock.advance(minutes=1)
    first = batches.finish(rt, "b")
    clock.advance(minutes=1)
    succeeded(rt, "b", "late", "40", vendor)  # late: not part of the batch's own cost
    again = batches.finish(rt, "b")

    assert (again.already_finished, again.finished_at) == (True, first.finished_at)
    assert again.summary == first.summary
    assert (again.summary.own_cost, again.summary.drop) == (Decimal(100), Decimal(350))
    assert vendor.reads == 2  # the check and the first finish: no new snapshot
    assert snapshot_kinds(rt) == [("preflight", "1000"), ("finish", "650")]


def test_finish_without_a_vendor_reading_still_finishes(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    checks.check(rt, "b")
    clock.advance(minutes=1)
    vendor.fail(500, times=3)
    result = batches.finish(rt, "b")

    assert result.snapshot_error == "vendor unavailable after 3 attempts: HTTP 500"
    assert (result.summary.drop, result.summary.foreign, result.summary.end) == (None, None, None)
    assert batches.show(rt, "b").batch.finished_at == clock.now


def test_finish_of_a_never_checked_batch_has_no_meter(rt: Runtime) -> None:
    succeeded(rt, "B", "j1", "7.25")
    result = batches.finish(rt, "B")
    assert (result.summary.meter, result.summary.own_cost, result.summary.foreign) == (
        None,
        Decimal("7.25"),
        None,
    )
    assert snapshot_kinds(rt) == [("finish", "1000")]


@pytest.mark.parametrize(
    ("verb", "message"),
    [
        (batches.finish, "no batch 'nope': check or record it first"),
        (batches.show, "no batch 'nope'"),
    ],
)
def test_an_unknown_batch_is_a_usage_error(rt: Runtime, verb: Any, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        verb(rt, "nope")
    assert str(raised.value) == message


# ---------------------------------------------------------------- show


def test_show_is_the_whole_post_mortem(rt: Runtime, vendor: FakeVendor, clock: Clock) -> None:
    concurrent_failure(rt, vendor, clock)  # b: j1 succeeded (30), j2 failed 402 at 12:04
    clock.advance(minutes=1)
    batches.finish(rt, "b")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j3", "5", vendor)
    report = batches.show(rt, "b")

    assert (report.batch.status, report.batch.verdict, report.batch.meter) == (
        "finished",
        "go",
        "credits",
    )
    assert (report.batch.need, report.batch.verified) == (Decimal(100), True)
    assert [(s.kind, s.taken_at, s.balance) for s in report.snapshots] == [
        ("preflight", minutes(0), Decimal(1000)),
        ("failure", minutes(4), Decimal(70)),
        ("finish", minutes(5), Decimal(70)),
    ]
    totals = report.outcomes
    assert (totals.total, totals.succeeded, totals.failed, totals.quota_failures) == (3, 2, 1, 1)
    assert (totals.late, totals.cost) == (1, Decimal(35))
    assert report.late_outcomes == [LateOutcome("j3", 1, "succeeded", minutes(6))]
    (failure,) = report.quota_failures
    assert (failure.job_id, failure.failed_at, failure.http_status, failure.tag) == (
        "j2",
        minutes(4),
        402,
        "concurrent_consumption",
    )
    evidence = failure.evidence
    assert (evidence["b0"], evidence["ba"], evidence["own"], evidence["foreign"]) == (
        "1000",
        "70",
        "30",
        "900",
    )
    assert evidence["snapshot_ids"][0] == report.snapshots[0].id
    assert (failure.unattributed, failure.classifier_version) == (Decimal(300), "3")
    assert report.overlapping_batches == ["other"]
    assert report.to_dict()["quota_failures"][0]["attribution"] == [
        {"batch_id": "other", "cost": "600"}
    ]


# ---------------------------------------------------------------- failures


@pytest.fixture
def three_failures(rt: Runtime, vendor: FakeVendor, clock: Clock) -> None:
    """b/j2 concurrent_consumption at 12:04; team-b's tb/t1 inconclusive at 12:10 (never
    checked); low/l1 pre_existing_low_balance at 12:21 (declared 80 against 70)."""
    concurrent_failure(rt, vendor, clock)
    clock.now = minutes(10)
    quota_failure(rt, "tb", "t1", account="team-b")
    clock.now = minutes(20)
    checks.check(rt, "low")
    clock.now = minutes(21)
    quota_failure(rt, "low", "l1", cost="80")


@pytest.mark.usefixtures("three_failures")
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            {},
            [
                ("b", "j2", "concurrent_consumption"),
                ("tb", "t1", "inconclusive"),
                ("low", "l1", "pre_existing_low_balance"),
            ],
        ),
        (
            {"since": minutes(10)},
            [("tb", "t1", "inconclusive"), ("low", "l1", "pre_existing_low_balance")],
        ),
        ({"tag": "concurrent_consumption"}, [("b", "j2", "concurrent_consumption")]),
        ({"tag": "inconclusive"}, [("tb", "t1", "inconclusive")]),
        ({"account": "team-b"}, [("tb", "t1", "inconclusive")]),
        ({"account": "default", "since": minutes(5)}, [("low", "l1", "pre_existing_low_balance")]),
        ({"account": "team-b", "tag": "pre_existing_low_balance"}, []),
        ({"account": "nobody"}, []),
    ],
)
def test_failures_across_batches_with_filters(
    rt: Runtime, filters: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    found = batches.failures(rt, **filters)
    assert [(f.batch_id, f.job_id, f.tag) for f in found] == expected


def test_failures_refuses_an_unknown_tag(rt: Runtime) -> None:
    with pytest.raises(UsageError) as raised:
        batches.failures(rt, tag="bad_luck")
    assert str(raised.value) == (
        "tag: must be one of pre_existing_low_balance, concurrent_consumption, inconclusive, "
        "not 'bad_luck'"
    )


# ---------------------------------------------------------------- batches


@pytest.fixture
def four_batches(rt: Runtime, clock: Clock) -> None:
    """open-1 (12:00, go), blocked-1 (12:01, insufficient), done-1 (12:02, finished at 12:03),
    and team-b's tb-1 (12:04, created by an outcome of 2.5)."""
    checks.check(rt, "open-1", need="10")
    clock.now = minutes(1)
    checks.check(rt, "blocked-1", need="5000")
    clock.now = minutes(2)
    checks.check(rt, "done-1")
    clock.now = minutes(3)
    batches.finish(rt, "done-1")
    clock.now = minutes(4)
    succeeded(rt, "tb-1", "t1", "2.5", account="team-b")


@pytest.mark.usefixtures("four_batches")
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["tb-1", "done-1", "blocked-1", "open-1"]),
        ({"status": "open"}, ["tb-1", "open-1"]),
        ({"status": "blocked"}, ["blocked-1"]),
        ({"status": "finished"}, ["done-1"]),
        ({"account": "default"}, ["done-1", "blocked-1", "open-1"]),
        ({"account": "default", "status": "open"}, ["open-1"]),
        ({"since": minutes(2)}, ["tb-1", "done-1"]),
    ],
)
def test_batches_newest_first_with_filters(
    rt: Runtime, filters: dict[str, Any], expected: list[str]
) -> None:
    listed = batches.batches(rt, **filters)
    assert [row.batch.batch_id for row in listed] == expected
    by_id = {row.batch.batch_id: row for row in batches.batches(rt)}
    assert (by_id["blocked-1"].batch.verdict, by_id["blocked-1"].batch.status) == (
        "insufficient",
        "blocked",
    )
    assert (by_id["tb-1"].batch.account, by_id["tb-1"].outcomes.cost) == ("team-b", Decimal("2.5"))
    assert by_id["open-1"].outcomes.total == 0


def test_batches_refuses_an_unknown_status(rt: Runtime) -> None:
    with pytest.raises(UsageError) as raised:
        batches.batches(rt, status="done")
    assert str(raised.value) == "status: must be one of open, blocked, finished, not 'done'"


# ---------------------------------------------------------------- findings


@pytest.fixture
def two_findings(rt: Runtime, vendor: FakeVendor, vendor_b: FakeVendor, clock: Clock) -> None:
    """An audit of both accounts at 12:00 and at 12:15, with spend nobody recorded in between:
    42.5 on the default account, 7 on team-b."""
    audit.run_audit(rt)
    vendor.consume("42.5")
    vendor_b.consume("7")
    clock.now = minutes(15)
    audit.run_audit(rt)


@pytest.mark.usefixtures("two_findings")
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [("default", "42.5"), ("team-b", "7")]),
        ({"kind": "unexplained_consumption"}, [("default", "42.5"), ("team-b", "7")]),
        ({"kind": "stale_batch"}, []),
        ({"account": "team-b"}, [("team-b", "7")]),
        ({"since": minutes(15)}, [("default", "42.5"), ("team-b", "7")]),
        ({"since": minutes(16)}, []),
    ],
)
def test_findings_with_filters(
    rt: Runtime, filters: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    found = batches.findings(rt, **filters)
    assert [(f.account, str(f.amount)) for f in found] == expected
    assert all(
        (f.kind, f.window_start, f.window_end)
        == ("unexplained_consumption", minutes(0), minutes(15))
        for f in found
    )


def test_findings_refuses_an_unknown_kind(rt: Runtime) -> None:
    with pytest.raises(UsageError) as raised:
        batches.findings(rt, kind="weird")
    assert str(raised.value) == (
        "kind: must be one of unexplained_consumption, low_balance, stale_batch, not 'weird'"
    )
