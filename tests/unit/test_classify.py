"""The classifier as tables of hand-computed cases (design.md, "Classifying a quota failure")."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from preflight.domain.classify import (
    CLASSIFIER_VERSION,
    Attributed,
    QuotaFailure,
    Reading,
    Spend,
    Tag,
    classify,
)
from preflight.domain.outcome import OutcomeStatus, build_outcome
from preflight.errors import UsageError

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def snap(sid: int, minutes: float, balance: str | None, kind: str = "audit") -> Reading:
    return Reading(sid, at(minutes), None if balance is None else D(balance), kind)


def own(minutes: float, cost: str | None, ok: bool = True) -> Spend:
    return Spend("B", at(minutes), None if cost is None else D(cost), ok)


def other(batch: str, minutes: float, cost: str) -> Spend:
    return Spend(batch, at(minutes), D(cost))


def recorded(batch: str, minutes: float, **fields: object) -> Spend:
    """An outcome as a worker records it, through the same validation as every input:
    a quota failure that declares a cost consumed nothing."""
    item = build_outcome({"job_id": f"j{minutes}", **fields})
    return Spend(batch, at(minutes), item.cost, item.status is OutcomeStatus.SUCCEEDED)


def quota_402(batch: str, minutes: float, **fields: object) -> Spend:
    return recorded(batch, minutes, status="failed", http_status=402, **fields)


def declared(**fields: object) -> D | None:
    """The failed job's expected cost, as the stored quota failure carries it."""
    return build_outcome(
        {"job_id": "failed", "status": "failed", "http_status": 402, **fields}
    ).expected_cost


PREFLIGHT = snap(1, 0, "100", "preflight")
CHECKED_AT = "2026-11-24T12:00:00+00:00"  # t0 as the evidence shows it


def failure(**overrides: object) -> QuotaFailure:
    values: dict[str, object] = {
        "batch_id": "B",
        "failed_at": at(10),
        "preflight": PREFLIGHT,
        "timeline": [],
        "own": [],
        "others": [],
        "meter": "credits",
    }
    values.update(overrides)
    return QuotaFailure(**values)  # type: ignore[arg-type]


LIVE_1 = snap(9, 10.5, "50", "failure")
LIVE_4 = snap(9, 10.5, "75.358", "failure")

CASES = {
    # Own jobs alone exhaust the balance: 100 at the check, 10 jobs of 10, the 11th fails.
    "own jobs exhaust the balance": (
        failure(
            own=[own(i, "10") for i in range(1, 11)],
            timeline=[snap(2, 10.5, "0", "failure")],
        ),
        Tag.PRE_EXISTING_LOW_BALANCE,
        {
            "b0": "100",
            "own": "100",
            "expected_cost": "10",
            "expected_cost_source": "mean_succeeded",
            "foreign": "0",
        },
        [],
        "0",
    ),
    # An unrecorded process spends 70 between the check and the failure: all unattributed.
    "unrecorded spend": (
        failure(
            own=[own(1, "10"), own(2, "10")],
            timeline=[snap(2, 10.5, "10", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"b0": "100", "ba": "10", "own": "20", "expected_cost": "10", "foreign": "70"},
        [],
        "70",
    ),
    # Another recorded batch spends 70: attributed to it with its exact cost.
    "other recorded batch": (
        failure(
            own=[own(1, "10"), own(2, "10")],
            others=[other("A", 3, "30"), other("A", 4, "40"), other("C", 30, "99")],
            timeline=[snap(2, 10.5, "10", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "70"},
        [Attributed("A", D("70"))],
        "0",
    ),
    # Largest first, and the rest unattributed.
    "two batches and an unrecorded rest": (
        failure(
            own=[own(1, "10")],
            others=[other("small", 2, "5"), other("big", 3, "50")],
            timeline=[snap(2, 10.5, "5", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "85"},
        [Attributed("big", D("50")), Attributed("small", D("5"))],
        "30",
    ),
    # Both: the check's 30 could not cover 4 jobs of 10, and others spent 15 too.
    "low balance and foreign spend": (
        failure(
            preflight=snap(1, 0, "30", "preflight"),
            own=[own(1, "10"), own(2, "10"), own(3, "10")],
            others=[other("A", 2.5, "15")],
            timeline=[snap(2, 10.5, "0", "failure")],
        ),
        Tag.PRE_EXISTING_LOW_BALANCE,
        {"b0": "30", "own": "30", "expected_cost": "10", "foreign": "0"},
        [Attributed("A", D("15"))],
        "0",
    ),
    "no preflight snapshot": (
        failure(preflight=None, timeline=[snap(2, 10.5, "0")]),
        Tag.INCONCLUSIVE,
        {"b0": None},
        [],
        None,
    ),
    "meter absent at the check": (
        failure(preflight=snap(1, 0, None, "preflight")),
        Tag.INCONCLUSIVE,
        {"b0": None, "t0": CHECKED_AT, "snapshot_ids": [1]},
        [],
        None,
    ),
    # Recorded late, no failure snapshot: the next audit snapshot in the window serves.
    "late failure uses the audit timeline": (
        failure(
            own=[own(1, "10")],
            timeline=[snap(2, 40, "20", "audit"), snap(3, 200, "0", "audit")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "t0": CHECKED_AT,
            "ba": "20",
            "ta": "2026-11-24T12:40:00+00:00",
            "foreign": "70",
            "before_failure": False,
        },
        [],
        "70",
    ),
    # Only a snapshot outside the staleness window, none before the failure: no evidence.
    "later snapshot too stale": (
        failure(own=[own(1, "10")], timeline=[snap(2, 200, "0", "audit")]),
        Tag.INCONCLUSIVE,
        {"t0": CHECKED_AT, "ba": None, "foreign": None, "snapshot_ids": [1]},
        [],
        None,
    ),
    # ---- which snapshot measures, and what own() covers ----
    # The FIRST snapshot at or after tf within the window measures, not a later one in it:
    # 100 → 60 at 20 min (own 10, foreign 30) → 30 at 40 min (A spends 30 in between).
    "the first snapshot in the window measures, not a later one": (
        failure(
            own=[own(1, "10")],
            others=[other("A", 30, "30")],
            timeline=[snap(2, 20, "60"), snap(3, 40, "30")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "ba": "60",
            "ta": "2026-11-24T12:20:00+00:00",
            "foreign": "30",
            "before_failure": False,
            "foreign_is_lower_bound": False,
            "snapshot_ids": [1, 2],
        },
        [],
        "30",
    ),
    # own(t0, tf] ends at the failure: a job of the batch that succeeded after it (40 at
    # 12 min, before the measuring snapshot) is not in the pre-existing test. 100 covered
    # own 40 + expected 30; counting the later job (80 + 30 > 100) would say the balance
    # was already too low. The segment walk still takes both own jobs out of F.
    "own spend after the failure is not in own(t0, tf]": (
        failure(
            own=[own(1, "40"), own(12, "40")],
            declared_cost=D("30"),
            timeline=[snap(2, 20, "5")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"b0": "100", "own": "40", "expected_cost": "30", "ba": "5", "foreign": "15"},
        [],
        "15",
    ),
    # Nothing in [tf, tf + window]: the latest snapshot in (t0, tf] measures, and F is a
    # lower bound, although staler snapshots came later (here a later 402's live snapshot,
    # 71 min after this failure). Those say nothing about this failure.
    "no snapshot in the window: the one before the failure measures, stale ones or not": (
        failure(
            own=[own(1, "10"), own(80, "0", ok=False)],
            timeline=[snap(2, 5, "60"), snap(3, 81, "20", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "ba": "60",
            "ta": "2026-11-24T12:05:00+00:00",
            "foreign": "30",
            "before_failure": True,
            "foreign_is_lower_bound": True,
            "snapshot_ids": [1, 2],
        },
        [],
        "30",
    ),
    # A top-up between the check and the failure is never negative consumption:
    # 100 → 90 (own 10) → topped up to 190 → 20 after the failure (own 10, foreign 160).
    "top-up between check and failure": (
        failure(
            own=[own(1, "10"), own(6, "10")],
            timeline=[snap(2, 5, "90"), snap(3, 5.5, "190"), snap(4, 10.5, "20", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "160", "foreign_is_lower_bound": True, "topup": True, "own": "20"},
        [],
        "160",
    ),
    # A flat balance is not a top-up: 100 → 100 → 60 (others spent 30, own 10).
    "flat balance is no top-up": (
        failure(
            own=[own(6, "10")],
            timeline=[snap(2, 5, "100"), snap(3, 10.5, "60", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "30", "foreign_is_lower_bound": False, "topup": False, "topups": []},
        [],
        "30",
    ),
    # Own cost the vendor billed after the measuring snapshot: the segment's drop is
    # smaller than the own cost in it, which is not negative foreign spend.
    "own cost billed late is not negative spend": (
        failure(own=[own(6, "10")], timeline=[snap(2, 5, "70"), snap(3, 10.5, "70", "failure")]),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "30", "foreign_before_failure": "30", "topup": False},
        [],
        "30",
    ),
    "own cost billed late, nothing else seen": (
        failure(own=[own(6, "10")], timeline=[snap(3, 10.5, "100", "failure")]),
        Tag.INCONCLUSIVE,
        {"foreign": "0"},
        [],
        "0",
    ),
    # No snapshot at or after the failure: the latest one before it measures, a lower bound.
    "only a snapshot before the failure": (
        failure(own=[own(1, "10")], timeline=[snap(2, 3, "80"), snap(3, 8, "50")]),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "ba": "50",
            "foreign": "40",
            "before_failure": True,
            "foreign_is_lower_bound": True,
            "foreign_before_failure": "40",
        },
        [],
        "40",
    ),
    # Others recorded more than the balance shows (recorded late, or vendor rounding):
    # the ranked list stays, nothing is unattributed, and the evidence says so.
    "attributed exceeds measured": (
        failure(
            own=[own(1, "10")],
            others=[other("A", 2, "50")],
            timeline=[snap(2, 10.5, "60", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "30", "attributed_exceeds_measured": True},
        [Attributed("A", D("50"))],
        "0",
    ),
    # Enough at the check, no foreign spend seen: nothing explains the 402.
    "no foreign spend seen": (
        failure(own=[own(1, "10")], timeline=[snap(2, 10.5, "90")]),
        Tag.INCONCLUSIVE,
        {"foreign": "0"},
        [],
        "0",
    ),
    "own costs unknown": (
        failure(own=[own(1, None)], timeline=[snap(2, 10.5, "0")]),
        Tag.INCONCLUSIVE,
        {"own": "0", "expected_cost": "0", "expected_cost_source": "unknown"},
        [],
        "100",
    ),
    # The failed job declared its cost: 95 + 10 > 100 although the mean would be 5.
    "declared cost of the failed job": (
        failure(
            own=[own(i, "5") for i in range(1, 20)],
            failed_at=at(20),
            declared_cost=D("10"),
            timeline=[snap(2, 20.5, "5", "failure")],
        ),
        Tag.PRE_EXISTING_LOW_BALANCE,
        {"own": "95", "expected_cost": "10", "expected_cost_source": "declared"},
        [],
        "0",
    ),
    # ---- boundaries: which instant belongs to which interval ----
    # The check's instant belongs to the check: a job recorded then is already in b0, so
    # neither own(t0, tf] nor an unknown cost of the batch.
    "jobs recorded at the check instant are before it": (
        failure(own=[own(0, "10"), own(0, None)], timeline=[snap(2, 10.5, "60", "failure")]),
        Tag.CONCURRENT_CONSUMPTION,
        {"own": "0", "expected_cost": "10", "foreign": "40"},
        [],
        "40",
    ),
    # The failure's instant belongs to the failure: a job recorded then with no cost is
    # an unknown own cost.
    "a job without cost at the failure instant is unknown": (
        failure(own=[own(10, None)], timeline=[snap(2, 10.5, "60", "failure")]),
        Tag.INCONCLUSIVE,
        {"own": "0", "foreign": "40"},
        [],
        "40",
    ),
    # Only a failure strictly before t0 has no preflight evidence.
    "a failure at the check instant is after it": (
        failure(failed_at=at(0), timeline=[snap(2, 0.5, "60", "failure")]),
        Tag.CONCURRENT_CONSUMPTION,
        {"b0": "100", "foreign": "40", "before_failure": False},
        [],
        "40",
    ),
    # Other snapshots of the check's instant (and the preflight snapshot itself, which the
    # account's timeline holds) are not after the check: no segment, no bound.
    "snapshots taken with the check are not after it": (
        failure(
            own=[own(1, "10")],
            timeline=[PREFLIGHT, snap(2, 0, "100"), snap(3, 10.5, "60", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "30", "foreign_before_failure": None, "snapshot_ids": [1, 3]},
        [],
        "30",
    ),
    # ... nor can they measure a failure that nothing after the check measured.
    "snapshots at or before the check measure nothing": (
        failure(timeline=[snap(2, -5, "120"), snap(3, 0, "100")]),
        Tag.INCONCLUSIVE,
        {"ba": None, "foreign": None},
        [],
        None,
    ),
    # A snapshot at the failure's instant is at or after it: it measures, and it is not a
    # reading before the failure.
    "a snapshot at the failure instant measures it": (
        failure(own=[own(1, "10")], timeline=[snap(2, 10, "60")]),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "ta": "2026-11-24T12:10:00+00:00",
            "foreign": "30",
            "before_failure": False,
            "foreign_before_failure": None,
        },
        [],
        "30",
    ),
    # The staleness window is closed: a snapshot exactly one hour after the failure measures.
    "a snapshot at the end of the staleness window measures": (
        failure(own=[own(1, "10")], timeline=[snap(2, 70, "60")]),
        Tag.CONCURRENT_CONSUMPTION,
        {"ta": "2026-11-24T13:10:00+00:00", "foreign": "30", "before_failure": False},
        [],
        "30",
    ),
    # The horizon is closed too: a job of the batch recorded exactly at the end of the
    # window counts in the mean c (10 and 30: 20), one after it would not.
    "a job at the end of the window counts in the mean cost": (
        failure(own=[own(1, "10"), own(70, "30")], timeline=[snap(2, 20, "50")]),
        Tag.CONCURRENT_CONSUMPTION,
        {"own": "10", "expected_cost": "20", "expected_cost_source": "mean_succeeded"},
        [],
        "40",
    ),
    # Attribution covers (t0, ta]: A's spend at the check is already in b0, C's at the
    # measuring snapshot is in ba.
    "attribution covers (t0, ta]": (
        failure(
            others=[other("A", 0, "30"), other("C", 10.5, "25")],
            timeline=[snap(2, 10.5, "45", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "55"},
        [Attributed("C", D("25"))],
        "30",
    ),
    # Equal costs rank by batch id, whatever order they were recorded in: reruns agree.
    "equal costs rank by batch id": (
        failure(
            others=[other("Z", 1, "20"), other("A", 2, "20")],
            timeline=[snap(2, 10.5, "60", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"foreign": "40"},
        [Attributed("A", D("20")), Attributed("Z", D("20"))],
        "0",
    ),
    # ---- the examples of the issue that made the numbers exact ----
    # 1. 1000 at the check; two jobs of 100; others spend 750 (never recorded); a 402
    #    recorded with cost 100: own 200 (not 300), c 100, F 750, all unattributed.
    "ex1: a 402's declared cost is its expected cost": (
        failure(
            preflight=snap(1, 0, "1000", "preflight"),
            own=[
                recorded("B", 1, status="succeeded", cost="100"),
                recorded("B", 2, status="succeeded", cost="100"),
                quota_402("B", 10, cost="100"),
            ],
            declared_cost=declared(cost="100"),
            live=snap(9, 10.5, "50", "failure"),
            timeline=[snap(9, 10.5, "50", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "b0": "1000",
            "ba": "50",
            "own": "200",
            "expected_cost": "100",
            "expected_cost_source": "declared",
            "foreign": "750",
            "foreign_before_failure": None,
        },
        [],
        "750",
    ),
    # 2. An earlier 402 of the same batch declared its cost: it spent nothing, so the
    #    next 402 is concurrent consumption (250 ≥ own 100 + c 100), F 100.
    "ex2: an earlier 402 is not own spend": (
        failure(
            preflight=snap(1, 0, "250", "preflight"),
            own=[
                recorded("B", 1, status="succeeded", cost="100"),
                quota_402("B", 2, cost="100"),
                quota_402("B", 10, cost="100"),
            ],
            declared_cost=declared(cost="100"),
            live=snap(9, 10.5, "50", "failure"),
            timeline=[snap(9, 10.5, "50", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"b0": "250", "ba": "50", "own": "100", "expected_cost": "100", "foreign": "100"},
        [],
        "100",
    ),
    # 2'. ... and another batch's 402 that declared a cost is never attributed spend.
    "ex2: another batch's 402 spent nothing": (
        failure(
            preflight=snap(1, 0, "500", "preflight"),
            others=[quota_402("X", 1, cost="100")],
            declared_cost=declared(expected_cost="50"),
            live=snap(9, 10.5, "20", "failure"),
            timeline=[snap(9, 10.5, "20", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"b0": "500", "ba": "20", "own": "0", "expected_cost": "50", "foreign": "480"},
        [],
        "480",
    ),
    # 4. Check; another batch spends 58.378 (recorded); a manual snapshot; an unrecorded
    #    consumer spends 266.264; a 402 recorded live. The live snapshot measures:
    #    F 324.642, of which 266.264 unattributed; the manual one bounds what came before.
    "ex4: the live failure snapshot measures": (
        failure(
            preflight=snap(1, 0, "400", "preflight"),
            others=[other("Y", 2, "58.378")],
            declared_cost=D("100"),
            live=LIVE_4,
            timeline=[snap(2, 4, "341.622", "manual"), LIVE_4],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {
            "b0": "400",
            "ba": "75.358",
            "own": "0",
            "expected_cost": "100",
            "foreign": "324.642",
            "foreign_before_failure": "58.378",
            "before_failure": False,
            "snapshot_ids": [1, 2, 9],
        },
        [Attributed("Y", D("58.378"))],
        "266.264",
    ),
    # The live snapshot measures even when --at put the failure beyond the staleness
    # window before it was recorded.
    "live snapshot measures a failure recorded late": (
        failure(
            own=[own(1, "10")],
            failed_at=at(10),
            live=snap(9, 300, "20", "failure"),
            timeline=[snap(9, 300, "20", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"ba": "20", "foreign": "70"},
        [],
        "70",
    ),
    # ... and its live snapshot ends the failure's horizon: the batch's job of 30 that
    # succeeded after the window but before the 402 was recorded counts in the mean c.
    "a live snapshot taken late extends the horizon": (
        failure(
            own=[own(1, "10"), own(100, "30")],
            others=[other("A", 200, "15")],
            live=snap(9, 300, "45", "failure"),
            timeline=[snap(9, 300, "45", "failure")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"own": "10", "expected_cost": "20", "expected_cost_source": "mean_succeeded"},
        [Attributed("A", D("15"))],
        "0",
    ),
    # 5. A 402 recorded ten minutes before the batch's check: no preflight evidence.
    "ex5: failure before the check": (
        failure(
            failed_at=at(-10),
            others=[other("A", 2, "60")],
            timeline=[snap(2, 5, "20")],
        ),
        Tag.INCONCLUSIVE,
        {"b0": None, "t0": CHECKED_AT, "foreign": None, "snapshot_ids": [1]},
        [],
        None,
    ),
    # 6. credits dropped from the profile before the failure snapshot.
    "ex6: meter absent from the measuring snapshot": (
        failure(
            own=[own(1, "10")],
            live=snap(7, 10.5, None, "failure"),
            timeline=[snap(7, 10.5, None, "failure")],
        ),
        Tag.INCONCLUSIVE,
        {"b0": "100", "ba": None, "foreign": None},
        [],
        None,
    ),
}


CASES["low balance, and others spent too"] = (
    # 35 at the check could not cover 3 jobs of 10 + the failed job's 10; others spent 5.
    failure(
        preflight=snap(1, 0, "35", "preflight"),
        own=[own(1, "10"), own(2, "10"), own(3, "10")],
        declared_cost=D("10"),
        timeline=[snap(2, 10.5, "0", "failure")],
    ),
    Tag.PRE_EXISTING_LOW_BALANCE,
    {"b0": "35", "own": "30", "expected_cost": "10", "foreign": "5"},
    [],
    "5",
)

# The reasons of the two decisive tags, word for word: what the operator reads first.
DECISIVE_REASONS = {
    "own jobs exhaust the balance": (
        "balance at the check 100 could not cover the batch's own cost 100 "
        "plus this job's expected 10"
    ),
    "low balance, and others spent too": (
        "balance at the check 35 could not cover the batch's own cost 30 "
        "plus this job's expected 10; foreign consumption 5 was also seen"
    ),
    "unrecorded spend": (
        "balance at the check 100 covered own cost 20 + expected 10, but others spent 70 "
        "between the check and the snapshot that measured it"
    ),
    "top-up between check and failure": (
        "balance at the check 100 covered own cost 20 + expected 10, but others spent "
        "at least 160 between the check and the snapshot that measured it"
    ),
    "only a snapshot before the failure": (
        "balance at the check 100 covered own cost 10 + expected 10, but others spent "
        "at least 40 between the check and the failure"
    ),
}


@pytest.mark.parametrize(("name", "reason"), list(DECISIVE_REASONS.items()))
def test_decisive_reasons_say_what_was_measured(name: str, reason: str) -> None:
    assert classify(CASES[name][0]).reason == reason


# The reason of an inconclusive tag is the contract: it says what is missing, word for word.
REASONS = {
    "no preflight snapshot": "no preflight snapshot: the batch was never checked",
    "meter absent at the check": "credits is absent from the preflight snapshot 1",
    "ex5: failure before the check": "the failure happened before the batch was checked",
    "ex6: meter absent from the measuring snapshot": (
        "credits is absent from snapshot 7, which would measure the failure"
    ),
    "later snapshot too stale": (
        "no usable snapshot after the check (none at or after the failure within 1:00:00)"
    ),
    "snapshots at or before the check measure nothing": (
        "no usable snapshot after the check (none at or after the failure within 1:00:00)"
    ),
    "own costs unknown": "costs unknown: 1 succeeded job(s) of the batch recorded no cost",
    "a job without cost at the failure instant is unknown": (
        "costs unknown: 1 succeeded job(s) of the batch recorded no cost"
    ),
    "no foreign spend seen": (
        "balance at the check 100 covered own cost 10 + expected 10 "
        "and no foreign consumption above tolerance 0 was seen"
    ),
    "own cost billed late, nothing else seen": (
        "balance at the check 100 covered own cost 10 + expected 10 "
        "and no foreign consumption above tolerance 0 was seen"
    ),
}


@pytest.mark.parametrize(("name", "reason"), list(REASONS.items()))
def test_inconclusive_reasons_name_what_is_missing(name: str, reason: str) -> None:
    assert classify(CASES[name][0]).reason == reason


def test_every_inconclusive_case_has_its_reason() -> None:
    assert set(REASONS) == {name for name, row in CASES.items() if row[1] is Tag.INCONCLUSIVE}


@pytest.mark.parametrize(
    "name", [name for name, row in CASES.items() if row[1] is Tag.CONCURRENT_CONSUMPTION]
)
def test_a_lower_bound_says_at_least(name: str) -> None:
    result = classify(CASES[name][0])
    assert ("at least" in result.reason) is result.evidence.foreign_is_lower_bound


@pytest.mark.parametrize(
    ("case", "tag", "evidence", "attribution", "unattributed"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_classification_table(
    case: QuotaFailure,
    tag: Tag,
    evidence: dict[str, object],
    attribution: list[Attributed],
    unattributed: str | None,
) -> None:
    result = classify(case)
    assert result.tag is tag, result.reason
    shown = result.evidence.to_dict()
    for key, value in evidence.items():
        assert shown[key] == value, (key, shown)
    assert list(result.attribution) == attribution
    assert result.unattributed == (None if unattributed is None else D(unattributed))
    assert result.version == CLASSIFIER_VERSION
    assert result.reason


def after_the_window(case: QuotaFailure) -> datetime:
    """An instant after everything that can measure ``case``: the end of its staleness
    window, and its live snapshot, which may have been taken later (recorded late)."""
    ends = [case.failed_at + case.staleness_window]
    if case.live is not None:
        ends.append(case.live.taken_at)
    return max(ends) + timedelta(seconds=1)


@pytest.mark.parametrize("name", list(CASES))
def test_rows_after_the_window_never_change_the_answer(name: str) -> None:
    # Once the staleness window has passed, nothing later changes a failure's answer:
    # not later snapshots (another 402's live one, an audit's, one reading another meter
    # level), not the batch's later jobs (their costs would move the mean c), not other
    # batches' later spend, and not later failures of the batch.
    case = CASES[name][0]
    later = after_the_window(case)
    extended = replace(
        case,
        timeline=[
            *case.timeline,
            Reading(97, later, D("0"), "failure"),
            Reading(98, later + timedelta(minutes=5), D("1000"), "audit"),
            Reading(99, later + timedelta(hours=3), None, "manual"),
        ],
        own=[
            *case.own,
            Spend("B", later, D("1000")),
            Spend("B", later, None),
            Spend("B", later + timedelta(minutes=1), D("0"), succeeded=False),
        ],
        others=[*case.others, Spend("Z", later, D("500"))],
    )
    assert classify(extended) == classify(case)


def test_evidence_names_the_snapshots_used() -> None:
    result = classify(CASES["top-up between check and failure"][0])
    assert result.evidence.snapshot_ids == (1, 2, 3, 4)
    assert result.evidence.topups == ((2, 3),)
    assert "at least" in result.reason


def test_a_rise_is_split_out_and_the_reading_before_the_failure_bounds_what_came_first() -> None:
    # 100 → 40 before the failure (own 10, foreign 50) → topped up → 20 after it.
    case = failure(
        own=[own(1, "10"), own(6, "10")],
        timeline=[snap(2, 5, "40"), snap(3, 5.5, "140"), snap(4, 10.5, "20", "failure")],
    )
    result = classify(case)
    assert result.tag is Tag.CONCURRENT_CONSUMPTION
    # The snapshot after the failure measures: 50 before the top-up, 110 after it.
    assert result.evidence.foreign == D("160")
    assert result.evidence.foreign_before_failure == D("50")
    assert not result.evidence.before_failure
    assert result.evidence.topups == ((2, 3),)
    assert result.evidence.snapshot_ids == (1, 2, 3, 4)


def test_version_three_is_stored_with_each_tag() -> None:
    # 3: the measuring snapshot's fallback and the failure's horizon changed the answers
    # some version-2 tags hold, so those are reclassified.
    assert CLASSIFIER_VERSION == "3"
    assert classify(CASES["unrecorded spend"][0]).version == "3"


def test_a_402_declaring_a_different_cost_and_expected_cost_is_refused() -> None:
    with pytest.raises(UsageError, match="expected_cost"):
        declared(cost="100", expected_cost="90")
    assert declared(cost="100", expected_cost="100") == D("100")


def test_a_failure_that_is_not_for_quota_keeps_its_cost_as_consumed() -> None:
    item = build_outcome({"job_id": "j", "status": "failed", "http_status": 500, "cost": "7"})
    assert (item.cost, item.expected_cost) == (D("7"), None)
    quota = build_outcome({"job_id": "j", "status": "failed", "quota_failure": True, "cost": "7"})
    assert (quota.cost, quota.expected_cost) == (D("0"), D("7"))
    # A declared 0 on a quota failure says "consumed nothing" and declares no expected cost.
    zero = build_outcome({"job_id": "j", "status": "failed", "http_status": 402, "cost": "0"})
    assert (zero.cost, zero.expected_cost) == (D("0"), None)


def test_rerunning_gives_the_same_answer() -> None:
    case = CASES["two batches and an unrecorded rest"][0]
    assert classify(case) == classify(case)
