"""Random interleavings on a simulated ledger: the tag is the one the ledger's truth implies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.domain.classify import QuotaFailure, Reading, Spend, Tag, classify

T0 = datetime(2026, 1, 1, tzinfo=UTC)
amounts = st.integers(min_value=1, max_value=40).map(Decimal)
event = st.one_of(
    st.tuples(st.just("own"), amounts),
    st.tuples(st.just("other"), st.sampled_from(["A", "C"]), amounts),
    st.tuples(st.just("unrecorded"), amounts),
    st.tuples(st.just("snapshot")),
)


@dataclass
class Ledger:
    balance: Decimal
    now: int = 0
    snapshots: list[Reading] = field(default_factory=list)
    own: list[Spend] = field(default_factory=list)
    others: list[Spend] = field(default_factory=list)
    foreign_log: list[tuple[datetime, str | None, Decimal]] = field(default_factory=list)

    def tick(self) -> datetime:
        self.now += 1
        return T0 + timedelta(seconds=self.now)

    def snapshot(self, kind: str = "audit") -> Reading:
        reading = Reading(len(self.snapshots) + 1, self.tick(), self.balance, kind)
        self.snapshots.append(reading)
        return reading


def run(
    b0: Decimal, events: list[tuple[object, ...]], topups: list[int], last_cost: Decimal
) -> tuple[Ledger, Decimal, datetime]:
    """Play the events, then the batch's own jobs of ``last_cost`` until one gets a 402."""
    ledger = Ledger(b0)
    ledger.snapshot("preflight")
    for index, (kind, *args) in enumerate(events):
        if index in topups:
            ledger.balance += Decimal(50)
            ledger.tick()
        if kind == "snapshot":
            ledger.snapshot()
            continue
        cost: Decimal = args[-1]  # type: ignore[assignment]
        if kind == "own":
            when = ledger.tick()
            if cost > ledger.balance:
                return ledger, cost, when  # the vendor answers 402
            ledger.balance -= cost
            ledger.own.append(Spend("B", when, cost))
        elif cost <= ledger.balance:
            when = ledger.tick()
            ledger.balance -= cost
            batch = str(args[0]) if kind == "other" else None
            if batch:
                ledger.others.append(Spend(batch, when, cost))
            ledger.foreign_log.append((when, batch, cost))
    while True:
        when = ledger.tick()
        if last_cost > ledger.balance:
            return ledger, last_cost, when
        ledger.balance -= last_cost
        ledger.own.append(Spend("B", when, last_cost))


def failure_of(ledger: Ledger, cost: Decimal, failed_at: datetime) -> QuotaFailure:
    ledger.snapshot("failure")
    return QuotaFailure(
        batch_id="B",
        failed_at=failed_at,
        preflight=ledger.snapshots[0],
        timeline=ledger.snapshots,
        own=ledger.own,
        others=ledger.others,
        declared_cost=cost,
    )


@settings(max_examples=300, deadline=None)
@given(b0=st.integers(0, 200).map(Decimal), events=st.lists(event, max_size=30), last=amounts)
def test_tag_matches_the_ledger(
    b0: Decimal, events: list[tuple[object, ...]], last: Decimal
) -> None:
    ledger, cost, failed_at = run(b0, events, [], last)
    result = classify(failure_of(ledger, cost, failed_at))

    own_spent = sum((s.cost or Decimal(0) for s in ledger.own), Decimal(0))
    truly_low = b0 < own_spent + cost
    expected = Tag.PRE_EXISTING_LOW_BALANCE if truly_low else Tag.CONCURRENT_CONSUMPTION
    assert result.tag is expected, result.reason

    # F, its attribution and the unattributed rest are exactly the ledger's foreign spend
    # up to the evidence snapshot.
    ta = result.evidence.ta
    assert ta is not None
    window = [(batch, amount) for when, batch, amount in ledger.foreign_log if when <= ta]
    assert result.evidence.foreign == sum((a for _, a in window), Decimal(0))
    per_batch: dict[str, Decimal] = defaultdict(Decimal)
    for batch, amount in window:
        if batch:
            per_batch[batch] += amount
    assert {a.batch_id: a.cost for a in result.attribution} == per_batch
    costs = [a.cost for a in result.attribution]
    assert costs == sorted(costs, reverse=True)
    assert result.unattributed == sum((a for b, a in window if b is None), Decimal(0))


@settings(max_examples=200, deadline=None)
@given(
    b0=st.integers(0, 200).map(Decimal),
    events=st.lists(event, max_size=30),
    topups=st.lists(st.integers(0, 29), max_size=3),
    last=amounts,
)
def test_topups_never_invent_consumption(
    b0: Decimal, events: list[tuple[object, ...]], topups: list[int], last: Decimal
) -> None:
    ledger, cost, failed_at = run(b0, events, topups, last)
    result = classify(failure_of(ledger, cost, failed_at))
    own_spent = sum((s.cost or Decimal(0) for s in ledger.own), Decimal(0))
    if b0 < own_spent + cost:
        assert result.tag is Tag.PRE_EXISTING_LOW_BALANCE
    else:
        # Spend hidden inside a top-up segment cannot be seen: never a wrong tag, at worst
        # inconclusive, and F is a lower bound of the truth.
        assert result.tag in {Tag.CONCURRENT_CONSUMPTION, Tag.INCONCLUSIVE}
    truth = sum((a for _, _, a in ledger.foreign_log), Decimal(0))
    assert (result.evidence.foreign or Decimal(0)) <= truth
