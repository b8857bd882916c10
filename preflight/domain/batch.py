"""Batch ids and the choice of a batch's meter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from preflight.domain.errors import UsageError

# Re-exported: the first vendor's meters, which callers compare choose_meter's answer with.
from preflight.domain.vocabulary import Meter  # noqa: F401

BATCH_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._:\-/]{1,200}")


def validate_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is 1–200 characters of letters, digits and ``._:-/``."""
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        shown = batch_id if len(batch_id) <= 40 else batch_id[:40] + "…"
        raise UsageError(
            f"invalid batch id {shown!r}: use 1-200 characters of letters, digits and ._:-/"
        )
    return batch_id


def choose_meter(requested: str, present: Mapping[str, object]) -> str | None:
    """The meter a check reads: the requested one, or for ``auto`` the first present one.

    ``present`` maps the reading's meter names to its values (None when absent), in the
    vendor adapter's order of preference: credits before the legacy quota by default.
    Returns None when the meter (or, for ``auto``, every meter) is absent.
    """
    if requested != "auto":
        return requested if present.get(requested) is not None else None
    return next((name for name, value in present.items() if value is not None), None)
