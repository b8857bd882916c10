"""The classifier as tables of hand-computed cases (design.md, "Classifying a quota failure")."""

from __future__ import annotations

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

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def snap(sid: int, minutes: float, balance: str | None, kind: str = "audit") -> Reading:
    return Reading(sid, at(minutes), None if balance is None else D(balance), kind)


def own(minutes: float, cost: str | None, ok: bool = True) -> Spend:
    return Spend("B", at(minutes), None if cost is None else D(cost), ok)


def other(batch: str, minutes: float, cost: str) -> Spend:
    return Spend(batch, at(minutes), D(cost))


PREFLIGHT = snap(1, 0, "100", "preflight")


def failure(**overrides: object) -> QuotaFailure:
    values: dict[str, object] = {
        "batch_id": "B",
        "failed_at": at(10),
        "preflight": PREFLIGHT,
        "timeline": [],
        "own": [],
        "others": [],
    }
    values.update(overrides)
    return QuotaFailure(**values)  # type: ignore[arg-type]


CASES = {
    # Own jobs alone exhaust the balance: 100 at the check, 10 jobs of 10, the 11th fails.
    "own jobs exhaust the balance": (
        failure(
            own=[own(i, "10") for i in range(1, 11)],
            timeline=[snap(2, 10.5, "0", "failure")],
        ),
        Tag.PRE_EXISTING_LOW_BALANCE,
        {"b0": "100", "own": "100", "expected_cost": "10", "foreign": "0"},
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
        {"b0": None},
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
        {"ba": "20", "foreign": "70"},
        [],
        "70",
    ),
    # Only a snapshot outside the staleness window: not evidence.
    "later snapshot too stale": (
        failure(own=[own(1, "10")], timeline=[snap(2, 200, "0", "audit")]),
        Tag.INCONCLUSIVE,
        {"ba": None, "foreign": None},
        [],
        None,
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
    # The snapshot in [t0, tf] already shows foreign spend: preferred as evidence.
    "snapshot before the failure preferred": (
        failure(
            own=[own(1, "10")],
            timeline=[snap(2, 8, "50"), snap(3, 30, "0")],
        ),
        Tag.CONCURRENT_CONSUMPTION,
        {"ba": "50", "foreign": "40", "before_failure": True},
        [],
        "40",
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
        {"own": "0"},
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
}


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


def test_evidence_names_the_snapshots_used() -> None:
    result = classify(CASES["top-up between check and failure"][0])
    assert result.evidence.snapshot_ids == (1, 2, 3, 4)
    assert result.evidence.topups == ((2, 3),)
    assert "at least" in result.reason


def test_a_rise_is_split_out_and_the_reading_before_the_failure_is_preferred() -> None:
    # 100 → 40 before the failure (own 10, foreign 50) → topped up → 20 after it.
    case = failure(
        own=[own(1, "10"), own(6, "10")],
        timeline=[snap(2, 5, "40"), snap(3, 5.5, "140"), snap(4, 10.5, "20", "failure")],
    )
    result = classify(case)
    assert result.tag is Tag.CONCURRENT_CONSUMPTION
    assert result.evidence.foreign == D("50")
    assert result.evidence.before_failure
    assert result.evidence.topups == ((2, 3),)
    assert result.evidence.snapshot_ids == (1, 2, 3)


def test_rerunning_gives_the_same_answer() -> None:
    case = CASES["two batches and an unrecorded rest"][0]
    assert classify(case) == classify(case)
