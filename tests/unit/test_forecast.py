"""The guard's decision, the burns and the forecast, and the need from history: tables of
hand-computed cases and properties (design: "Before the 402")."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from preflight.domain.classify import Reading, Spend, foreign_consumption
from preflight.domain.forecast import (
    Burns,
    Decision,
    burns_since_check,
    decide,
    estimate_need,
    forecast,
    minutes_text,
    parse_label,
    rate_text,
    shortfall,
    statistic,
)
from preflight.errors import UsageError

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def snap(sid: int, minutes: float, balance: str) -> Reading:
    return Reading(sid, at(minutes), D(balance))


def own(minutes: float, cost: str, ok: bool = True) -> Spend:
    return Spend("B", at(minutes), D(cost), ok)


# ---------------------------------------------------------------- the issue's example


def test_the_issues_example_stops_and_runs_out_first() -> None:
    """Balance 200 at the check, need 100; own jobs spend 40 over 4 minutes while an
    unrecorded consumer spends 120: balance 40 at minute 4."""
    start, end = snap(1, 0, "200"), snap(2, 4, "40")
    spends = [own(1, "10"), own(2, "10"), own(3, "10"), own(4, "10")]
    burns = burns_since_check(start, end, [start, end], spends)
    result = forecast(D(40), D(100), D(40), burns, [D(10)] * 4)
    answer = decide(result.balance, result.remaining_need, D(0))

    assert answer.decision is Decision.STOP
    assert result.to_dict() == {
        "balance": "40",
        "remaining_need": "60",
        "affordable_jobs": 4,
        "own_burn_per_minute": "10.0",
        "foreign_burn_per_minute": "30.0",
        "minutes_to_empty": "1.0",
        "minutes_to_finish": "6.0",
        "runs_out_first": True,
    }


def test_foreign_burn_is_the_classifiers_f_per_minute() -> None:
    start, mid, end = snap(1, 0, "100"), snap(2, 5, "150"), snap(3, 10, "100")
    spends = [own(7, "20")]
    burns = burns_since_check(start, end, [start, mid, end], spends)
    measured = foreign_consumption(start, end, [start, mid, end], spends)
    assert burns.foreign == measured.amount == D(30)
    assert burns.foreign_is_lower_bound  # the rise at minute 5 is a top-up
    assert burns.foreign_per_minute == D(3)
    assert burns.own_per_minute == D(2)


def test_no_time_since_the_check_burns_nothing_known() -> None:
    start = snap(1, 0, "100")
    burns = burns_since_check(start, start, [start], [])
    result = forecast(D(100), D(50), D(0), burns)
    assert (burns.own_per_minute, burns.foreign_per_minute) == (None, None)
    assert (result.minutes_to_empty, result.minutes_to_finish) == (None, None)
    assert result.runs_out_first is False


# ---------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    ("balance", "remaining", "other", "next_cost", "decision"),
    [
        ("40", "60", "0", None, Decision.STOP),  # below the remaining need
        ("60", "60", "0", None, Decision.CONTINUE),  # exactly covers it, no one else
        ("60", "60", "1", None, Decision.AT_RISK),  # covers it, not with the others'
        ("99.99", "60", "40", None, Decision.AT_RISK),
        ("100", "60", "40", None, Decision.CONTINUE),  # remaining + outstanding, exactly
        ("100", "60", "0", "100.01", Decision.STOP),  # below the next job's cost
        ("100", "60", "0", "100", Decision.CONTINUE),
        ("5", None, "1000", "5", Decision.CONTINUE),  # no need: the next cost alone
        ("4.99", None, "0", "5", Decision.STOP),
        ("9", "0", "10", None, Decision.AT_RISK),  # nothing left to spend, others hold more
    ],
)
def test_decision_table(
    balance: str, remaining: str | None, other: str, next_cost: str | None, decision: Decision
) -> None:
    answer = decide(
        D(balance),
        None if remaining is None else D(remaining),
        D(other),
        None if next_cost is None else D(next_cost),
    )
    assert answer.decision is decision
    assert balance in answer.reason


def test_no_need_and_no_next_cost_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="next_cost"):
        decide(D(100), None, D(0), None)


amounts = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False)


@given(amounts, amounts, amounts, st.none() | amounts)
def test_decision_follows_its_rules(b: D, r: D, o: D, nxt: D | None) -> None:
    decision = decide(b, r, o, nxt).decision
    if (nxt is not None and b < nxt) or b < r:
        assert decision is Decision.STOP
    elif b < r + o:
        assert decision is Decision.AT_RISK
    else:
        assert decision is Decision.CONTINUE


# ---------------------------------------------------------------- forecast


def burns(own_rate: str | None, foreign_rate: str | None) -> Burns:
    return Burns(
        D(0),
        D(0),
        False,
        D(1),
        None if own_rate is None else D(own_rate),
        None if foreign_rate is None else D(foreign_rate),
    )


@pytest.mark.parametrize(
    ("balance", "need", "consumed", "own_rate", "foreign_rate", "expected"),
    [
        # to_empty, to_finish, runs_out_first
        ("40", "100", "40", "10", "30", ("1.0", "6.0", True)),
        ("100", "100", "40", "10", "0", ("10.0", "6.0", False)),
        ("60", "100", "40", "10", "0", ("6.0", "6.0", False)),  # equal: not first
        ("100", None, "40", "10", "0", ("10.0", None, False)),  # no need: no finish
        ("100", "100", "0", "0", "2", ("50.0", None, False)),  # own burn 0: no finish
        ("100", "100", "0", "0", "0", (None, None, False)),  # nothing burns
        ("100", "100", "150", "10", "5", ("6.7", "0.0", False)),  # need already spent
        ("10", "100", "0", "3", "0", ("3.3", "33.3", True)),
        ("1", "100", "0", "0.05", "0", ("20.0", "2000.0", True)),
    ],
)
def test_forecast_table(
    balance: str,
    need: str | None,
    consumed: str,
    own_rate: str,
    foreign_rate: str,
    expected: tuple[str | None, str | None, bool],
) -> None:
    result = forecast(
        D(balance), None if need is None else D(need), D(consumed), burns(own_rate, foreign_rate)
    )
    view = result.to_dict()
    assert (view["minutes_to_empty"], view["minutes_to_finish"], view["runs_out_first"]) == expected


@pytest.mark.parametrize(
    ("balance", "costs", "expected"),
    [
        ("40", [], None),  # before the first succeeded job
        ("40", ["0", "0"], None),  # they cost nothing: no bound
        ("40", ["10"], 4),
        ("39.99", ["10"], 3),
        ("40", ["10", "20"], 2),  # mean 15 → floor(2.66)
        ("1", ["3", "3", "4"], 0),
        ("100", ["0.3", "0.3", "0.3"], 333),  # exact: 100 / 0.3 = 333.33
    ],
)
def test_affordable_jobs(balance: str, costs: list[str], expected: int | None) -> None:
    result = forecast(D(balance), None, D(0), burns(None, None), [D(c) for c in costs])
    assert result.affordable_jobs == expected


@given(
    st.decimals(min_value=0, max_value=10**6, places=2),
    st.decimals(min_value=D("0.01"), max_value=10**4, places=2),
    st.decimals(min_value=0, max_value=10**4, places=2),
    st.decimals(min_value=0, max_value=10**6, places=2),
)
def test_runs_out_first_is_the_exact_comparison(b: D, own_rate: D, f_rate: D, need: D) -> None:
    result = forecast(b, need, D(0), burns(str(own_rate), str(f_rate)))
    # Fractions: no rounding at all.
    from fractions import Fraction

    empty = Fraction(b) / (Fraction(own_rate) + Fraction(f_rate))
    finish = Fraction(need) / Fraction(own_rate)
    assert result.runs_out_first is (empty < finish)


@given(
    st.lists(st.decimals(min_value=D("0.01"), max_value=1000, places=2), min_size=1, max_size=30),
    st.decimals(min_value=0, max_value=10**5, places=2),
)
def test_affordable_jobs_is_the_floor_of_balance_over_the_mean(costs: list[D], b: D) -> None:
    from fractions import Fraction

    result = forecast(b, None, D(0), burns(None, None), costs)
    mean = sum(map(Fraction, costs)) / len(costs)
    assert result.affordable_jobs == math.floor(Fraction(b) / mean)


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("value", "minutes", "rate"),
    [
        (D(6), "6.0", "6.0"),
        (D("0.05"), "0.0", "0.05"),  # half to even
        (D("0.15"), "0.2", "0.15"),
        (D(1) / D(3), "0.3", "0.333333"),
        (D("1234.56"), "1234.6", "1234.56"),
        (None, None, None),
    ],
)
def test_text(value: D | None, minutes: str | None, rate: str | None) -> None:
    assert minutes_text(value) == minutes
    assert rate_text(value) == rate


# ---------------------------------------------------------------- need from history


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # mean, p50, p90, p95, max (nearest rank: the ⌈q·n⌉-th smallest)
        (["7"], ["7", "7", "7", "7", "7"]),  # the smallest sample
        (["1", "2"], ["1.5", "1", "2", "2", "2"]),
        (["3", "1", "2"], ["2", "2", "3", "3", "3"]),
        (["1", "2", "3", "4"], ["2.5", "2", "4", "4", "4"]),
        # ties: 10 values, p50 = 5th, p90 = 9th, p95 = 10th
        (["1", "1", "1", "1", "1", "2", "2", "2", "2", "9"], ["2.2", "1", "2", "9", "9"]),
        # 20 values 1..20: p50 = 10th, p90 = 18th, p95 = 19th
        ([str(i) for i in range(20, 0, -1)], ["10.5", "10", "18", "19", "20"]),
        (
            ["0.10", "0.10", "0.30"],
            ["0.1666666666666666666666666667", "0.10", "0.30", "0.30", "0.30"],
        ),
    ],
)
def test_statistics(values: list[str], expected: list[str]) -> None:
    got = [statistic(name, [D(v) for v in values]) for name in ("mean", "p50", "p90", "p95", "max")]
    assert got == [D(e) for e in expected]


@given(
    st.lists(st.decimals(min_value=0, max_value=1000, places=2), min_size=1, max_size=60),
    st.sampled_from(["p50", "p90", "p95"]),
)
def test_nearest_rank_quantile(values: list[D], name: str) -> None:
    q = {"p50": D("0.5"), "p90": D("0.9"), "p95": D("0.95")}[name]
    got = statistic(name, values)
    # The nearest-rank definition: the smallest value with at least q·n values ≤ it.
    assert sum(1 for v in values if v <= got) >= q * len(values)
    assert sum(1 for v in values if v < got) < q * len(values)
    assert got in values


def test_estimate_need_multiplies_and_says_its_basis() -> None:
    basis = estimate_need(
        50, "p90", "kind=nightly", [[D(1), D(2)], [], [D(3), D(4), D(5)]], min_history=5
    )
    assert basis.need == D(250)
    assert basis.to_dict() == {
        "jobs": 50,
        "statistic": "p90",
        "per_job": "5",
        "sample_jobs": 5,
        "sample_batches": 2,
        "label": "kind=nightly",
    }


def test_too_little_history_names_the_count() -> None:
    with pytest.raises(UsageError, match=r"estimate_from: 4 succeeded job"):
        estimate_need(10, "mean", "k=v", [[D(1)] * 4], min_history=5)


@pytest.mark.parametrize(
    ("jobs", "name", "problem"), [(0, "mean", "jobs"), (3, "median", "estimate")]
)
def test_bad_estimate_arguments(jobs: int, name: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        estimate_need(jobs, name, "k=v", [[D(1)]], min_history=1)


@pytest.mark.parametrize("text", ["k", "=v", "k=", ""])
def test_bad_label(text: str) -> None:
    with pytest.raises(UsageError, match="estimate_from"):
        parse_label(text)


def test_label() -> None:
    assert parse_label("team=a=b") == ("team", "a=b")


def test_shortfall_is_the_remaining_need_the_balance_leaves_uncovered() -> None:
    # The issue's example: 40 left, a quarter of the burn is own → 10 for the batch of 60.
    assert shortfall(forecast(D(40), D(100), D(40), burns("10", "30"))) == D(50)
    assert shortfall(forecast(D(100), D(100), D(40), burns("10", "0"))) is None  # recovers
    assert shortfall(forecast(D(10), D(100), D(0), burns("3", None))) == D(90)


@pytest.mark.parametrize(
    ("per_job", "jobs", "need"),
    [
        ("3.166666666666666666666666667", 10, "31.66666666666666666666666667"),
        ("9", 10, "90"),
        ("0.25", 4, "1"),
        ("1.50", 3, "4.5"),
    ],
)
def test_the_need_has_no_trailing_zeros(per_job: str, jobs: int, need: str) -> None:
    basis = estimate_need(jobs, "max", "k=v", [[D(per_job)]], min_history=1)
    assert format(basis.need, "f") == need
