"""The one amount bound (preflight.domain.amounts), and every place an amount enters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from preflight.domain.amounts import (
    MAX_FRACTION_DIGITS,
    MAX_INTEGER_DIGITS,
    AmountError,
    bounded,
    parse_amount,
)
from preflight.domain.outcome import build_outcome
from preflight.errors import ConfigError, UsageError
from preflight.settings import load_settings
from preflight.settings import parse_amount as settings_parse_amount

LARGEST = "9" * MAX_INTEGER_DIGITS + "." + "9" * MAX_FRACTION_DIGITS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", "0"),
        ("12.50", "12.50"),
        ("+7", "7"),
        (".5", "0.5"),
        ("1e3", "1E+3"),
        (LARGEST, LARGEST),
        ("1e39", "1E+39"),
        ("1e-20", "1E-20"),
        ("-0", "0"),
        ("-0.00", "0.00"),
        ("0e999999999", "0"),
    ],
)
def test_amounts_within_the_bound_are_exact(text: str, expected: str) -> None:
    amount = parse_amount(text)

    assert str(amount) == expected
    assert amount.as_tuple().sign == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e999999999", "more than 40 digits before the point: '1e999999999'"),
        ("1" * 41, "more than 40 digits before the point"),
        ("1e40", "more than 40 digits before the point"),
        ("1e-21", "more than 20 digits after the point"),
        ("0." + "0" * 21, "more than 20 digits after the point"),
        ("1e-999999999", "more than 20 digits after the point"),
        ("1" * 10_000, "at most 40 digits before the point and 20 after it"),
        (10**400, "more than 40 digits before the point: an integer of about"),
        (10**41, "more than 40 digits before the point"),
        (Decimal("1e999999999"), "more than 40 digits before the point"),
        ("1e99999999999999999999", "not a decimal amount"),
        ("1_000", "not a decimal amount"),
        ("١٢٣", "not a decimal amount"),
        ("NaN", "not a decimal amount"),
        (Decimal("NaN"), "not a finite amount"),
        (Decimal("sNaN"), "not a finite amount"),
        ("-1", "non-negative"),
        (0.5, "not an exact amount"),
        (True, "not an exact amount"),
    ],
)
def test_amounts_outside_the_bound_are_refused_cheaply(value: object, message: str) -> None:
    with pytest.raises(AmountError, match=message) as info:
        parse_amount(value)

    assert len(str(info.value)) < 150  # the input is previewed, never echoed whole


def test_the_bound_is_checked_on_the_tuple_before_any_formatting() -> None:
    # format(Decimal("1e999999999"), "f") would build a gigabyte of zeros.
    with pytest.raises(AmountError):
        bounded(Decimal("9e999999999999"))


@pytest.mark.parametrize("name", ["cost", "expected_cost"])
def test_outcome_amounts_name_the_field(name: str) -> None:
    with pytest.raises(UsageError) as info:
        build_outcome({"job_id": "j", "status": "succeeded", name: "1e999999999"})

    assert str(info.value) == f"{name}: more than 40 digits before the point: '1e999999999'"


def test_outcome_negative_zero_cost_is_zero() -> None:
    outcome = build_outcome({"job_id": "j", "status": "succeeded", "cost": "-0"})

    assert outcome.cost is not None
    assert str(outcome.cost) == "0"


@pytest.mark.parametrize("value", ["1e999999999", "1e100000", "1" * 10_000])
def test_settings_parse_amount_applies_the_bound(value: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        settings_parse_amount(value)


@pytest.mark.parametrize("key", ["RESERVE", "TOLERANCE", "LOW_BALANCE_THRESHOLD"])
def test_amount_settings_apply_the_bound_and_name_the_variable(key: str) -> None:
    with pytest.raises(ConfigError, match=f"^PREFLIGHT_{key}: more than 40 digits"):
        load_settings({f"PREFLIGHT_{key}": "1e999999999"})
