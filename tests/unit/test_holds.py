"""The hold rule (:mod:`preflight.domain.holds`): what an open batch holds of its account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from preflight.domain.holds import hold, hold_change

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(minutes=30)


@pytest.mark.parametrize(
    ("status", "need", "consumed", "last_activity_at", "held"),
    [
        ("open", Decimal("10"), Decimal("4"), NOW, Decimal("6")),
        ("open", Decimal("10"), Decimal("12.5"), NOW, Decimal("0")),  # spent past its need
        ("open", Decimal("10"), Decimal("0"), CUTOFF, Decimal("10")),  # active at the cutoff
        ("open", Decimal("10"), Decimal("0"), CUTOFF - timedelta(microseconds=1), None),
        ("open", None, Decimal("0"), NOW, None),  # no need: nothing spoken for
        ("blocked", Decimal("10"), Decimal("0"), NOW, None),
        ("finished", Decimal("10"), Decimal("0"), NOW, None),
    ],
)
def test_the_hold_rule(
    status: str,
    need: Decimal | None,
    consumed: Decimal,
    last_activity_at: datetime,
    held: Decimal | None,
) -> None:
    assert hold(status, need, consumed, last_activity_at=last_activity_at, cutoff=CUTOFF) == held


amounts = st.decimals(min_value=0, max_value=10**12, places=6)


@given(need=amounts, consumed=amounts)
def test_an_open_batch_active_now_holds_what_it_may_still_spend(
    need: Decimal, consumed: Decimal
) -> None:
    held = hold("open", need, consumed)
    assert held == max(need - consumed, Decimal(0))
    assert hold_change(None, held) == held
    assert hold_change(held, None) == -held
