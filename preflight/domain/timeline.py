"""An account's balance timeline as a report reads it: pure functions, no I/O.

The report (``preflight report``) draws every snapshot of an account over a window,
the batches that were running in it, and splits a batch's balance drop into its own
consumed cost, each other batch's, and the unattributed rest. These functions hold
that arithmetic, exactly (``Decimal``), so that the service only loads rows and the
renderer only draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from operator import attrgetter
from typing import Any, Final

from preflight.domain.classify import (
    Attributed,
    Reading,
    Spend,
    foreign_consumption,
)
from preflight.domain.exact import exact
from preflight.domain.vocabulary import METERS
from preflight.domain.wire import amount_text, meters_text, time_text

ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class TimelineSnapshot:
    """One snapshot of the account's timeline, with both meters (None: absent)."""

    id: int
    taken_at: datetime
    kind: str
    credits: Decimal | None
    api_quota_remaining: Decimal | None
    batch_id: str | None = None  # the batch that took it, if any
    # Any other vendor's meters by name (characters, usd, ...); None: there is none.
    extra_meters: Mapping[str, Decimal] | None = field(default=None, hash=False)

    def balance(self, meter: str | None) -> Decimal | None:
        if meter == "credits":
            return self.credits
        if meter == "api_quota_remaining":
            return self.api_quota_remaining
        if meter is None or not self.extra_meters:
            return None
        return self.extra_meters.get(meter)

    def reading(self, meter: str | None) -> Reading:
        return Reading(self.id, self.taken_at, self.balance(meter), self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "taken_at": time_text(self.taken_at),
            "kind": self.kind,
            "credits": amount_text(self.credits),
            "api_quota_remaining": amount_text(self.api_quota_remaining),
            "batch_id": self.batch_id,
            # Only for a vendor with other meters: the first vendor's JSON stays as it was.
            **({"meters": meters_text(self.extra_meters)} if self.extra_meters else {}),
        }


@dataclass(frozen=True)
class BatchSpan:
    """A batch that ran in a window: from its check (or creation) to its finish (or its
    last sign of life when still open), and the cost it consumed in the window."""

    batch_id: str
    start: datetime
    end: datetime
    status: str
    meter: str | None
    cost: Decimal = ZERO

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "start": time_text(self.start),
            "end": time_text(self.end),
            "status": self.status,
            "meter": self.meter,
            "cost": amount_text(self.cost),
        }


@dataclass(frozen=True)
class Rise:
    """The balance rose between two consecutive snapshots: a top-up or a period reset."""

    before_id: int
    after_id: int
    at: datetime
    amount: Decimal
    balance: Decimal  # after the rise


def readings(timeline: Sequence[TimelineSnapshot], meter: str) -> list[Reading]:
    """The timeline on ``meter``, as the classifier reads it."""
    if meter in METERS:
        value = attrgetter(meter)
        return [Reading(s.id, s.taken_at, value(s), s.kind) for s in timeline]
    return [Reading(s.id, s.taken_at, s.balance(meter), s.kind) for s in timeline]


def default_meter(
    timeline: Sequence[TimelineSnapshot], meter: str | None, order: Sequence[str] = METERS
) -> str | None:
    """``meter`` when given, else the audit's rule: the first meter in ``order`` (the
    vendor adapter's preference: credits, then api_quota_remaining by default) that the
    latest snapshot has, else the first other meter it has by name (None: none)."""
    if meter is not None:
        return meter
    for snapshot in reversed(timeline):
        for name in order:
            if snapshot.balance(name) is not None:
                return name
        for name in METERS:
            if snapshot.balance(name) is not None:
                return name
        if snapshot.extra_meters:
            return min(snapshot.extra_meters)
    return None


@exact
def rises(timeline: Sequence[TimelineSnapshot], meter: str | None) -> list[Rise]:
    """Where the balance on ``meter`` rose between consecutive readings that have it."""
    usable = [s for s in timeline if s.balance(meter) is not None]
    found: list[Rise] = []
    for before, after in pairwise(usable):
        start, end = before.balance(meter), after.balance(meter)
        assert start is not None
        assert end is not None
        if end > start:
            found.append(Rise(before.id, after.id, after.taken_at, end - start, end))
    return found


@dataclass(frozen=True)
class DropSplit:
    """A batch's balance drop from its check to ``end``, split into its own consumed cost,
    each other batch's recorded cost (largest first) and the unattributed rest.

    The foreign part is the classifier's walk (docs/classification.md), and it is
    attributed by the same rule as a quota failure's F. ``own + attributed +
    unattributed`` equals the drop unless the balance rose in between (then the drop
    understates what was consumed: ``foreign_is_lower_bound``), own cost was billed after
    a segment's closing snapshot, or others recorded more than the drop shows.
    """

    meter: str
    start: Reading
    end: Reading
    own: Decimal
    foreign: Decimal
    foreign_is_lower_bound: bool
    others: tuple[Attributed, ...]
    unattributed: Decimal
    attributed_exceeds_measured: bool
    topups: tuple[tuple[int, int], ...]

    @property
    @exact
    def drop(self) -> Decimal:
        assert self.start.balance is not None
        assert self.end.balance is not None
        return self.start.balance - self.end.balance

    @property
    @exact
    def parts_total(self) -> Decimal:
        return self.own + sum((a.cost for a in self.others), ZERO) + self.unattributed

    def to_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "start_snapshot_id": self.start.snapshot_id,
            "end_snapshot_id": self.end.snapshot_id,
            "start_balance": amount_text(self.start.balance),
            "end_balance": amount_text(self.end.balance),
            "drop": amount_text(self.drop),
            "own": amount_text(self.own),
            "foreign": amount_text(self.foreign),
            "foreign_is_lower_bound": self.foreign_is_lower_bound,
            "others": [{"batch_id": a.batch_id, "cost": amount_text(a.cost)} for a in self.others],
            "unattributed": amount_text(self.unattributed),
            "attributed_exceeds_measured": self.attributed_exceeds_measured,
            "topups": [list(pair) for pair in self.topups],
        }


@exact
def split_drop(
    meter: str,
    start: Reading,
    end: Reading,
    readings: Sequence[Reading],
    own: Sequence[Spend],
    others: Mapping[str, Decimal],
) -> DropSplit | None:
    """Split the drop from ``start`` to ``end`` (None when either lacks the meter).

    ``own``: the batch's consumed costs in (start, end]; ``others``: what each other
    batch on the meter recorded in the same interval.
    """
    if start.balance is None or end.balance is None or end.taken_at < start.taken_at:
        return None
    foreign = foreign_consumption(start, end, readings, own)
    own_total = sum((s.cost or ZERO for s in own if start.taken_at < s.at <= end.taken_at), ZERO)
    ranked = tuple(
        Attributed(batch_id, cost)
        for batch_id, cost in sorted(others.items(), key=lambda item: (-item[1], item[0]))
        if cost > 0
    )
    attributed = sum((a.cost for a in ranked), ZERO)
    return DropSplit(
        meter=meter,
        start=start,
        end=end,
        own=own_total,
        foreign=foreign.amount,
        foreign_is_lower_bound=foreign.is_lower_bound,
        others=ranked,
        unattributed=max(foreign.amount - attributed, ZERO),
        attributed_exceeds_measured=attributed > foreign.amount,
        topups=foreign.topups,
    )


@dataclass(frozen=True)
class Burn:
    """What ``meter`` lost over a window (rises skipped), and the runway it leaves."""

    meter: str
    balance: Decimal
    consumed: Decimal
    since: datetime
    until: datetime
    window: timedelta
    per_hour: Decimal | None  # None: the readings span less than half the window
    runway_hours: Decimal | None  # None: no rate, or nothing was consumed

    def to_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "balance": amount_text(self.balance),
            "consumed": amount_text(self.consumed),
            "since": time_text(self.since),
            "until": time_text(self.until),
            "window_seconds": int(self.window.total_seconds()),
            "per_hour": amount_text(self.per_hour),
            "runway_hours": amount_text(self.runway_hours),
        }


@exact
def burn(timeline: Sequence[TimelineSnapshot], meter: str | None, window: timedelta) -> Burn | None:
    """The burn rate over ``window`` up to the latest reading, as the audit measures it
    (the sum of the drops between consecutive readings), and the runway at that rate.

    Like the audit, no rate is given when the readings span less than half the window:
    a rate from two readings a few seconds apart is noise, not a forecast.
    """
    usable = [s for s in timeline if s.balance(meter) is not None]
    if meter is None or not usable:
        return None
    latest = usable[-1]
    recent = [s for s in usable if s.taken_at >= latest.taken_at - window]
    consumed = ZERO
    for before, after in pairwise(recent):
        start, end = before.balance(meter), after.balance(meter)
        assert start is not None
        assert end is not None
        consumed += max(start - end, ZERO)
    balance = latest.balance(meter)
    assert balance is not None
    span = latest.taken_at - recent[0].taken_at
    per_hour = runway = None
    if span > timedelta(0) and span >= window / 2:
        seconds = Decimal(str(span.total_seconds()))
        per_hour = round(consumed * 3600 / seconds, 6)
        # As the audit's low-balance check: balance × span / consumed, in hours.
        runway = round(balance * seconds / consumed / 3600, 2) if consumed else None
    return Burn(
        meter, balance, consumed, recent[0].taken_at, latest.taken_at, window, per_hour, runway
    )


def cited_snapshots(evidence: Sequence[Mapping[str, Any]]) -> set[int]:
    """The snapshots that this evidence (of quota failures) or detail (of findings) stands
    on: the first and the last of its ``snapshot_ids`` (b0's and ba's: the walk's ends,
    not each reading in between, which may be 100,000), both ends of every top-up, and a
    low-balance finding's ``snapshot_id``."""
    cited: set[int] = set()
    for item in evidence:
        walk = [sid for sid in item.get("snapshot_ids", []) if _is_id(sid)]
        cited.update(walk[:1] + walk[-1:])
        cited.update(sid for pair in item.get("topups", []) for sid in pair if _is_id(sid))
        if _is_id(item.get("snapshot_id")):
            cited.add(item["snapshot_id"])
    return cited


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
