"""Outcome input (domain.outcome): hostile JSON lines, strict integers, bounded times."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from preflight.domain.outcome import (
    JOB_ID_MAX_LENGTH,
    JOB_ID_SCHEMA_PATTERN,
    build_outcome,
    outcome_row,
    parse_json_line,
    parse_json_row,
    parse_timestamp,
)
from preflight.errors import UsageError

GOOD = {"job_id": "j1", "status": "failed"}


def line(**fields: object) -> str:
    return json.dumps({**GOOD, **fields})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(line()[:-1] + ', "attempt": ' + "9" * 4301 + "}", "longer than 100", id="int"),
        pytest.param(line()[:-1] + ', "cost": 1.' + "5" * 5000 + "}", "longer than", id="float"),
        pytest.param("[" * 30_000 + "]" * 30_000, "nested too deeply", id="deep-array"),
        pytest.param('{"a":' * 30_000 + "1" + "}" * 30_000, "nested too deeply", id="deep-obj"),
        pytest.param(line()[:-1] + ', "cost": NaN}', "NaN is not a number", id="nan"),
        pytest.param(line()[:-1] + ', "cost": -Infinity}', "-Infinity is not", id="inf"),
        pytest.param(line()[:-1] + ', "cost": 1e999999999}', "cost: more than 40", id="exp"),
        pytest.param(line(error="\ud800"), "lone surrogates", id="surrogate"),
        pytest.param(line(error="a\u0000b"), "NUL", id="nul"),
        pytest.param(line(status=["failed"]), "status: must be", id="status-list"),
        pytest.param(line(status={"x": 1}), "status: must be", id="status-object"),
    ],
)
def test_hostile_lines_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_json_line(text)

    assert len(str(info.value)) < 200


def test_a_leading_byte_order_mark_is_ignored() -> None:
    assert parse_json_line("\ufeff" + line()).job_id == "j1"


def test_a_crlf_line_is_read() -> None:
    assert parse_json_line(line() + "\r\n").job_id == "j1"


@pytest.mark.parametrize(
    "value", ["402 ", " 402", "4_02", "+402", "402.0", "٤٠٢", 402.0, "0x192", True, "", [402]]
)
def test_http_status_must_be_a_json_integer_or_digits_only(value: object) -> None:
    with pytest.raises(UsageError, match=r"^http_status: not a whole number \(a JSON integer"):
        build_outcome({**GOOD, "http_status": value})


@pytest.mark.parametrize(("value", "expected"), [(402, 402), ("402", 402)])
def test_http_status_as_integer_or_digit_string(value: object, expected: int) -> None:
    assert build_outcome({**GOOD, "http_status": value}).http_status == expected


def test_http_status_from_json_decimal_text_is_refused() -> None:
    with pytest.raises(UsageError, match="http_status"):
        parse_json_line(line()[:-1] + ', "http_status": 402.0}')


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # OverflowError converting to UTC
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00",
        "1969-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_times_outside_the_bound_are_usage_errors(value: object) -> None:
    with pytest.raises(UsageError, match=r"^at: must be between 1970-01-01 and 9000-01-01 UTC"):
        parse_timestamp(value)


def test_times_inside_the_bound_are_utc() -> None:
    assert parse_timestamp("2026-11-24T10:00:00+01:00") == datetime(2026, 11, 24, 9, tzinfo=UTC)
    assert parse_timestamp("1970-01-01T00:00:00Z") == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_huge_time_text_is_previewed() -> None:
    with pytest.raises(UsageError, match="not an ISO 8601 time") as info:
        parse_timestamp("2026" * 10_000)

    assert len(str(info.value)) < 100


def test_unknown_field_names_are_quoted_and_capped() -> None:
    with pytest.raises(UsageError) as info:
        parse_json_line(json.dumps({**GOOD, "a\nb": 1, "x" * 10_000: 2}))

    assert str(info.value).startswith("unknown field(s): 'a\\nb', 'xxxx")
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 200


# ---------------------------------------------------------------- job ids (issue 20)


@pytest.mark.parametrize(
    "job_id",
    [
        pytest.param("j" * 500, id="500"),
        pytest.param("é" * 500, id="500-unicode"),
        pytest.param("t" * 250 + "[1023]", id="airflow-mapped-task"),
    ],
)
def test_a_job_id_of_up_to_500_printable_characters_is_taken(job_id: str) -> None:
    assert build_outcome({**GOOD, "job_id": job_id}).job_id == job_id
    assert parse_json_line(line(job_id=job_id)).job_id == job_id
    # The bulk import's fast path takes it too (a row, not None), the same row as the
    # full validator's.
    assert parse_json_row(line(job_id=job_id)) == outcome_row(
        build_outcome({**GOOD, "job_id": job_id})
    )


@pytest.mark.parametrize("job_id", ["j" * 501, "é" * 501, "", "a\nb", "\u200b"])
def test_a_longer_or_unprintable_job_id_is_one_line_naming_the_field(job_id: str) -> None:
    for parse in (
        lambda: build_outcome({**GOOD, "job_id": job_id}),
        lambda: parse_json_line(line(job_id=job_id)),
    ):
        with pytest.raises(
            UsageError, match=r"^job_id: must be 1-500 printable characters: "
        ) as info:
            parse()
        message = str(info.value)
        assert "\n" not in message
        assert len(message) < 200  # the id is previewed, not echoed whole


def test_the_schema_pattern_of_a_job_id_takes_500_characters_and_not_501() -> None:
    # The pattern the HTTP schema reads (http/schemas.py takes it from the domain).
    pattern = re.compile(JOB_ID_SCHEMA_PATTERN)
    assert JOB_ID_MAX_LENGTH == 500
    assert pattern.fullmatch("j" * 500)
    assert pattern.fullmatch("é" * 500)
    assert not pattern.fullmatch("j" * 501)
    assert not pattern.fullmatch("")
    assert not pattern.fullmatch("a\nb")
