from __future__ import annotations

import io
from datetime import UTC, datetime

import click
import pytest

from preflight.cli.support import bounded_lines, parse_since


def test_bounded_lines_cuts_a_long_line_and_stops() -> None:
    stream = io.BytesIO(b"short\n" + b"y" * 50 + b"\nnever read\n")
    assert list(bounded_lines(stream, 10)) == [b"short\n", b"y" * 11]


def test_bounded_lines_keeps_a_last_line_without_newline() -> None:
    assert list(bounded_lines(io.BytesIO(b"a\nb"), 10)) == [b"a\n", b"b"]


@pytest.mark.parametrize(
    "value", ["9" * 30 + "d", "99999999999999d", "36501d", "0001-01-01T00:00:00+14:00", "soon"]
)
def test_since_out_of_bounds_is_a_usage_error(value: str) -> None:
    with pytest.raises(click.BadParameter, match="neither an ISO 8601 time from 1970-01-01"):
        parse_since(value)


def test_since_within_bounds() -> None:
    assert parse_since("36500d") is not None
    assert parse_since("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
