"""Column types that keep amounts exact and times in UTC on both dialects."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String, Text
from sqlalchemy.types import TypeDecorator

from preflight.db.values import meter_map, meter_map_text


class _AmountText(TypeDecorator[Decimal]):
    """An amount as SQLite stores it: canonical text."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        return None if value is None else format(value, "f")


class Amount(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, canonical text on SQLite.

    SQLite's NUMERIC affinity turns 0.1 into a binary float, so there the value is
    stored as text and sums go through the ``decimal_sum`` aggregate registered on
    every SQLite connection (see ``preflight.db.session``). SQLAlchemy picks each
    dialect's form once (``with_variant``): no method here asks which dialect it is.
    """

    impl = Numeric(asdecimal=True).with_variant(_AmountText(), "sqlite")
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class _NaiveUTC(TypeDecorator[datetime]):
    """A UTC time as SQLite stores it: naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        return None if value is None else value.replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both dialects (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True).with_variant(_NaiveUTC(), "sqlite")
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class MeterMap(TypeDecorator[dict[str, Decimal]]):
    """Meters by name as exact decimal strings in a JSON object, stored as text on both
    dialects (a JSON type would read numbers as floats, and PostgreSQL's JSONB rewrites
    them); an empty map is NULL."""

    impl = Text
    cache_ok = True

    def process_bind_param(
        self, value: Mapping[str, Decimal | None] | None, dialect: Dialect
    ) -> Any:
        return None if value is None else meter_map_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Decimal] | None:
        return None if value is None else meter_map(value)
