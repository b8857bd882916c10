"""What an open batch holds of its account's balance, so that a check of another batch
sees it as spoken for: the hold rule, defined here once.

A batch holds its outstanding need, max(need − consumed, 0), while it is open with a need
and has been active (checked, or an outcome recorded) since the hold expiry; otherwise it
holds nothing. The stores keep each batch's hold and their sum on its account
(``held_need``); their SQL spelling of this rule is held to it by
``tests/integration/test_hold_rule.py``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from preflight.domain.exact import exact
from preflight.domain.verdict import outstanding_need
from preflight.domain.vocabulary import BatchStatus

_OPEN = BatchStatus.OPEN.value


def hold(
    status: str,
    need: Decimal | None,
    consumed: Decimal,
    *,
    last_activity_at: datetime | None = None,
    cutoff: datetime | None = None,
) -> Decimal | None:
    """What a batch holds: its outstanding need while open with a need and active since
    ``cutoff`` (now − the hold expiry; without one, the batch is active now); else None."""
    if status != _OPEN or need is None:
        return None
    if cutoff is not None and last_activity_at is not None and last_activity_at < cutoff:
        return None
    return outstanding_need(need, consumed)


@exact
def hold_change(before: Decimal | None, after: Decimal | None) -> Decimal:
    """How much a batch's hold going from ``before`` to ``after`` changes its account's
    held need."""
    return (after or Decimal(0)) - (before or Decimal(0))
