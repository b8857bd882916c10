"""Preflight verdicts: go / no-go from a balance, a need and what other batches still hold.

The check is advisory, not a reservation: it reads the balance at one instant. A verdict's
exit code is an edge's business (:mod:`preflight.contract`), not the domain's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from preflight.domain.exact import exact
from preflight.domain.wire import amount_text


class Verdict(StrEnum):
    GO = "go"
    AT_RISK = "at_risk"
    INSUFFICIENT = "insufficient"
    AUTH_FAILED = "auth_failed"
    BILLING_BLOCKED = "billing_blocked"
    UNAVAILABLE = "unavailable"


#: Verdicts after which the orchestrator should not dispatch.
NO_GO: Final = frozenset(
    {Verdict.INSUFFICIENT, Verdict.AUTH_FAILED, Verdict.BILLING_BLOCKED, Verdict.UNAVAILABLE}
)


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reason: str


@exact
def outstanding_need(need: Decimal | None, recorded_cost: Decimal) -> Decimal:
    """What an open batch may still spend: max(need − recorded cost, 0); nothing if no need."""
    if need is None:
        return Decimal(0)
    return max(need - recorded_cost, Decimal(0))


@exact
def assess(
    balance: Decimal, need: Decimal, reserve: Decimal, outstanding_other: Decimal
) -> Assessment:
    """Decide from one balance reading.

    - ``insufficient`` when balance < need + reserve: the low balance exists before dispatch;
    - ``at_risk`` when it covers need + reserve, but not once the other open batches of the
      account take what they still declared: balance − outstanding_other < need;
    - ``go`` otherwise.
    """
    # Plain decimals, never an exponent: the same digits as the JSON and the table print.
    b, n, r, o = (amount_text(x) for x in (balance, need, reserve, outstanding_other))
    if balance < need + reserve:
        return Assessment(Verdict.INSUFFICIENT, f"balance {b} is below need {n} + reserve {r}")
    if balance - outstanding_other < need:
        return Assessment(
            Verdict.AT_RISK,
            f"balance {b} minus {o} still outstanding for other open "
            f"batches leaves less than need {n}",
        )
    return Assessment(Verdict.GO, f"balance {b} covers need {n} + reserve {r}")
