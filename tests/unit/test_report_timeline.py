"""The report's arithmetic and geometry: the linear walk equals the classifier's, the drop
split, top-ups, burn rate, ticks, lanes and failure markers set side by side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from preflight.domain.classify import Reading, Spend, foreign_consumption
from preflight.domain.timeline import (
    BatchSpan,
    TimelineSnapshot,
    burn,
    default_meter,
    rises,
    split_drop,
)
from preflight.report.chart import (
    Box,
    FailureMark,
    TimeScale,
    dodge,
    downsample,
    nice_ticks,
    pack_lanes,
    step_path,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
amounts = st.decimals(min_value=0, max_value=1000, places=3)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _naive_walk(start: Reading, end: Reading, readings: list[Reading], own: list[Spend]) -> Decimal:
    """The rule as written (docs/classification.md), segment by segment, every spend scanned
    per segment: the oracle for the classifier's prefix-sum walk."""
    path = [
        start,
        *sorted(
            (
                r
                for r in readings
                if r.balance is not None and start.taken_at < r.taken_at < end.taken_at
            ),
            key=lambda r: (r.taken_at, r.snapshot_id),
        ),
        end,
    ]
    total = Decimal(0)
    for before, after in pairwise(path):
        assert before.balance is not None
        assert after.balance is not None
        if after.balance > before.balance:
            continue
        mine = sum(
            (s.cost or Decimal(0) for s in own if before.taken_at < s.at <= after.taken_at),
            Decimal(0),
        )
        total += max(before.balance - after.balance - mine, Decimal(0))
    return total


@given(
    balances=st.lists(st.one_of(st.none(), amounts), min_size=2, max_size=25),
    spends=st.lists(
        st.tuples(st.integers(min_value=-2, max_value=30), st.one_of(st.none(), amounts)),
        max_size=25,
    ),
    start_balance=amounts,
    end_balance=amounts,
)
def test_the_linear_walk_is_the_rule_as_written(
    balances: list[Decimal | None],
    spends: list[tuple[int, Decimal | None]],
    start_balance: Decimal,
    end_balance: Decimal,
) -> None:
    start = Reading(0, at(0), start_balance, "preflight")
    end = Reading(999, at(len(balances) + 1), end_balance, "finish")
    # Readings share instants now and then, and spends fall on reading times.
    readings = [Reading(n + 1, at((n + 1) // 2 * 2), b) for n, b in enumerate(balances)]
    own = [Spend("B", at(t), cost) for t, cost in spends]
    walked = foreign_consumption(start, end, readings, own)
    assert walked.amount == _naive_walk(start, end, readings, own)


def snapshot(n: int, credits: str | None, quota: str | None = None) -> TimelineSnapshot:
    return TimelineSnapshot(
        n,
        at(n * 60),
        "audit",
        Decimal(credits) if credits else None,
        Decimal(quota) if quota else None,
    )


def test_the_drop_split_attributes_foreign_consumption_largest_first() -> None:
    # Check 1000; own 200; Y records 300 and X 100; 150 nobody recorded; finish 250.
    timeline = [snapshot(0, "1000"), snapshot(1, "700"), snapshot(2, "250")]
    split = split_drop(
        "credits",
        timeline[0].reading("credits"),
        timeline[2].reading("credits"),
        [s.reading("credits") for s in timeline],
        [Spend("B", at(30), Decimal(150)), Spend("B", at(90), Decimal(50))],
        {"X": Decimal(100), "Y": Decimal(300), "W": Decimal(0)},
    )
    assert split is not None
    assert (split.drop, split.own, split.foreign) == (750, 200, 550)
    assert [(a.batch_id, a.cost) for a in split.others] == [("Y", 300), ("X", 100)]
    assert split.unattributed == 150
    assert split.parts_total == split.drop
    assert split.to_dict()["others"] == [
        {"batch_id": "Y", "cost": "300"},
        {"batch_id": "X", "cost": "100"},
    ]


def test_a_top_up_makes_the_split_a_lower_bound_and_is_a_rise() -> None:
    timeline = [snapshot(0, "100"), snapshot(1, "40"), snapshot(2, "540"), snapshot(3, "500")]
    assert [(r.before_id, r.after_id, r.amount) for r in rises(timeline, "credits")] == [
        (1, 2, Decimal(500))
    ]
    split = split_drop(
        "credits",
        timeline[0].reading("credits"),
        timeline[3].reading("credits"),
        [s.reading("credits") for s in timeline],
        [],
        {},
    )
    assert split is not None
    assert (split.drop, split.foreign, split.foreign_is_lower_bound) == (-400, 100, True)
    assert split.topups == ((1, 2),)


def test_no_split_without_the_meter_at_either_end() -> None:
    start = Reading(1, at(0), None)
    assert split_drop("credits", start, Reading(2, at(1), Decimal(1)), [], [], {}) is None


def test_burn_rate_and_runway_as_the_audit_measures_them() -> None:
    timeline = [snapshot(n, str(1000 - 10 * n)) for n in range(0, 61)]  # 10/min for an hour
    measured = burn(timeline, "credits", timedelta(hours=1))
    assert measured is not None
    assert (measured.consumed, measured.per_hour, measured.runway_hours) == (
        Decimal(600),
        Decimal("600.000000"),
        Decimal("0.67"),
    )
    # Readings spanning less than half the window: no rate, no runway.
    short = burn(timeline[:10], "credits", timedelta(hours=1))
    assert short is not None
    assert (short.per_hour, short.runway_hours) == (None, None)


def test_the_meter_defaults_to_credits_then_the_legacy_quota() -> None:
    assert default_meter([snapshot(0, None, "5")], None) == "api_quota_remaining"
    assert default_meter([snapshot(0, "1", "5")], None) == "credits"
    assert default_meter([snapshot(0, "1", "5")], "api_quota_remaining") == "api_quota_remaining"
    assert default_meter([], None) is None


def test_nice_ticks() -> None:
    assert nice_ticks(Decimal(0), Decimal(100)) == [Decimal(v) for v in range(0, 101, 20)]
    assert nice_ticks(Decimal("987990"), Decimal("988000")) == [
        Decimal(v) for v in range(987990, 988001, 2)
    ]
    flat = nice_ticks(Decimal(5), Decimal(5))  # one value: a band around it
    assert (flat[0], flat[-1], Decimal(5) in flat) == (Decimal("4.4"), Decimal("5.6"), True)


def test_downsampling_keeps_each_columns_min_and_max_and_the_cited() -> None:
    box = Box(0, 0, 10, 100)
    timeline = [snapshot(n, str((n * 37) % 101)) for n in range(1000)]
    scale = TimeScale(timeline[0].taken_at, timeline[-1].taken_at, box)
    kept = downsample(timeline, "credits", scale, keep={500, 501})
    ids = [s.id for s in kept]
    assert ids == sorted(ids)
    assert {0, 999, 500, 501} <= set(ids)
    assert len(kept) <= 2 * 10 + 4
    for column in range(10):
        members = [s for s in timeline if min(int(scale.x(s.taken_at)), 9) == column]
        values = [s.credits for s in members]
        kept_values = {s.credits for s in kept if s in members}
        assert {min(values), max(values)} <= kept_values  # type: ignore[type-var]
    few = timeline[:20]
    assert downsample(few, "credits", scale) == few


def test_step_path_holds_each_reading_until_the_next() -> None:
    assert step_path([(0, 10), (5, 20), (7.25, 0)]) == "M0.0 10.0H5.0V20.0H7.2V0.0"
    assert step_path([]) == ""


def test_lanes_separate_overlapping_batches_and_share_free_ones() -> None:
    scale = TimeScale(at(0), at(1000), Box(0, 0, 1000, 100))
    spans = [
        BatchSpan("a", at(0), at(400), "finished", "credits"),
        BatchSpan("b", at(100), at(300), "finished", "credits"),
        BatchSpan("c", at(600), at(900), "open", "credits"),
    ]
    lanes = {band.batch_id: band.lane for band in pack_lanes(spans, scale)}
    assert lanes == {"a": 0, "b": 1, "c": 0}


def test_failures_in_one_pixel_column_are_set_side_by_side_within_the_plot() -> None:
    plot = Box(0, 0, 100, 100)
    marks = [FailureMark(x, "t", "#000", "", "", x) for x in (99.0, 99.5, 50.0)]
    placed = dodge(marks, plot)
    assert [m.x for m in placed] == [50.0, 99.0, 99.5]
    assert [m.marker_x for m in placed] == [50.0, 84.0, 100.0]
    crowded = [FailureMark(50.0, "t", "#000", "", "", 50.0)] * 10
    assert {m.marker_x for m in dodge(crowded, plot)} == {50.0}
