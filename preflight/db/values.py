"""Values in the form the column types store them, without SQLAlchemy.

The driver fast paths (bulk imports, the check's and the record's statements on SQLite,
the check's statements on PostgreSQL) hand the driver values already in stored form:
on SQLite an amount's canonical text and a time's naive UTC text, exactly as
:class:`preflight.db.types.Amount` and :class:`~preflight.db.types.UTCDateTime` write them
(``tests/unit/test_bulk_values.py`` pins that); on both dialects a snapshot's meters as
:class:`~preflight.db.types.MeterMap` writes them. Nothing here imports SQLAlchemy, so that
a check on an embedded SQLite file runs without it (:mod:`preflight.db.embedded`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

_AMOUNT_TEXTS: dict[int, tuple[Decimal, str]] = {}


def sqlite_amount(value: Decimal | None) -> str | None:
    """An amount as :class:`preflight.db.types.Amount` stores it on SQLite.

    The lines of an import share a few amounts, parsed into the very same objects (the
    amount parser caches by text): their text is kept by identity. (Not by value: 0.25
    and 0.250 are equal Decimals with different stored texts.)"""
    if value is None:
        return None
    kept = _AMOUNT_TEXTS.get(id(value))
    if kept is not None and kept[0] is value:
        return kept[1]
    text = format(value, "f")
    if len(_AMOUNT_TEXTS) >= 4096:
        _AMOUNT_TEXTS.clear()
    _AMOUNT_TEXTS[id(value)] = (value, text)  # the reference keeps the id from being reused
    return text


@lru_cache(maxsize=4096)
def sqlite_time(value: datetime) -> str:
    """An aware time as :class:`preflight.db.types.UTCDateTime` stores it on SQLite.

    Cached: the lines of an import share their times (equal instants are equal keys,
    whatever their offsets, and have one UTC text)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def meter_map_text(meters: Mapping[str, Decimal | None]) -> str | None:
    """The stored text of a snapshot's meters: a JSON object of exact decimal strings,
    keys sorted, absent meters left out; None when there is none (the common case)."""
    present = {name: format(value, "f") for name, value in meters.items() if value is not None}
    return json.dumps(present, sort_keys=True, separators=(",", ":")) if present else None


def meter_map(text: str | None) -> dict[str, Decimal]:
    """The meters of :func:`meter_map_text`'s text (empty for None)."""
    if not text:
        return {}
    return {name: Decimal(value) for name, value in json.loads(text).items()}
