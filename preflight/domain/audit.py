"""What the audit finds in an account's timeline: pure functions, no I/O.

Unexplained consumption between consecutive snapshots, low balance (absolute or by
runway at the recent burn rate) and which old audit snapshots retention may thin.
``preflight.audit`` loads the rows, calls these, and stores what they return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Any, Final

from preflight.domain.exact import exact
from preflight.domain.vocabulary import METERS, FindingKind
from preflight.domain.wire import amount_text

ZERO: Final = Decimal(0)


class ClaimStatus(StrEnum):
    """A period claim's state (docs/audit.md)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ABANDONED = "abandoned"


class RunStatus(StrEnum):
    OK = "ok"  # every step succeeded
    PARTIAL = "partial"  # some step failed (e.g. the vendor was down); the rest ran
    AUTH_FAILED = "auth_failed"  # the vendor said 401: nothing else was done
    SKIPPED = "skipped"  # the same token was rejected before: the vendor was not called


def meter_names(*readings: Mapping[str, object]) -> list[str]:
    """The meters any of ``readings`` names: the first vendor's two first, then the others
    by name, so that findings come out in the same order on every run."""
    others = sorted({name for reading in readings for name in reading} - set(METERS))
    return [*METERS, *others]


@dataclass(frozen=True)
class Point:
    """One snapshot of the account's timeline: both meters (None when absent)."""

    snapshot_id: int
    taken_at: datetime
    balances: Mapping[str, Decimal | None]
    batch_id: str | None = None  # the batch that took it, if any


@dataclass(frozen=True)
class RecordedCost:
    """One outcome's recorded cost; ``meter`` None when its batch never learned its meter."""

    batch_id: str
    meter: str | None
    at: datetime
    cost: Decimal


@dataclass(frozen=True)
class BatchSpan:
    """When a batch could have been spending: from creation to finish (or last sign of life)."""

    batch_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class FindingDraft:
    """A finding before it is stored; ``key`` identifies it so that it is reported once."""

    kind: FindingKind
    key: str
    amount: Decimal | None
    window_start: datetime
    window_end: datetime
    batches: tuple[str, ...]
    detail: Mapping[str, Any]


@exact
def unexplained_consumption(
    points: Sequence[Point],
    costs: Sequence[RecordedCost],
    spans: Sequence[BatchSpan] = (),
    *,
    after: datetime,
    tolerance: Decimal,
) -> tuple[list[FindingDraft], list[dict[str, Any]]]:
    """Consumption that no batch recorded, per window between consecutive snapshots.

    For each window ending after ``after`` and each meter present at both ends: the
    balance drop minus the cost every batch recorded in (start, end] on that meter (a
    batch whose meter is unknown counts on every meter: it never causes a false
    alarm). Above ``tolerance`` it is a finding. A window whose balance rose is a
    top-up or a reset: never negative consumption, not assessed, returned separately.
    """
    drafts: list[FindingDraft] = []
    rises: list[dict[str, Any]] = []
    for before, end in pairwise(points):
        if end.taken_at <= after:
            continue
        in_window = [c for c in costs if before.taken_at < c.at <= end.taken_at]
        for meter in meter_names(before.balances, end.balances):
            start_balance, end_balance = before.balances.get(meter), end.balances.get(meter)
            if start_balance is None or end_balance is None:
                continue
            if end_balance > start_balance:
                rises.append(
                    {"meter": meter, "snapshot_ids": [before.snapshot_id, end.snapshot_id]}
                )
                continue
            recorded = sum((c.cost for c in in_window if c.meter in (meter, None)), ZERO)
            drop = start_balance - end_balance
            unexplained = drop - recorded
            if unexplained <= tolerance:
                continue
            active = {c.batch_id for c in in_window}
            active.update(p.batch_id for p in (before, end) if p.batch_id)
            active.update(
                s.batch_id for s in spans if s.start <= end.taken_at and s.end >= before.taken_at
            )
            drafts.append(
                FindingDraft(
                    kind=FindingKind.UNEXPLAINED_CONSUMPTION,
                    key=f"{meter}:{before.snapshot_id}-{end.snapshot_id}",
                    amount=unexplained,
                    window_start=before.taken_at,
                    window_end=end.taken_at,
                    batches=tuple(sorted(active)),
                    detail={
                        "meter": meter,
                        "balance_before": amount_text(start_balance),
                        "balance_after": amount_text(end_balance),
                        "drop": amount_text(drop),
                        "recorded_cost": amount_text(recorded),
                        "tolerance": amount_text(tolerance),
                        "snapshot_ids": [before.snapshot_id, end.snapshot_id],
                    },
                )
            )
    return drafts, rises


@exact
def burn_rate(points: Sequence[Point], meter: str) -> tuple[Decimal, timedelta] | None:
    """What ``meter`` lost over the points' time span (rises skipped), or None if unknown."""
    usable = [p for p in points if p.balances.get(meter) is not None]
    if len(usable) < 2:
        return None
    span = usable[-1].taken_at - usable[0].taken_at
    if span <= timedelta(0):
        return None
    consumed = ZERO
    for before, after in pairwise(usable):
        start, end = before.balances[meter], after.balances[meter]
        assert start is not None
        assert end is not None
        consumed += max(start - end, ZERO)
    return consumed, span


@exact
def low_balance(
    points: Sequence[Point],
    meter: str,
    *,
    threshold: Decimal | None,
    runway_threshold: timedelta,
    min_span: timedelta = timedelta(0),
) -> tuple[bool, dict[str, Any], FindingDraft | None]:
    """Is the latest balance below ``threshold``, or its runway below ``runway_threshold``?

    The runway is the balance divided by the burn rate over ``points`` (the burn window),
    measured only when they span at least ``min_span``: a rate from two readings a few
    seconds apart is noise, not a forecast. Returns (low, measured, finding if low).
    """
    latest = points[-1]
    balance = latest.balances.get(meter)
    measured: dict[str, Any] = {"meter": meter, "snapshot_id": latest.snapshot_id}
    if balance is None:
        return False, {**measured, "balance": None}, None
    measured["balance"] = amount_text(balance)
    reasons: list[str] = []
    if threshold is not None:
        measured["threshold"] = amount_text(threshold)
        if balance < threshold:
            reasons.append(f"balance {balance} is below the threshold {threshold}")
    burn = burn_rate(points, meter)
    if burn is not None and burn[0] > 0 and burn[1] >= min_span:
        consumed, span = burn
        seconds = Decimal(str(span.total_seconds()))
        runway_seconds = balance * seconds / consumed
        measured["burn_per_hour"] = amount_text(round(consumed * 3600 / seconds, 6))
        measured["runway_hours"] = amount_text(round(runway_seconds / 3600, 2))
        measured["runway_threshold_hours"] = amount_text(
            Decimal(str(runway_threshold.total_seconds())) / 3600
        )
        if runway_seconds < Decimal(str(runway_threshold.total_seconds())):
            reasons.append(
                f"runway {measured['runway_hours']}h at {measured['burn_per_hour']}/h is below "
                f"{measured['runway_threshold_hours']}h"
            )
    if not reasons:
        return False, measured, None
    draft = FindingDraft(
        kind=FindingKind.LOW_BALANCE,
        key=f"{meter}:{latest.snapshot_id}",
        amount=balance,
        window_start=points[0].taken_at,
        window_end=latest.taken_at,
        batches=(),
        detail={**measured, "reasons": reasons},
    )
    return True, measured, draft


def retention_doomed(
    snapshots: Sequence[tuple[int, datetime]], *, now: datetime, horizon: timedelta
) -> list[int]:
    """Which of these audit snapshots retention deletes (the caller excludes protected ones).

    Younger than ``horizon``: all kept. Older: the first of each UTC hour is kept. Older
    than 7 × ``horizon``: the first of each UTC day is kept. "First" is by (taken_at, id),
    so thinning again later keeps the same snapshots.
    """
    hourly_before, daily_before = now - horizon, now - 7 * horizon
    seen: set[tuple[str, datetime]] = set()
    doomed: list[int] = []
    for snapshot_id, taken_at in sorted(snapshots, key=lambda item: (item[1], item[0])):
        if taken_at >= hourly_before:
            continue
        at = taken_at.astimezone(UTC)
        bucket = (
            ("hour", at.replace(minute=0, second=0, microsecond=0))
            if taken_at >= daily_before
            else ("day", at.replace(hour=0, minute=0, second=0, microsecond=0))
        )
        if bucket in seen:
            doomed.append(snapshot_id)
        else:
            seen.add(bucket)
    return doomed
