from __future__ import annotations

from decimal import Decimal as D

import pytest

from preflight.contract import exit_code
from preflight.domain.batch import Meter, choose_meter, validate_batch_id
from preflight.domain.verdict import Verdict, assess, outstanding_need
from preflight.errors import UsageError


@pytest.mark.parametrize(
    ("balance", "need", "reserve", "other", "expected"),
    [
        ("100", "100", "0", "0", Verdict.GO),  # exactly enough
        ("100", "50", "50", "0", Verdict.GO),  # need + reserve exactly
        ("100", "50", "50.01", "0", Verdict.INSUFFICIENT),
        ("99.99", "100", "0", "0", Verdict.INSUFFICIENT),
        ("0", "0", "0", "0", Verdict.GO),  # no declared need
        ("100", "60", "0", "40", Verdict.GO),  # others leave exactly the need
        ("100", "60", "0", "40.01", Verdict.AT_RISK),
        ("100", "60", "10", "45", Verdict.AT_RISK),  # covers need + reserve, not with others
        ("1000000000000.000000000001", "1000000000000", "0", "0", Verdict.GO),  # exact decimals
    ],
)
def test_assess(balance: str, need: str, reserve: str, other: str, expected: Verdict) -> None:
    result = assess(D(balance), D(need), D(reserve), D(other))
    assert result.verdict is expected
    # Every verdict explains itself with the balance it judged.
    assert balance in result.reason


@pytest.mark.parametrize(
    ("verdict", "strict", "fail_open", "code"),
    [
        (Verdict.GO, False, False, 0),
        (Verdict.GO, True, False, 0),
        (Verdict.AT_RISK, False, False, 0),
        (Verdict.AT_RISK, True, False, 14),
        (Verdict.INSUFFICIENT, False, False, 10),
        (Verdict.AUTH_FAILED, False, False, 11),
        (Verdict.BILLING_BLOCKED, False, False, 12),
        (Verdict.UNAVAILABLE, False, False, 13),
        (Verdict.UNAVAILABLE, False, True, 0),
        (Verdict.AUTH_FAILED, False, True, 11),  # fail-open is only for an unavailable vendor
    ],
)
def test_exit_codes(verdict: Verdict, strict: bool, fail_open: bool, code: int) -> None:
    assert exit_code(verdict, strict=strict, fail_open=fail_open) == code


@pytest.mark.parametrize(("verdict", "code"), [(Verdict.AT_RISK, 0), (Verdict.UNAVAILABLE, 13)])
def test_exit_codes_default_to_lenient_at_risk_and_fail_closed(verdict: Verdict, code: int) -> None:
    # Unless asked: at_risk still dispatches, and an unavailable vendor is a no-go.
    assert exit_code(verdict) == code


@pytest.mark.parametrize(
    ("need", "spent", "expected"),
    [(None, "5", "0"), ("10", "0", "10"), ("10", "4", "6"), ("10", "12", "0")],
)
def test_outstanding_need(need: str | None, spent: str, expected: str) -> None:
    assert outstanding_need(None if need is None else D(need), D(spent)) == D(expected)


@pytest.mark.parametrize(
    ("requested", "present", "expected"),
    [
        ("auto", {"credits": D(1), "api_quota_remaining": D(2)}, Meter.CREDITS),
        ("auto", {"credits": None, "api_quota_remaining": D(2)}, Meter.API_QUOTA_REMAINING),
        ("auto", {"credits": D(0)}, Meter.CREDITS),  # zero is present, not absent
        ("auto", {}, None),
        (
            "api_quota_remaining",
            {"credits": D(1), "api_quota_remaining": D(2)},
            Meter.API_QUOTA_REMAINING,
        ),
        ("credits", {"api_quota_remaining": D(2)}, None),
    ],
)
def test_choose_meter(requested: str, present: dict[str, object], expected: Meter | None) -> None:
    assert choose_meter(requested, present) == expected


@pytest.mark.parametrize(
    "batch_id",
    [
        "a",
        "nightly-2026.11.24",
        "team/a:run_7",
        "A" * 200,
        "x.y:z-w/v_1",
        # Airflow's "{{ dag.dag_id }}/{{ run_id }}": a run id carries the UTC offset's "+".
        "my_dag/manual__2026-12-07T00:35:27.935842+00:00",
        "etl@team/scheduled__2026-12-07T00:00:00+00:00",
        "k=v/run",
        "D" * 250 + "/" + "R" * 249,  # 500: the longest
    ],
)
def test_valid_batch_ids(batch_id: str) -> None:
    assert validate_batch_id(batch_id) == batch_id


@pytest.mark.parametrize(
    "batch_id",
    [
        "",
        "A" * 501,
        "has space",
        "semi;colon",
        "new\nline",
        "émoji",
        "a\x00b",
        "q?",
        "a#b",
        "a%2Fb",
        "a&b",
        "a\\b",
    ],
)
def test_invalid_batch_ids(batch_id: str) -> None:
    with pytest.raises(UsageError, match="invalid batch id"):
        validate_batch_id(batch_id)
