"""Column types that keep amounts exact and times in UTC on both dialects."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String, Text
from sqlalchemy.types import TypeDecorator, TypeEngine

from preflight.db.values import meter_map, meter_map_text


class Amount(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, canonical text on SQLite.

    SQLite's NUMERIC affinity turns 0.1 into a binary float, so there the value is
    stored as text and sums go through the ``decimal_sum`` aggregate registered on
    every SQLite connection (see ``preflight.db.session``).
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
        if dialect.name == "sqlite":
            return format(value, "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both dialects (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

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
