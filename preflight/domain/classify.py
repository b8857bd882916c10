"""Why did a job fail for quota? A pure function from stored rows to a tag.

For a quota failure of batch B at time tf, on B's meter (design.md, "Classifying a
quota failure"):

- b0: the balance in B's preflight snapshot, at t0;
- own(t0, t]: B's recorded cost of outcomes in (t0, t];
- c: the failed job's expected cost (declared, else B's mean cost per succeeded job, else 0);
- F: foreign consumption, summed segment by segment over the account's snapshot
  timeline from t0 to the evidence snapshot: each segment's balance drop minus B's own
  cost in it. A segment whose balance rose is a top-up (or a period reset): it is
  never read as negative consumption, contributes nothing, and makes F a lower bound.

Evidence: the latest snapshot in (t0, tf] bounds the foreign consumption *before* the
failure and is preferred when it already shows F above tolerance; otherwise the first
snapshot at or after tf (within the staleness window) is used.

Tags: ``pre_existing_low_balance`` when b0 < own(t0, tf] + c; else
``concurrent_consumption`` when F > tolerance; else ``inconclusive`` with the reason.
F is attributed to the other batches that recorded cost in the evidence window,
largest first; the rest is unattributed (spend that nothing recorded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from itertools import pairwise
from typing import Any, Final

from preflight.domain.exact import exact
from preflight.domain.wire import amount_text, time_text

CLASSIFIER_VERSION: Final = "1"
ZERO: Final = Decimal(0)


class Tag(StrEnum):
    PRE_EXISTING_LOW_BALANCE = "pre_existing_low_balance"
    CONCURRENT_CONSUMPTION = "concurrent_consumption"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Reading:
    """One snapshot of the account, read on the failed batch's meter (None: meter absent)."""

    snapshot_id: int
    taken_at: datetime
    balance: Decimal | None
    kind: str = "audit"


@dataclass(frozen=True)
class Spend:
    """One recorded outcome's cost on the account (``cost`` None: not recorded)."""

    batch_id: str
    at: datetime
    cost: Decimal | None
    succeeded: bool = True


@dataclass(frozen=True)
class QuotaFailure:
    """Everything the classifier reads, already loaded from the database."""

    batch_id: str
    failed_at: datetime
    preflight: Reading | None
    timeline: Sequence[Reading]
    own: Sequence[Spend]
    others: Sequence[Spend]
    declared_cost: Decimal | None = None
    staleness_window: timedelta = timedelta(hours=1)
    tolerance: Decimal = ZERO


@dataclass(frozen=True)
class Attributed:
    batch_id: str
    cost: Decimal


@dataclass(frozen=True)
class Evidence:
    b0: Decimal | None = None
    t0: datetime | None = None
    ba: Decimal | None = None
    ta: datetime | None = None
    own: Decimal | None = None  # own(t0, tf]
    expected_cost: Decimal | None = None
    expected_cost_source: str | None = None  # declared | mean_succeeded | unknown
    foreign: Decimal | None = None  # F over (t0, ta]
    foreign_is_lower_bound: bool = False
    before_failure: bool = False  # ta <= tf: F bounds consumption before the failure
    topups: tuple[tuple[int, int], ...] = ()  # (from snapshot, to snapshot) where it rose
    snapshot_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "b0": amount_text(self.b0),
            "t0": time_text(self.t0),
            "ba": amount_text(self.ba),
            "ta": time_text(self.ta),
            "own": amount_text(self.own),
            "expected_cost": amount_text(self.expected_cost),
            "expected_cost_source": self.expected_cost_source,
            "foreign": amount_text(self.foreign),
            "foreign_is_lower_bound": self.foreign_is_lower_bound,
            "before_failure": self.before_failure,
            "topup": bool(self.topups),
            "topups": [list(pair) for pair in self.topups],
            "snapshot_ids": list(self.snapshot_ids),
        }


@dataclass(frozen=True)
class Classification:
    tag: Tag
    reason: str
    evidence: Evidence
    attribution: tuple[Attributed, ...] = ()
    unattributed: Decimal | None = None
    version: str = field(default=CLASSIFIER_VERSION)


@dataclass(frozen=True)
class ForeignConsumption:
    """Consumption by others between two readings, split at top-ups."""

    amount: Decimal
    end: Reading
    topups: tuple[tuple[int, int], ...]  # (before, after) snapshot ids where the balance rose
    snapshot_ids: tuple[int, ...]

    @property
    def is_lower_bound(self) -> bool:
        return bool(self.topups)


def _sum_costs(spends: Iterable[Spend], start: datetime, end: datetime) -> Decimal:
    return sum((s.cost or ZERO for s in spends if start < s.at <= end), ZERO)


def _expected_cost(failure: QuotaFailure) -> tuple[Decimal, str]:
    if failure.declared_cost is not None:
        return failure.declared_cost, "declared"
    paid = [s.cost for s in failure.own if s.succeeded and s.cost is not None]
    if paid:
        total = sum(paid, ZERO)
        # An estimate: the usual 28 digits, not the 200 that keep sums exact.
        with localcontext() as context:
            context.prec = 28
            return +(total / len(paid)), "mean_succeeded"
    return ZERO, "unknown"


@exact
def foreign_consumption(
    start: Reading, end: Reading, readings: Sequence[Reading], own: Sequence[Spend]
) -> ForeignConsumption:
    """F from ``start`` to ``end`` through every reading in between, split at top-ups.

    Each segment's balance drop minus the batch's own cost in it; a segment whose
    balance rose contributes nothing and makes the total a lower bound.
    """
    path = [start, *[r for r in readings if start.taken_at < r.taken_at < end.taken_at], end]
    total = ZERO
    topups: list[tuple[int, int]] = []
    for before, after in pairwise(path):
        assert before.balance is not None
        assert after.balance is not None
        if after.balance > before.balance:
            topups.append((before.snapshot_id, after.snapshot_id))
            continue
        drop = before.balance - after.balance
        own_cost = _sum_costs(own, before.taken_at, after.taken_at)
        # Own cost recorded a little late can exceed a segment's drop: not negative spend.
        total += max(drop - own_cost, ZERO)
    return ForeignConsumption(total, end, tuple(topups), tuple(r.snapshot_id for r in path))


@exact
def classify(failure: QuotaFailure) -> Classification:
    """Tag one quota failure. Deterministic: the same rows always give the same answer."""
    b0_reading = failure.preflight
    if b0_reading is None:
        return Classification(
            Tag.INCONCLUSIVE, "no preflight snapshot: the batch was never checked", Evidence()
        )
    if b0_reading.balance is None:
        return Classification(
            Tag.INCONCLUSIVE,
            "the meter is absent from the preflight snapshot",
            Evidence(t0=b0_reading.taken_at, snapshot_ids=(b0_reading.snapshot_id,)),
        )
    b0, t0, tf = b0_reading.balance, b0_reading.taken_at, failure.failed_at
    unknown = [s for s in failure.own if s.succeeded and s.cost is None and t0 < s.at <= tf]
    own = _sum_costs(failure.own, t0, tf)
    c, c_source = _expected_cost(failure)

    usable = sorted(
        (
            r
            for r in failure.timeline
            if r.balance is not None and r.snapshot_id != b0_reading.snapshot_id
        ),
        key=lambda r: (r.taken_at, r.snapshot_id),
    )
    before = [r for r in usable if t0 < r.taken_at <= tf]
    after = [r for r in usable if tf < r.taken_at <= tf + failure.staleness_window]
    candidates: list[ForeignConsumption] = []
    if before:
        candidates.append(foreign_consumption(b0_reading, before[-1], usable, failure.own))
    if after:
        candidates.append(foreign_consumption(b0_reading, after[0], usable, failure.own))
    # The snapshot before the failure is preferred when it already shows foreign spend.
    foreign = next(
        (f for f in candidates if f.amount > failure.tolerance),
        candidates[-1] if after else None,
    )

    evidence = Evidence(
        b0=b0,
        t0=t0,
        own=own,
        expected_cost=c,
        expected_cost_source=c_source,
        snapshot_ids=(b0_reading.snapshot_id,),
    )
    attribution: tuple[Attributed, ...] = ()
    unattributed: Decimal | None = None
    if foreign is not None:
        evidence = Evidence(
            b0=b0,
            t0=t0,
            ba=foreign.end.balance,
            ta=foreign.end.taken_at,
            own=own,
            expected_cost=c,
            expected_cost_source=c_source,
            foreign=foreign.amount,
            foreign_is_lower_bound=bool(foreign.topups),
            before_failure=foreign.end.taken_at <= tf,
            topups=foreign.topups,
            snapshot_ids=foreign.snapshot_ids,
        )
        attribution, unattributed = _attribute(failure.others, t0, foreign)

    def result(tag: Tag, reason: str) -> Classification:
        return Classification(tag, reason, evidence, attribution, unattributed)

    if unknown:
        return result(
            Tag.INCONCLUSIVE,
            f"costs unknown: {len(unknown)} succeeded job(s) of the batch recorded no cost",
        )
    if b0 < own + c:
        also = f"; foreign consumption {foreign.amount} was also seen" if foreign else ""
        return result(
            Tag.PRE_EXISTING_LOW_BALANCE,
            f"balance at the check {b0} could not cover the batch's own cost {own} "
            f"plus this job's expected {c}{also}",
        )
    if foreign is None:
        return result(
            Tag.INCONCLUSIVE,
            "no usable snapshot after the check "
            f"(none at or after the failure within {failure.staleness_window})",
        )
    if foreign.amount > failure.tolerance:
        bound = " at least" if foreign.topups else ""
        return result(
            Tag.CONCURRENT_CONSUMPTION,
            f"balance at the check {b0} covered own cost {own} + expected {c}, but others "
            f"spent{bound} {foreign.amount} between the check and "
            f"{'the failure' if foreign.end.taken_at <= tf else 'the snapshot after it'}",
        )
    return result(
        Tag.INCONCLUSIVE,
        f"balance at the check {b0} covered own cost {own} + expected {c} and no foreign "
        f"consumption above tolerance {failure.tolerance} was seen",
    )


def _attribute(
    others: Sequence[Spend], t0: datetime, foreign: ForeignConsumption
) -> tuple[tuple[Attributed, ...], Decimal]:
    per_batch: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for spend in others:
        if spend.cost and t0 < spend.at <= foreign.end.taken_at:
            per_batch[spend.batch_id] += spend.cost
    ranked = tuple(
        Attributed(batch_id, cost)
        for batch_id, cost in sorted(per_batch.items(), key=lambda item: (-item[1], item[0]))
    )
    attributed = sum((a.cost for a in ranked), ZERO)
    return ranked, max(foreign.amount - attributed, ZERO)
