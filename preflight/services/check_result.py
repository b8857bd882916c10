"""The check's typed answer, ``CheckResult`` (re-exported by :mod:`preflight.services.results`).

Kept apart from the other read models so that a cold ``preflight check`` imports only this
one: creating a frozen dataclass costs about a millisecond at import, and there are
seventeen of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from preflight import contract
from preflight.contract import ADVISORY, Wire
from preflight.domain.verdict import NO_GO, Verdict

if TYPE_CHECKING:
    from preflight.domain.forecast import NeedBasis

__all__ = ["ADVISORY", "CheckResult"]


@contract.CHECK.binds
@dataclass(frozen=True)
class CheckResult(Wire):
    """The answer to "may batch B, needing N, be dispatched now?"."""

    batch_id: str
    account: str
    verdict: Verdict
    reason: str
    meter: str | None
    balance: Decimal | None
    need: Decimal | None
    reserve: Decimal
    outstanding_other: Decimal | None
    snapshot_id: int | None
    snapshot_kind: str | None
    checked_at: datetime
    status: str
    verified: bool
    fail_open: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    #: How the need was estimated from history (``jobs`` with ``estimate_from``), else None.
    need_basis: NeedBasis | None = None

    @property
    def go(self) -> bool:
        """True when the orchestrator may dispatch (go, at_risk, or unavailable with fail-open)."""
        return self.verdict not in NO_GO or (self.verdict is Verdict.UNAVAILABLE and self.fail_open)
