"""Batch ids and the choice of a batch's meter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from preflight.domain.errors import UsageError

# Re-exported: the first vendor's meters, which callers compare choose_meter's answer with.
from preflight.domain.vocabulary import Meter  # noqa: F401

#: The longest batch id: an orchestrator's own ids fit, e.g. Airflow's 250-character dag
#: id, a ``/`` and a 250-character run id (``{{ dag.dag_id }}/{{ run_id }}``), less one.
BATCH_ID_MAX_LENGTH: Final = 500
#: The characters of a batch id, as a regular-expression class body that Python, the JSON
#: Schema of the HTTP API and Pydantic's Rust engine all read alike (``-`` last, no escapes).
#: ``+``, ``=`` and ``@`` are in it for run ids such as
#: ``manual__2026-12-07T00:35:27.935842+00:00``.
BATCH_ID_CHARACTERS: Final = "A-Za-z0-9._:+=@/-"
#: The one batch-id grammar; the HTTP schema is built from it (http/schemas.py).
BATCH_ID_PATTERN: Final = re.compile(f"[{BATCH_ID_CHARACTERS}]{{1,{BATCH_ID_MAX_LENGTH}}}")


def validate_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is 1–500 characters of letters, digits and ``._:+=@/-``."""
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        shown = batch_id if len(batch_id) <= 40 else batch_id[:40] + "…"
        raise UsageError(
            f"invalid batch id {shown!r}: use 1-{BATCH_ID_MAX_LENGTH} characters of letters,"
            " digits and ._:+=@/-"
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
