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
from typing import TYPE_CHECKING, Any, Final

from preflight.domain.verdict import NO_GO, Verdict
from preflight.domain.wire import amount_text

if TYPE_CHECKING:
    from preflight.domain.forecast import NeedBasis

__all__ = ["ADVISORY", "CheckResult"]

ADVISORY: Final = "advisory: the balance was read, not reserved; other workers may still spend it"


@dataclass(frozen=True)
class CheckResult:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "account": self.account,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "meter": self.meter,
            "balance": amount_text(self.balance),
            "need": amount_text(self.need),
            "need_basis": None if self.need_basis is None else self.need_basis.to_dict(),
            "reserve": amount_text(self.reserve),
            "outstanding_other": amount_text(self.outstanding_other),
            "snapshot_id": self.snapshot_id,
            "snapshot_kind": self.snapshot_kind,
            "checked_at": self.checked_at.isoformat(),
            "status": self.status,
            "verified": self.verified,
            "fail_open": self.fail_open,
            "labels": dict(self.labels),
            "advisory": ADVISORY,
        }
