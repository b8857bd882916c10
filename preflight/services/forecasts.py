"""Before the 402: ``guard`` between two dispatches, and the forecast ``show`` and the
report carry (from stored snapshots only). The rules are :mod:`preflight.domain.forecast`'s;
this module loads rows, takes the guard's ``recheck`` snapshot when the latest one is
stale, and assembles the answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from preflight.db import forecast as rows
from preflight.db import reports
from preflight.domain.batch import validate_batch_id
from preflight.domain.forecast import (
    NeedBasis,
    age_seconds,
    burns_since_check,
    decide,
    estimate_need,
    forecast,
    parse_label,
)
from preflight.domain.vocabulary import BatchStatus, SnapshotKind
from preflight.errors import NotFoundError, UsageError
from preflight.logs import get_logger
from preflight.services.checks import Amount, amount_field
from preflight.services.results import ForecastView, GuardResult
from preflight.services.runtime import Runtime
from preflight.services.snapshots import take_snapshot

if TYPE_CHECKING:
    from preflight.db.reports import BatchRow
    from preflight.db.session import Session

log = get_logger("preflight")

#: ``--max-age`` when none is given: a snapshot older than this is retaken.
DEFAULT_MAX_AGE = timedelta(seconds=60)
#: ``--min-history`` when none is given: fewer past jobs than this are no basis for a need.
DEFAULT_MIN_HISTORY = 20


def guard(
    rt: Runtime,
    batch_id: str,
    *,
    next_cost: Amount | None = None,
    max_age: timedelta | None = None,
) -> GuardResult:
    """Decide between two dispatches of ``batch_id``: ``continue``, ``at_risk`` or ``stop``.

    Takes a ``recheck`` snapshot when the account's latest snapshot is older than
    ``max_age`` (default 60 s), else reads that one.
    """
    validate_batch_id(batch_id)
    cost = amount_field("next_cost", next_cost)
    age_limit = DEFAULT_MAX_AGE if max_age is None else max_age
    if age_limit < timedelta(0):
        raise UsageError(f"max_age: must not be negative, not {age_limit}")
    with rt.database.read() as session:
        batch = _guarded(session, batch_id)
        if batch.need is None and cost is None:
            raise UsageError(
                f"next_cost: batch {batch_id!r} declared no need, so the guard needs a next "
                "cost to decide"
            )
        latest = rows.latest_taken_at(session, batch.account_id)
        stale = latest is None or rt.clock() - latest > age_limit
    if stale:
        take_snapshot(rt, batch.account, SnapshotKind.RECHECK, batch_id=batch_id)
    now = rt.clock()
    with rt.database.read() as session:
        batch = _guarded(session, batch_id)
        view = project(session, batch, now=now, rt=rt, next_cost=cost)
    assert view.decision is not None
    assert view.reason is not None
    log.info(
        "guard_decided",
        batch_id=batch_id,
        decision=view.decision.value,
        snapshot_id=view.snapshot_id,
        rechecked=stale,
    )
    return GuardResult(
        batch_id=batch_id,
        decision=view.decision,
        reason=view.reason,
        forecast=view.forecast,
        outstanding_other=view.outstanding_other,
        snapshot_id=view.snapshot_id,
        snapshot_age_seconds=view.snapshot_age_seconds,
    )


def stored_forecast(
    rt: Runtime, session: Session, batch: BatchRow, *, now: datetime
) -> ForecastView | None:
    """The forecast of an open batch from its account's latest stored snapshot (no vendor
    call); None for a batch that is not open, was never checked, or whose meter the
    latest snapshot lacks."""
    if batch.status != BatchStatus.OPEN.value or batch.meter is None:
        return None
    try:
        return project(session, batch, now=now, rt=rt)
    except _NotCheckedError:
        return None


class _NotCheckedError(UsageError):
    """The batch has no preflight snapshot: nothing to project from."""


def project(
    session: Session,
    batch: BatchRow,
    *,
    now: datetime,
    rt: Runtime,
    next_cost: Decimal | None = None,
) -> ForecastView:
    """The guard's fields for ``batch``, read on its account's latest snapshot."""
    found = rows.forecast_rows(session, batch, hold_cutoff=now - rt.settings.hold_expiry)
    if found is None:
        raise _NotCheckedError(
            f"batch {batch.batch_id!r} was never checked: the guard reads from its check"
        )
    if found.end.balance is None:
        raise _NotCheckedError(
            f"{batch.meter} is absent from snapshot {found.end.snapshot_id}: nothing to decide on"
        )
    burns = burns_since_check(found.start, found.end, found.readings, found.own)
    projection = forecast(
        found.end.balance,
        batch.need,
        batch.consumed_cost,
        burns,
        succeeded=(found.succeeded_count, found.succeeded_cost),
    )
    decision = reason = None
    if projection.remaining_need is not None or next_cost is not None:
        answer = decide(
            projection.balance, projection.remaining_need, found.outstanding_other, next_cost
        )
        decision, reason = answer.decision, answer.reason
    return ForecastView(
        decision=decision,
        reason=reason,
        forecast=projection,
        outstanding_other=found.outstanding_other,
        snapshot_id=found.end.snapshot_id,
        snapshot_age_seconds=age_seconds(now, found.end.taken_at),
    )


def need_from_history(
    rt: Runtime,
    account: str,
    *,
    jobs: int | None,
    estimate_from: str | None,
    estimate: str | None,
    min_history: int | None,
    exclude: str | None = None,
) -> NeedBasis:
    """``jobs`` × the ``estimate`` statistic of the consumed cost of succeeded jobs in the
    account's most recent finished batches labelled ``estimate_from`` (KEY=VALUE)."""
    if estimate_from is None:
        raise UsageError("estimate_from: --jobs needs --estimate-from KEY=VALUE")
    if jobs is None:
        raise UsageError("jobs: --estimate-from needs --jobs N, the number of jobs to price")
    if min_history is not None and min_history < 1:
        raise UsageError(f"min_history: must be at least 1, not {min_history}")
    key, value = parse_label(estimate_from)
    with rt.database.read() as session:
        found = reports.account_named(session, account)
        history = (
            []
            if found is None
            else rows.labelled_history(session, found, key, value, exclude=exclude)
        )
    return estimate_need(
        jobs,
        estimate or "mean",
        f"{key}={value}",
        history,
        min_history=DEFAULT_MIN_HISTORY if min_history is None else min_history,
    )


def _guarded(session: Session, batch_id: str) -> BatchRow:
    batch = reports.batch_named(session, batch_id)
    if batch is None:
        raise NotFoundError(f"batch {batch_id!r} not found: check it first")
    if batch.status == BatchStatus.FINISHED.value:
        raise UsageError(f"batch {batch_id!r} is finished: nothing left to guard")
    if batch.meter is None or batch.checked_at is None:
        raise UsageError(f"batch {batch_id!r} was never checked: the guard reads from its check")
    return batch
