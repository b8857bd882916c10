"""Why did a job fail for quota? A pure function from stored rows to a tag.

For a quota failure of batch B at time tf, on B's meter (docs/classification.md):

- b0 at t0: the balance in B's preflight snapshot. A failure before t0 has no
  preflight evidence and is ``inconclusive``.
- ba at ta: the snapshot that *measures* the failure: the failure snapshot taken live
  when the 402 was recorded; else the first snapshot at or after tf within the
  staleness window; else (none in the window, whether or not staler ones came later)
  the latest one in (t0, tf], and F is then a lower bound.
- The failure's horizon (:func:`evidence_horizon`): the end of its staleness window, or
  its live snapshot when that was taken later. Nothing after it changes the answer:
  not later snapshots, not another failure of the batch, not later jobs.
- own(t0, t]: B's consumed cost in (t0, t]. A quota failure consumed nothing: the
  cost it declares is its expected cost (normalised in :mod:`preflight.domain.outcome`
  before anything is stored), so the ``cost`` of a :class:`Spend` is consumption.
- c: the failed job's expected cost (declared, else B's mean per succeeded job
  recorded up to the horizon, else 0).
- F: foreign consumption from t0 to ta, segment by segment over the account's
  timeline: each segment's drop minus B's own cost in it, never below zero. A segment
  whose balance rose is a top-up (or a period reset): it contributes nothing and makes
  F a lower bound.
- foreign_before_failure: the same walk up to the latest snapshot strictly between t0
  and tf, when there is one: consumption that certainly came before the failure.

Tags: ``pre_existing_low_balance`` when b0 < own(t0, tf] + c; else
``concurrent_consumption`` when F > tolerance; else ``inconclusive`` with the reason.
F is attributed to the other batches that consumed in (t0, ta], largest first; the rest
is unattributed (spend that nothing recorded).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import Any, Final

from preflight.domain.exact import exact
from preflight.domain.vocabulary import Tag
from preflight.domain.wire import amount_text, time_text

__all__ = [
    "CLASSIFIER_VERSION",
    "Attributed",
    "Classification",
    "Evidence",
    "ForeignConsumption",
    "QuotaFailure",
    "Reading",
    "Spend",
    "Tag",
    "classify",
    "evidence_horizon",
    "foreign_consumption",
]

#: Stored with every tag; tags of another version are reclassified. 3: with no snapshot in
#: the staleness window, the latest one before the failure measures it even when staler
#: ones came later, and nothing after the failure's horizon changes its answer.
CLASSIFIER_VERSION: Final = "3"
ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class Reading:
    """One snapshot of the account, read on the failed batch's meter (None: meter absent)."""

    snapshot_id: int
    taken_at: datetime
    balance: Decimal | None
    kind: str = "audit"


@dataclass(frozen=True)
class Spend:
    """One recorded outcome's consumed cost on the account (``cost`` None: not recorded)."""

    batch_id: str
    at: datetime
    cost: Decimal | None
    succeeded: bool = True


def evidence_horizon(
    failed_at: datetime, staleness_window: timedelta, live: Reading | None = None
) -> datetime:
    """The last instant whose rows can change a failure's answer: the end of its staleness
    window, or its live snapshot when that was taken later (a failure recorded late).

    Rows after it never reach the answer, so one failure's answer is the same whatever
    other failures of its batch exist, and stays put once the window has passed.
    """
    end = failed_at + staleness_window
    return end if live is None else max(end, live.taken_at)


@dataclass(frozen=True)
class QuotaFailure:
    """Everything the classifier reads, already loaded from the database.

    Rows after :attr:`horizon` may be given; they never change the answer.
    """

    batch_id: str
    failed_at: datetime
    preflight: Reading | None
    timeline: Sequence[Reading]
    own: Sequence[Spend]
    others: Sequence[Spend]
    declared_cost: Decimal | None = None
    #: The ``failure`` snapshot taken when this 402 was recorded, if one was.
    live: Reading | None = None
    meter: str = "the meter"
    staleness_window: timedelta = timedelta(hours=1)
    tolerance: Decimal = ZERO

    @property
    def horizon(self) -> datetime:
        """This failure's :func:`evidence_horizon`."""
        return evidence_horizon(self.failed_at, self.staleness_window, self.live)


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
    foreign_before_failure: Decimal | None = None  # F up to the last snapshot before tf
    before_failure: bool = False  # ta < tf: no snapshot after the failure measured it
    attributed_exceeds_measured: bool = False  # recorded costs of others > F
    topups: tuple[tuple[int, int], ...] = ()  # (from snapshot, to snapshot) where it rose
    snapshot_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # As stored with the tag; preflight.contract.EVIDENCE writes the same keys and reads
        # them back (tests/unit/test_contract.py holds the two equal).
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
            "foreign_before_failure": amount_text(self.foreign_before_failure),
            "before_failure": self.before_failure,
            "attributed_exceeds_measured": self.attributed_exceeds_measured,
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
    horizon = failure.horizon
    paid = [s.cost for s in failure.own if s.succeeded and s.cost is not None and s.at <= horizon]
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
    balance rose contributes nothing and makes the total a lower bound. Readings
    without the meter are skipped.
    """
    between = sorted(
        (
            r
            for r in readings
            if r.balance is not None and start.taken_at < r.taken_at < end.taken_at
        ),
        key=lambda r: (r.taken_at, r.snapshot_id),
    )
    path = [start, *between, end]
    # Own cost per segment from prefix sums over the spends in time order: linear in the
    # snapshots and spends, where summing every spend per segment was quadratic (a report
    # walks 100,000 snapshots).
    spends = sorted((s for s in own if s.cost), key=lambda s: s.at)
    times = [s.at for s in spends]
    prefix = [ZERO]
    for spend in spends:
        assert spend.cost is not None
        prefix.append(prefix[-1] + spend.cost)
    total = ZERO
    topups: list[tuple[int, int]] = []
    for before, after in pairwise(path):
        assert before.balance is not None
        assert after.balance is not None
        if after.balance > before.balance:
            topups.append((before.snapshot_id, after.snapshot_id))
            continue
        drop = before.balance - after.balance
        own_cost = (
            prefix[bisect_right(times, after.taken_at)]
            - prefix[bisect_right(times, before.taken_at)]
        )
        # Own cost the vendor billed later than the outcome says (so after this
        # segment's closing snapshot) can exceed the drop: never negative spend.
        total += max(drop - own_cost, ZERO)
    return ForeignConsumption(total, end, tuple(topups), tuple(r.snapshot_id for r in path))


@dataclass(frozen=True)
class _Measure:
    reading: Reading
    before_failure: bool  # no snapshot at or after tf: the latest one before it


def _measuring(failure: QuotaFailure, start: Reading) -> _Measure | None:
    """The snapshot that measures the failure (see the module docstring)."""
    if failure.live is not None:
        return _Measure(failure.live, before_failure=False)
    tf = failure.failed_at
    others = sorted(
        (r for r in failure.timeline if r.snapshot_id != start.snapshot_id),
        key=lambda r: (r.taken_at, r.snapshot_id),
    )
    after = [r for r in others if tf <= r.taken_at <= tf + failure.staleness_window]
    if after:
        return _Measure(after[0], before_failure=False)
    # Snapshots after the window, if any, are too stale to say anything about this
    # failure: they never take its measure from the reading before it.
    before = [r for r in others if start.taken_at < r.taken_at < tf]
    return _Measure(before[-1], before_failure=True) if before else None


@exact
def classify(failure: QuotaFailure) -> Classification:
    """Tag one quota failure. Deterministic: the same rows always give the same answer."""
    start = failure.preflight
    if start is None:
        return Classification(
            Tag.INCONCLUSIVE, "no preflight snapshot: the batch was never checked", Evidence()
        )
    t0, tf = start.taken_at, failure.failed_at
    if tf < t0:
        return Classification(
            Tag.INCONCLUSIVE,
            "the failure happened before the batch was checked",
            Evidence(t0=t0, snapshot_ids=(start.snapshot_id,)),
        )
    if start.balance is None:
        return Classification(
            Tag.INCONCLUSIVE,
            f"{failure.meter} is absent from the preflight snapshot {start.snapshot_id}",
            Evidence(t0=t0, snapshot_ids=(start.snapshot_id,)),
        )
    b0 = start.balance
    unknown = [s for s in failure.own if s.succeeded and s.cost is None and t0 < s.at <= tf]
    own = _sum_costs(failure.own, t0, tf)
    c, c_source = _expected_cost(failure)
    evidence = Evidence(
        b0=b0,
        t0=t0,
        own=own,
        expected_cost=c,
        expected_cost_source=c_source,
        snapshot_ids=(start.snapshot_id,),
    )
    attribution: tuple[Attributed, ...] = ()
    unattributed: Decimal | None = None
    measure = _measuring(failure, start)
    measurable = measure is not None and measure.reading.balance is not None
    if measure is not None and measurable:
        foreign = foreign_consumption(start, measure.reading, failure.timeline, failure.own)
        before_tf = [
            r
            for r in failure.timeline
            if r.balance is not None and t0 < r.taken_at < tf and r.snapshot_id != start.snapshot_id
        ]
        bound = (
            foreign_consumption(
                start,
                max(before_tf, key=lambda r: (r.taken_at, r.snapshot_id)),
                failure.timeline,
                failure.own,
            ).amount
            if before_tf
            else None
        )
        attribution, unattributed, exceeds = _attribute(failure.others, t0, foreign)
        evidence = Evidence(
            b0=b0,
            t0=t0,
            ba=measure.reading.balance,
            ta=measure.reading.taken_at,
            own=own,
            expected_cost=c,
            expected_cost_source=c_source,
            foreign=foreign.amount,
            foreign_is_lower_bound=bool(foreign.topups) or measure.before_failure,
            foreign_before_failure=bound,
            before_failure=measure.before_failure,
            attributed_exceeds_measured=exceeds,
            topups=foreign.topups,
            snapshot_ids=foreign.snapshot_ids,
        )

    def result(tag: Tag, reason: str) -> Classification:
        return Classification(tag, reason, evidence, attribution, unattributed)

    if unknown:
        return result(
            Tag.INCONCLUSIVE,
            f"costs unknown: {len(unknown)} succeeded job(s) of the batch recorded no cost",
        )
    if b0 < own + c:
        also = f"; foreign consumption {evidence.foreign} was also seen" if evidence.foreign else ""
        return result(
            Tag.PRE_EXISTING_LOW_BALANCE,
            f"balance at the check {b0} could not cover the batch's own cost {own} "
            f"plus this job's expected {c}{also}",
        )
    if measure is None:
        return result(
            Tag.INCONCLUSIVE,
            "no usable snapshot after the check "
            f"(none at or after the failure within {failure.staleness_window})",
        )
    if not measurable:
        return result(
            Tag.INCONCLUSIVE,
            f"{failure.meter} is absent from snapshot {measure.reading.snapshot_id}, "
            "which would measure the failure",
        )
    assert evidence.foreign is not None
    if evidence.foreign > failure.tolerance:
        bound_text = " at least" if evidence.foreign_is_lower_bound else ""
        until = "the failure" if measure.before_failure else "the snapshot that measured it"
        return result(
            Tag.CONCURRENT_CONSUMPTION,
            f"balance at the check {b0} covered own cost {own} + expected {c}, but others "
            f"spent{bound_text} {evidence.foreign} between the check and {until}",
        )
    return result(
        Tag.INCONCLUSIVE,
        f"balance at the check {b0} covered own cost {own} + expected {c} and no foreign "
        f"consumption above tolerance {failure.tolerance} was seen",
    )


def _attribute(
    others: Sequence[Spend], t0: datetime, foreign: ForeignConsumption
) -> tuple[tuple[Attributed, ...], Decimal, bool]:
    """Other batches' consumption in (t0, ta], largest first; the unattributed rest of F,
    and whether what others recorded exceeds F (recorded late, or vendor rounding)."""
    per_batch: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for spend in others:
        if spend.cost and t0 < spend.at <= foreign.end.taken_at:
            per_batch[spend.batch_id] += spend.cost
    ranked = tuple(
        Attributed(batch_id, cost)
        for batch_id, cost in sorted(per_batch.items(), key=lambda item: (-item[1], item[0]))
    )
    attributed = sum((a.cost for a in ranked), ZERO)
    return ranked, max(foreign.amount - attributed, ZERO), attributed > foreign.amount
