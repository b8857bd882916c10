"""The bulk path writes SQLite values itself: exactly the text the column types would store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.dialects import sqlite

from preflight.db import values as bulk
from preflight.db.models import Outcome

DIALECT = sqlite.dialect()


def _stored(column: str, value: object) -> object:
    kind = Outcome.__table__.c[column].type
    processor = kind.dialect_impl(DIALECT).bind_processor(DIALECT)
    return processor(value) if processor else value


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "0.25", "1E+3", "123456789012345678901234567890.00000000000000000001", "5"],
)
def test_amounts_are_stored_as_the_amount_type_stores_them(amount: str) -> None:
    value = Decimal(amount)
    assert bulk.sqlite_amount(value) == _stored("cost", value)
    assert bulk.sqlite_amount(None) is None


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 11, 24, 11, 30, 5, 7, tzinfo=timezone(timedelta(hours=1, minutes=30))),
        datetime(8999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_times_are_stored_as_the_utc_datetime_type_stores_them(moment: datetime) -> None:
    assert bulk.sqlite_time(moment) == _stored("occurred_at", moment)
