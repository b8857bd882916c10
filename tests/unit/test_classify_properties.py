"""Random ledgers against their ground truth: the classifier must recover what happened.

A ledger is played on a simulated account: the batch's own jobs, other batches' jobs,
spend that nobody records, earlier 402s of any batch (declaring their cost as ``cost``,
as ``expected_cost`` or not at all), snapshots at random moments (so flat balances and
snapshots between any two events), own jobs the vendor bills only after the next
snapshot (recorded "late" relative to the balance), and top-ups. Then the batch's jobs
run until one gets a 402, recorded with its live failure snapshot or without one. After
it, life goes on: the batch's own jobs still in flight succeed, others spend, snapshots
are taken (several, or none), time passes beyond the staleness window (so later
snapshots are stale), and more 402s of the batch are recorded with their live snapshots
or without. Every outcome goes through the same validation as real input, so the
consumption rule (a quota failure consumed nothing) is exercised.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.domain.classify import QuotaFailure, Reading, Spend, Tag, classify
from preflight.domain.outcome import OutcomeStatus, build_outcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ZERO = Decimal(0)
amounts = st.integers(min_value=1, max_value=40).map(Decimal)
declaration = st.sampled_from(["cost", "expected_cost", "none"])
event = st.one_of(
    st.tuples(st.just("own"), amounts),
    st.tuples(st.just("other"), st.sampled_from(["A", "C"]), amounts),
    st.tuples(st.just("unrecorded"), amounts),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("own_402"), declaration, amounts),
    st.tuples(st.just("other_402"), st.sampled_from(["A", "C"]), declaration, amounts),
)
late_event = st.tuples(st.just("own_billed_late"), amounts)
measures = st.sampled_from(["live", "none"])
#: Staleness windows in seconds; the waits land a snapshot just inside, at and just
#: after the end of each (every event after a wait takes one more second).
windows = st.sampled_from([0, 60, 3600])
waits = st.sampled_from([1, 57, 58, 59, 60, 600, 3597, 3598, 3599, 3600, 7200])
after_event = st.one_of(
    # A job of the batch still in flight succeeds (small: the balance is nearly spent).
    st.tuples(st.just("own"), st.integers(min_value=1, max_value=3).map(Decimal)),
    st.tuples(st.just("other"), st.sampled_from(["A", "C"]), amounts),
    st.tuples(st.just("unrecorded"), amounts),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("wait"), waits),
    st.tuples(st.just("own_402"), st.booleans()),  # another 402 of B, live snapshot or not
)


def quota_fields(how: str, cost: Decimal) -> dict[str, object]:
    return {} if how == "none" else {how: str(cost)}


@dataclass
class Ledger:
    balance: Decimal
    now: int = 0
    snapshots: list[Reading] = field(default_factory=list)
    own: list[Spend] = field(default_factory=list)
    others: list[Spend] = field(default_factory=list)
    foreign_log: list[tuple[datetime, str | None, Decimal]] = field(default_factory=list)
    unbilled: Decimal = ZERO  # own cost recorded but billed only after the next snapshot
    late: Decimal = ZERO  # total own cost billed late
    topped_up: bool = False

    def tick(self) -> datetime:
        self.now += 1
        return T0 + timedelta(seconds=self.now)

    def snapshot(self, kind: str = "audit") -> Reading:
        reading = Reading(len(self.snapshots) + 1, self.tick(), self.balance, kind)
        self.snapshots.append(reading)
        self.balance -= self.unbilled
        self.unbilled = ZERO
        return reading

    def record(self, batch: str, when: datetime, **fields: object) -> None:
        item = build_outcome({"job_id": f"j{len(self.own) + len(self.others)}", **fields})
        spend = Spend(batch, when, item.cost, item.status is OutcomeStatus.SUCCEEDED)
        (self.own if batch == "B" else self.others).append(spend)

    def spend(self, batch: str | None, cost: Decimal) -> None:
        when = self.tick()
        self.balance -= cost
        if batch:
            self.record(batch, when, status="succeeded", cost=str(cost))
        if batch != "B":  # consumption by anyone but the batch
            self.foreign_log.append((when, batch, cost))


@dataclass
class Played:
    ledger: Ledger
    failure: QuotaFailure


def play(
    b0: Decimal,
    events: list[tuple[object, ...]],
    last: Decimal,
    how: str,
    measure: str,
    after: list[tuple[object, ...]],
    topups: frozenset[int] = frozenset(),
    window: timedelta = timedelta(hours=1),
    live_after: int = 0,
) -> Played:
    """Play the events, then the batch's own jobs of ``last`` until one gets a 402, then
    ``after``. With ``measure`` "live", the 402 is recorded with its live snapshot once
    ``live_after`` of the later events have happened (a worker that records it late)."""
    ledger = Ledger(b0)
    start = ledger.snapshot("preflight")
    for index, (kind, *args) in enumerate(events):
        if index in topups:
            ledger.balance += Decimal(50)
            ledger.topped_up = True
            ledger.tick()
        if kind == "snapshot":
            ledger.snapshot()
        elif kind in ("own", "own_billed_late"):
            cost: Decimal = args[-1]  # type: ignore[assignment]
            if cost <= ledger.balance - ledger.unbilled:
                ledger.record("B", ledger.tick(), status="succeeded", cost=str(cost))
                if kind == "own":
                    ledger.balance -= cost
                else:
                    ledger.unbilled += cost
                    ledger.late += cost
        elif kind in ("other", "unrecorded"):
            cost = args[-1]  # type: ignore[assignment]
            if cost <= ledger.balance - ledger.unbilled:
                ledger.spend(str(args[0]) if kind == "other" else None, cost)
        else:  # an earlier 402 of B or of another batch: it consumed nothing
            batch = "B" if kind == "own_402" else str(args[0])
            fields = quota_fields(str(args[-2]), args[-1])  # type: ignore[arg-type]
            ledger.record(batch, ledger.tick(), status="failed", http_status=402, **fields)
    # Own cost still unbilled lands after the next snapshot, maybe the measuring one.
    while last <= ledger.balance - ledger.unbilled:
        ledger.balance -= last
        ledger.record("B", ledger.tick(), status="succeeded", cost=str(last))
    failed_at = ledger.tick()
    fields = quota_fields(how, last)
    failed = build_outcome({"job_id": "failed", "status": "failed", "http_status": 402, **fields})
    ledger.record("B", failed_at, status="failed", http_status=402, **fields)
    live = None
    for index, (kind, *args) in enumerate([*after, ("end",)]):
        if measure == "live" and live is None and (index >= live_after or kind == "end"):
            live = ledger.snapshot("failure")
        if kind == "end":
            break
        if kind == "snapshot":
            ledger.snapshot()
        elif kind == "wait":
            ledger.now += int(args[0])  # type: ignore[call-overload]
        elif kind == "own_402":
            ledger.record("B", ledger.tick(), status="failed", http_status=402)
            if args[0]:
                ledger.snapshot("failure")
        else:
            cost = args[-1]  # type: ignore[assignment]
            if cost <= ledger.balance - ledger.unbilled:
                ledger.spend({"own": "B", "other": str(args[0])}.get(kind), cost)
    return Played(
        ledger,
        QuotaFailure(
            batch_id="B",
            failed_at=failed_at,
            preflight=start,
            timeline=ledger.snapshots,
            own=ledger.own,
            others=ledger.others,
            declared_cost=failed.expected_cost,
            live=live,
            staleness_window=window,
        ),
    )


def truth_horizon(case: QuotaFailure) -> datetime:
    """Where the failure's evidence ends: its window, or its live snapshot if later."""
    end = case.failed_at + case.staleness_window
    return max(end, case.live.taken_at) if case.live is not None else end


def truth_c(played: Played) -> Decimal:
    if played.failure.declared_cost is not None:
        return played.failure.declared_cost
    horizon = truth_horizon(played.failure)
    paid = [
        s.cost for s in played.ledger.own if s.succeeded and s.cost is not None and s.at <= horizon
    ]
    return sum(paid, ZERO) / len(paid) if paid else ZERO


def foreign_until(ledger: Ledger, moment: datetime) -> list[tuple[str | None, Decimal]]:
    return [(batch, cost) for when, batch, cost in ledger.foreign_log if when <= moment]


after_failure = st.lists(
    st.one_of(
        st.tuples(st.just("other"), st.just("A"), amounts),
        st.tuples(st.just("unrecorded"), amounts),
    ),
    max_size=3,
)


@settings(max_examples=500, deadline=None)
@given(
    b0=st.integers(0, 200).map(Decimal),
    events=st.lists(event, max_size=30),
    last=amounts,
    how=declaration,
    measure=measures,
    after=st.lists(after_event, max_size=10),
    window=windows,
    live_after=st.integers(0, 10),
)
def test_numbers_match_the_ledger(
    b0: Decimal,
    events: list[tuple[object, ...]],
    last: Decimal,
    how: str,
    measure: str,
    after: list[tuple[object, ...]],
    window: int,
    live_after: int,
) -> None:
    played = play(
        b0,
        events,
        last,
        how,
        measure,
        after,
        window=timedelta(seconds=window),
        live_after=live_after,
    )
    ledger, case = played.ledger, played.failure
    result = classify(case)
    evidence = result.evidence
    tf = case.failed_at

    # own(t0, tf] ends at the failure: the batch's jobs that succeeded after it are not in.
    own = sum((s.cost or ZERO for s in ledger.own if s.at <= tf), ZERO)
    c = truth_c(played)
    assert evidence.own == own
    assert evidence.expected_cost == c
    if how != "none":
        assert evidence.expected_cost_source == "declared"

    # Which snapshot measures: the live one; else the first at or after tf within the
    # window; else, whatever came later, the latest one after the check and before tf.
    in_window = [r for r in ledger.snapshots if tf <= r.taken_at <= tf + case.staleness_window]
    before = [r for r in ledger.snapshots[1:] if r.taken_at < tf]
    measuring = case.live or (in_window[0] if in_window else (before[-1] if before else None))
    later = case.live is not None or bool(in_window)

    # Nothing after the failure's horizon reaches the answer: not the later snapshots
    # (another 402's live one included), not the batch's later jobs, not others' spend.
    horizon = truth_horizon(case)
    cut = replace(
        case,
        timeline=[r for r in case.timeline if r.taken_at <= horizon],
        own=[s for s in case.own if s.at <= horizon],
        others=[s for s in case.others if s.at <= horizon],
    )
    assert classify(cut) == result

    if measuring is None:
        expected_tag = Tag.PRE_EXISTING_LOW_BALANCE if b0 < own + c else Tag.INCONCLUSIVE
        assert result.tag is expected_tag, result.reason
        assert evidence.foreign is None
        return

    window = foreign_until(ledger, measuring.taken_at)
    truth_f = sum((cost for _, cost in window), ZERO)
    assert evidence.ta == measuring.taken_at
    assert evidence.ba == measuring.balance
    assert evidence.before_failure == (not later)
    assert evidence.foreign_is_lower_bound == (not later)
    assert evidence.topups == ()  # no top-up was played: a flat balance is not one

    if before:
        truth_before = sum((cost for _, cost in foreign_until(ledger, before[-1].taken_at)), ZERO)
    if ledger.late:
        # Own cost billed after the next snapshot shifts consumption between segments:
        # F stays within the late amount of the truth, and is never negative.
        assert evidence.foreign is not None
        assert evidence.foreign >= ZERO
        assert truth_f - ledger.late <= evidence.foreign <= truth_f + ledger.late
    else:
        assert evidence.foreign == truth_f
        assert evidence.foreign_before_failure == (truth_before if before else None)

    per_batch: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for batch, cost in window:
        if batch:
            per_batch[batch] += cost
    assert {a.batch_id: a.cost for a in result.attribution} == per_batch
    costs = [a.cost for a in result.attribution]
    assert costs == sorted(costs, reverse=True)
    if not ledger.late:
        assert result.unattributed == sum((cost for b, cost in window if b is None), ZERO)
        assert not evidence.attributed_exceeds_measured

    if b0 < own + c:
        expected = Tag.PRE_EXISTING_LOW_BALANCE
    elif truth_f > 0:
        expected = Tag.CONCURRENT_CONSUMPTION
    else:
        expected = Tag.INCONCLUSIVE
    if ledger.late and expected is Tag.CONCURRENT_CONSUMPTION:
        assert result.tag in {expected, Tag.INCONCLUSIVE}, result.reason
    else:
        assert result.tag is expected, result.reason


@settings(max_examples=200, deadline=None)
@given(
    b0=st.integers(0, 200).map(Decimal),
    events=st.lists(st.one_of(event, late_event), max_size=30),
    last=amounts,
    how=declaration,
    after=after_failure,
)
def test_own_cost_billed_late_is_never_negative_spend(
    b0: Decimal,
    events: list[tuple[object, ...]],
    last: Decimal,
    how: str,
    after: list[tuple[object, ...]],
) -> None:
    played = play(b0, events, last, how, "live", after)
    result = classify(played.failure)
    assert result.evidence.foreign is not None
    assert result.evidence.foreign >= ZERO
    assert played.failure.live is not None
    measured = foreign_until(played.ledger, played.failure.live.taken_at)
    truth = sum((cost for _, cost in measured), ZERO)
    late = played.ledger.late
    assert truth - late <= result.evidence.foreign <= truth + late


@settings(max_examples=200, deadline=None)
@given(
    b0=st.integers(0, 200).map(Decimal),
    events=st.lists(event, max_size=30),
    topups=st.frozensets(st.integers(0, 29), max_size=3),
    last=amounts,
    how=declaration,
)
def test_topups_never_invent_consumption(
    b0: Decimal,
    events: list[tuple[object, ...]],
    topups: frozenset[int],
    last: Decimal,
    how: str,
) -> None:
    played = play(b0, events, last, how, "live", [], topups)
    ledger = played.ledger
    result = classify(played.failure)
    own = sum((s.cost or ZERO for s in ledger.own), ZERO)
    if b0 < own + truth_c(played):
        assert result.tag is Tag.PRE_EXISTING_LOW_BALANCE
    else:
        # Spend hidden inside a top-up segment cannot be seen: never a wrong tag, at worst
        # inconclusive, and F is a lower bound of the truth.
        assert result.tag in {Tag.CONCURRENT_CONSUMPTION, Tag.INCONCLUSIVE}
    truth = sum((a for _, _, a in ledger.foreign_log), ZERO)
    assert (result.evidence.foreign or ZERO) <= truth
    if not ledger.topped_up:
        assert result.evidence.topups == ()
