"""The bulk import's fast path for the usual JSON line answers exactly what the full
validator answers: the same outcome, field by field and digit by digit, or — for any
line it does not take — the full validator's own answer, error message included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from preflight.domain import outcome
from preflight.domain.outcome import (
    FIELDS,
    ROW_QUOTA_FAILURE,
    OutcomeInput,
    OutcomeRow,
    build_outcome,
    outcome_from_row,
    outcome_row,
    parse_json_line,
    parse_json_row,
)
from preflight.errors import UsageError

# Per field: values at and just past every bound the validator has, of every JSON type.
EDGES: dict[str, list[Any]] = {
    "job_id": [
        "job-1",
        "",
        "j" * 200,
        "j" * 201,
        "j" * 500,
        "j" * 501,
        "a\nb",
        "é",
        "\u200b",
        7,
        None,
        ["j"],
    ],
    "status": ["succeeded", "failed", "FAILED", " failed", "", 1, None, True, ["failed"], {}],
    "cost": [
        *("0.25", "0", "0.250", "7", "1e2", " 1", "-1", "-0", "abc", "", "NaN", "1_0"),
        *("1e999999999", "0." + "0" * 21, "1" * 41, "1" * 101, "١"),
        *(Decimal("0.25"), Decimal("-0"), Decimal("NaN"), Decimal("1E+41"), Decimal("1E-21")),
        *(0, 3, -1, 10**41, 0.25, True, False, None, [1], {}),
    ],
    "http_status": [200, 402, 99, 100, 599, 600, -200, "402", "402 ", 402.0, Decimal(402)],
    "attempt": [1, 2, 0, -1, 1_000_000, 1_000_001, "3", "03", 2.0, True, False, None, [1]],
    "at": [
        *("2026-11-24T10:00:00+00:00", "2026-11-24T10:00:00", "2026-11-24T10:00:00.5+05:30"),
        *("2026-11-24 10:00:00Z", "1969-12-31T23:59:59+00:00", "1970-01-01T00:00:00+00:00"),
        *("8999-12-31T23:59:59+00:00", "9000-01-01T00:00:00+00:00", "0001-01-01T00:00:00+14:00"),
        *("20261124", "not a time", "", "2026-11-24T10:00:00" + "0" * 60),
        *(20261124, Decimal(2026), True, None, [1], {}),
    ],
    "error": ["", "boom", "x" * 4000, "x" * 4001, "a\x00b", "\ud800", "é", 0, False, ["e"]],
    "quota_failure": [False, True, None, 0, 1, "true", "", [True]],
}
EDGES["expected_cost"] = EDGES["cost"]
ANY_JSON = st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.just([1])
FIELD_VALUES: dict[str, Any] = {
    name: st.sampled_from(values) | ANY_JSON for name, values in EDGES.items()
}
FIELD_VALUES["cost"] |= st.decimals(places=None) | st.floats()
# A line that passes as it is, then up to three of its fields changed to anything: each
# check of the fast path meets the value it must refuse next to values it must take.
USUAL_VALUES: dict[str, Any] = {
    "cost": st.sampled_from(["0.25", "0.250", "7", "0", None, Decimal("0.25"), 3]),
    "expected_cost": st.sampled_from(["0.25", "1", None, Decimal("0.5")]),
    "http_status": st.sampled_from([200, 402, 429, 500, None]),
    "attempt": st.sampled_from([1, 2, 1_000_000]),
    "at": st.sampled_from(["2026-11-24T10:00:00+00:00", "2026-11-24T10:00:00.5+05:30", None]),
    "error": st.sampled_from(["boom", "", None]),
    "quota_failure": st.sampled_from([True, False, None]),
}
USUAL_RECORDS = st.fixed_dictionaries(
    {
        "job_id": st.sampled_from(["job-1", "j" * 200, "j" * 500]),
        "status": st.sampled_from(["succeeded", "failed"]),
    },
    optional=USUAL_VALUES,
)
CHANGES = st.lists(st.sampled_from([*FIELD_VALUES, "unknown"]), max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: FIELD_VALUES.get(n, ANY_JSON) for n in names})
)
DROPPED = st.sets(st.sampled_from(["job_id", "status"]), max_size=1)
RECORDS = st.builds(
    lambda usual, changes, dropped: {
        k: v for k, v in {**usual, **changes}.items() if k not in dropped
    },
    USUAL_RECORDS,
    CHANGES,
    DROPPED,
)


def _exactly(item: OutcomeInput) -> tuple[tuple[str, str, str], ...]:
    """Every field by type and repr: 0.25 and 0.250 are equal Decimals but stored apart."""
    names = [*FIELDS - {"quota_failure"}, "marked_quota"]
    return tuple(
        (name, type(getattr(item, name)).__name__, repr(getattr(item, name)))
        for name in sorted(names)
    )


def _exact_row(row: OutcomeRow) -> tuple[tuple[str, str], ...]:
    return tuple((type(value).__name__, repr(value)) for value in row)


def _full(fields: dict[str, Any]) -> tuple[str, object]:
    try:
        return "row", _exact_row(outcome_row(build_outcome(fields)))
    except Exception as exc:  # the comparison is the point
        return type(exc).__name__, str(exc)


def _fast(fields: dict[str, Any]) -> tuple[str, object] | None:
    row = outcome._usual_row(fields)
    return None if row is None else ("row", _exact_row(row))


@given(RECORDS)
@example({"job_id": "j", "status": "failed", "http_status": 402, "cost": "7"})
@example(
    {"job_id": "j", "status": "failed", "quota_failure": True, "cost": "7", "expected_cost": "8"}
)
@example({"job_id": "j", "status": "succeeded", "attempt": 0})
@example({"job_id": "j", "status": "succeeded", "quota_failure": True, "http_status": 402})
def test_the_fast_path_takes_a_record_only_as_the_full_validator_does(
    fields: dict[str, Any],
) -> None:
    fast = _fast(fields)
    if fast is not None:
        assert fast == _full(fields)


@given(RECORDS)
def test_a_row_is_its_outcome_exactly(fields: dict[str, Any]) -> None:
    try:
        item = build_outcome(fields)
    except UsageError:
        return
    row = outcome_row(item)

    assert _exactly(outcome_from_row(row)) == _exactly(item)
    assert outcome_from_row(row) == item
    assert row[ROW_QUOTA_FAILURE] is item.quota_failure


# The decoder the bulk import had before its fast paths: every integer through _json_int.
REFERENCE_DECODER = json.JSONDecoder(
    parse_float=outcome._json_float,
    parse_int=outcome._json_int,
    parse_constant=outcome._json_constant,
)


def _reference(line: str) -> tuple[str, object]:
    """parse_json_line as it was: the full decode, then the full validator."""
    try:
        try:
            data = REFERENCE_DECODER.decode(line.removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise outcome.UsageError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        except outcome._NumberTooLong:
            raise outcome.UsageError(
                f"a number longer than {outcome.MAX_NUMBER_CHARS} characters"
            ) from None
        if not isinstance(data, dict):
            raise outcome.UsageError("each line must be a JSON object")
        return "outcome", _exactly(build_outcome(data))
    except Exception as exc:  # the comparison is the point
        return type(exc).__name__, str(exc)


def _answer(line: str) -> tuple[str, object]:
    try:
        item = parse_json_line(line)
        row = parse_json_row(line)
    except Exception as exc:  # the comparison is the point
        return type(exc).__name__, str(exc)
    assert _exact_row(row) == _exact_row(outcome_row(item))
    return "outcome", _exactly(item)


def _json_line(fields: dict[str, Any]) -> str:
    """``fields`` as a JSON line, a Decimal written as its own digits (0.250, 1E+41, NaN)."""
    numbers: list[str] = []

    def number(value: object) -> str:
        assert isinstance(value, Decimal)
        numbers.append(str(value))
        return f"@@{len(numbers) - 1}@@"

    line = json.dumps(fields, default=number)
    for n, text in enumerate(numbers):
        line = line.replace(f'"@@{n}@@"', text)
    return line


LINE_VALUES = st.floats() | st.integers(min_value=-(10**120), max_value=10**120)
LINE_RECORDS = st.builds(
    lambda record, extra: {**record, **extra},
    RECORDS,
    st.dictionaries(st.sampled_from(sorted(FIELDS)), LINE_VALUES, max_size=1),
)


@given(LINE_RECORDS, st.sampled_from(["", "\n", "\r\n", " ", "\ufeff"]))
@example({"job_id": "job-1", "status": "succeeded", "http_status": 10**101}, "")
@example({"job_id": "job-1", "status": "succeeded", "attempt": Decimal("-0")}, "\n")
@example({"job_id": "job-1", "status": "succeeded", "cost": Decimal("0.250")}, "")
def test_a_json_line_reads_as_it_did_before_the_fast_paths(
    fields: dict[str, Any], noise: str
) -> None:
    line = _json_line(fields)
    line = noise + line if noise == "\ufeff" else line + noise
    assert _answer(line) == _reference(line)


@given(st.integers(min_value=-(10**105), max_value=10**105), st.booleans())
def test_a_repeated_key_cannot_hide_a_number_too_long(number: int, first: bool) -> None:
    """The last of two equal keys wins, but the first is still read, and refused if long."""
    pair = [f'"http_status": {number}', '"http_status": 200']
    line = '{"job_id": "j", "status": "failed", ' + ", ".join(pair if first else pair[::-1]) + "}"
    assert _answer(line) == _reference(line)


USUAL_LINES: list[dict[str, Any]] = [
    {"job_id": "job-1", "status": "succeeded"},
    {
        "job_id": "job-1",
        "status": "succeeded",
        "cost": "0.25",
        "http_status": 200,
        "at": "2026-11-24T10:00:00+00:00",
    },
    {"job_id": "job-1", "status": "failed", "cost": "7", "http_status": 402, "error": "quota"},
    {"job_id": "job-1", "status": "failed", "cost": "7", "quota_failure": True, "attempt": 2},
    {"job_id": "job-1", "status": "failed", "expected_cost": "7", "http_status": 500, "error": ""},
]


def test_each_edge_value_of_each_field_alone() -> None:
    """Every bound of every check, next to values that pass, in every usual line."""
    for usual in USUAL_LINES:
        for name, values in EDGES.items():
            for value in values:
                fields = {**usual, name: value}
                fast = _fast(fields)
                if fast is not None:
                    assert fast == _full(fields), fields
            without = {k: v for k, v in usual.items() if k != name}
            fast = _fast(without)
            if fast is not None:
                assert fast == _full(without), without
        assert _fast({**usual, "extra": 1}) is None


def test_the_usual_line_takes_the_fast_path() -> None:
    """Else the fast path could rot unseen: every other test would pass through the full one."""
    line = {
        "job_id": "job-0000001",
        "status": "succeeded",
        "cost": "0.25",
        "http_status": 200,
        "at": "2026-11-24T10:00:00+00:00",
    }
    row = outcome._usual_row(line)

    assert row is not None
    item = outcome_from_row(row)
    assert item.cost == Decimal("0.25")
    assert item.at == datetime(2026, 11, 24, 10, tzinfo=UTC)
    failed = outcome._usual_row({**line, "status": "failed", "http_status": 402, "error": "x"})
    assert failed is not None
    item = outcome_from_row(failed)
    assert (item.cost, item.expected_cost, item.quota_failure) == (0, Decimal("0.25"), True)


@pytest.mark.parametrize("after", ["\x85", "\u2028", "\u00a0", "\x0b", "\x0c"])
def test_only_jsons_whitespace_may_follow_the_value(after: str) -> None:
    # Unicode whitespace that str.isspace() accepts, JSON does not: a line ending in it
    # is "Extra data" on the fast path exactly as through json itself.
    text = "0" + after
    for decode in (outcome._decode, outcome._DECODER.decode):
        with pytest.raises(ValueError, match="Extra data"):
            decode(text)
