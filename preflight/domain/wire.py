"""How amounts and times appear in JSON output: decimal strings and ISO 8601 UTC."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal


def amount_text(value: Decimal | None) -> str | None:
    """``Decimal("1200.50")`` → ``"1200.50"``: exact, never a float, never an exponent."""
    return None if value is None else format(value, "f")


def time_text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def meters_text(meters: Mapping[str, Decimal | None]) -> dict[str, str | None]:
    """Meters by name as the JSON outputs write amounts: exact decimal strings."""
    return {name: amount_text(value) for name, value in meters.items()}
