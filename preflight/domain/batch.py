"""Batch ids and the choice of a batch's meter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from preflight.domain.errors import UsageError
from preflight.domain.vocabulary import Meter

BATCH_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._:\-/]{1,200}")


def validate_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is 1–200 characters of letters, digits and ``._:-/``."""
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        shown = batch_id if len(batch_id) <= 40 else batch_id[:40] + "…"
        raise UsageError(
            f"invalid batch id {shown!r}: use 1-200 characters of letters, digits and ._:-/"
        )
    return batch_id


def choose_meter(requested: str, present: Mapping[str, object]) -> Meter | None:
    """The meter a check reads: the requested one, or for ``auto`` credits before the legacy quota.

    ``present`` maps meter names to the profile's values (None when absent).
    Returns None when the meter (or, for ``auto``, every meter) is absent.
    """
    if requested != "auto":
        meter = Meter(requested)
        return meter if present.get(meter.value) is not None else None
    for meter in (Meter.CREDITS, Meter.API_QUOTA_REMAINING):
        if present.get(meter.value) is not None:
            return meter
    return None
