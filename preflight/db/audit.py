"""Every statement of the scheduled audit: period claims and their leases, the account's
timeline and recorded spend, stale batches, the run and its findings, and retention.

:mod:`preflight.services.audit` orchestrates a run with these; docs/audit.md has the why
(a claim is a row keyed by (account, period start), not an advisory lock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from preflight.db.models import (
    AuditClaim,
    AuditRun,
    Batch,
    FailureTag,
    Finding,
    Outcome,
    Snapshot,
    TagSnapshot,
)
from preflight.db.reports import FINDING_ROW, FindingRow
from preflight.db.repositories import (
    insert_if_absent,
    late_outcomes_count,
    needs_classification,
)
from preflight.db.store import WriteStore
from preflight.domain.audit import (
    ZERO,
    BatchSpan,
    ClaimStatus,
    FindingDraft,
    Point,
    RecordedCost,
)
from preflight.domain.exact import exact
from preflight.domain.vocabulary import BatchStatus, FindingKind, SnapshotKind, Tag


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


# ---------------------------------------------------------------- claims and leases


def _lapsed(now: datetime) -> ColumnElement[bool]:
    """A claim another replica may take over: its holder died, or shut down."""
    return or_(
        and_(AuditClaim.status == ClaimStatus.RUNNING.value, AuditClaim.lease_expires_at < now),
        AuditClaim.status == ClaimStatus.ABANDONED.value,
    )


def claim_period(
    session: Session,
    account_id: int,
    period: datetime,
    *,
    replica: str,
    now: datetime,
    lease: timedelta,
) -> tuple[int, bool, str, str]:
    """INSERT … ON CONFLICT DO NOTHING the period's claim: (claim id, won it now, its
    status, its holder). The insert's winner runs the period."""
    won = insert_if_absent(
        session,
        AuditClaim,
        {
            "account_id": account_id,
            "period_start": period,
            "status": ClaimStatus.RUNNING.value,
            "holder": replica,
            "lease_expires_at": now + lease,
            "started_at": now,
        },
    )
    claim_id, status, holder = session.execute(
        select(AuditClaim.id, AuditClaim.status, AuditClaim.holder).where(
            AuditClaim.account_id == account_id, AuditClaim.period_start == period
        )
    ).one()
    return claim_id, won is not None, status, holder


def take_over(
    session: Session, claim_id: int, *, replica: str, now: datetime, lease: timedelta
) -> bool:
    """UPDATE … WHERE lapsed: True when this replica won the claim."""
    result = session.execute(
        update(AuditClaim)
        .where(AuditClaim.id == claim_id, _lapsed(now))
        .values(status=ClaimStatus.RUNNING.value, holder=replica, lease_expires_at=now + lease)
    )
    return _rowcount(result) == 1


def lapsed_claims(
    session: Session, account_id: int, *, before: datetime, since: datetime, now: datetime
) -> list[tuple[int, datetime, str]]:
    """Earlier periods (from ``since``) whose holder died or shut down: (id, period, holder)."""
    rows = session.execute(
        select(AuditClaim.id, AuditClaim.period_start, AuditClaim.holder)
        .where(
            AuditClaim.account_id == account_id,
            AuditClaim.period_start < before,
            AuditClaim.period_start >= since,
            _lapsed(now),
        )
        .order_by(AuditClaim.period_start)
    )
    return [(claim_id, period, holder) for claim_id, period, holder in rows]


def renew_lease(
    session: Session, claim_id: int, *, replica: str, now: datetime, lease: timedelta
) -> bool:
    """Extend the lease if this replica still holds it, unexpired: False means lost."""
    renewed = session.execute(
        update(AuditClaim)
        .where(
            AuditClaim.id == claim_id,
            AuditClaim.holder == replica,
            AuditClaim.status == ClaimStatus.RUNNING.value,
            AuditClaim.lease_expires_at >= now,
        )
        .values(lease_expires_at=now + lease)
    )
    return _rowcount(renewed) == 1


def release_claim(
    session: Session, claim_id: int, *, replica: str, status: ClaimStatus, now: datetime
) -> None:
    session.execute(
        update(AuditClaim)
        .where(
            AuditClaim.id == claim_id,
            AuditClaim.holder == replica,
            AuditClaim.status == ClaimStatus.RUNNING.value,
        )
        .values(status=status.value, finished_at=now, lease_expires_at=now)
    )


def claim_snapshot(session: Session, claim_id: int) -> int | None:
    """The audit snapshot a claim already took (reused after a takeover)."""
    return session.scalar(select(AuditClaim.snapshot_id).where(AuditClaim.id == claim_id))


def set_claim_snapshot(session: Session, claim_id: int, snapshot_id: int) -> None:
    session.execute(
        update(AuditClaim).where(AuditClaim.id == claim_id).values(snapshot_id=snapshot_id)
    )


# ---------------------------------------------------------------- what the steps read


def history(session: Session, account_id: int, limit: int) -> list[dict[str, Any]]:
    """The steps of the account's latest audit runs, newest first."""
    return [
        dict(steps)
        for steps in session.scalars(
            select(AuditRun.steps)
            .where(AuditRun.account_id == account_id)
            .order_by(AuditRun.finished_at.desc(), AuditRun.id.desc())
            .limit(limit)
        )
    ]


def checked_until(session: Session, account_id: int) -> datetime | None:
    """How far earlier runs already looked for unexplained consumption."""
    return session.scalar(
        select(func.max(AuditRun.checked_until)).where(AuditRun.account_id == account_id)
    )


def points(
    session: Session,
    account_id: int,
    *,
    until: datetime,
    after: datetime | None = None,
    since: datetime | None = None,
    with_anchor: bool = False,
) -> list[Point]:
    """The account's timeline up to ``until``: after ``after`` (exclusive) or from
    ``since`` (inclusive). ``with_anchor`` adds the latest snapshot at or before
    ``after``, so the first window starts where the last run stopped."""
    window: list[ColumnElement[bool]] = [Snapshot.taken_at <= until]
    if since is not None:
        window.append(Snapshot.taken_at >= since)
    if after is not None:
        later: ColumnElement[bool] = Snapshot.taken_at > after
        if with_anchor:
            anchor = session.scalar(
                select(Snapshot.id)
                .where(Snapshot.account_id == account_id, Snapshot.taken_at <= after)
                .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
                .limit(1)
            )
            later = or_(Snapshot.id == anchor, later)
        window.append(later)
    rows = session.execute(
        select(
            Snapshot.id,
            Snapshot.taken_at,
            Snapshot.credits,
            Snapshot.api_quota_remaining,
            Batch.batch_id,
            Snapshot.extra_meters,
        )
        .outerjoin(Batch, Batch.id == Snapshot.batch_pk)
        .where(Snapshot.account_id == account_id, *window)
        .order_by(Snapshot.taken_at, Snapshot.id)
    )
    return [
        Point(
            sid,
            at,
            {"credits": credits, "api_quota_remaining": quota, **(extra or {})},
            batch_id,
        )
        for sid, at, credits, quota, batch_id, extra in rows
    ]


def recorded_costs(
    session: Session, account_id: int, *, start: datetime, end: datetime
) -> list[RecordedCost]:
    """Consumed cost every batch of the account recorded in (start, end]."""
    return [
        RecordedCost(batch_id, meter, at, cost or ZERO)
        for batch_id, meter, at, cost in session.execute(
            select(Batch.batch_id, Batch.meter, Outcome.occurred_at, Outcome.cost)
            .join(Batch, Batch.id == Outcome.batch_pk)
            .where(
                Batch.account_id == account_id,
                Outcome.cost.is_not(None),
                Outcome.occurred_at > start,
                Outcome.occurred_at <= end,
            )
        )
    ]


def batch_spans(
    session: Session, account_id: int, *, start: datetime, end: datetime, hold: timedelta
) -> list[BatchSpan]:
    """Batches that may have been running in [start, end] (a quiet one counts for ``hold``)."""
    return [
        BatchSpan(batch_id, created, finished or active + hold)
        for batch_id, created, finished, active in session.execute(
            select(
                Batch.batch_id, Batch.created_at, Batch.finished_at, Batch.last_activity_at
            ).where(
                Batch.account_id == account_id,
                Batch.status != BatchStatus.BLOCKED.value,
                Batch.created_at <= end,
                or_(Batch.finished_at.is_(None), Batch.finished_at >= start),
            )
        )
    ]


def stale_batches(
    session: Session, account_id: int, *, quiet_since: datetime
) -> list[tuple[int, str, datetime]]:
    """Open batches with no activity since ``quiet_since``: (pk, batch id, last activity)."""
    rows = session.execute(
        select(Batch.id, Batch.batch_id, Batch.last_activity_at).where(
            Batch.account_id == account_id,
            Batch.status == BatchStatus.OPEN.value,
            Batch.last_activity_at < quiet_since,
        )
    )
    return [(pk, batch_id, active) for pk, batch_id, active in rows]


def reported_keys(
    session: Session, account_id: int, kind: FindingKind, keys: Iterable[str]
) -> set[str]:
    """Which of these finding keys were already reported."""
    wanted = list(keys)
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(Finding.key).where(
                Finding.account_id == account_id,
                Finding.kind == kind.value,
                Finding.key.in_(wanted),
            )
        )
    )


def batches_to_reclassify(session: Session, account_id: int) -> list[str]:
    """Batches with quota failures that are untagged, inconclusive, or of an older version."""
    return list(
        session.scalars(
            select(Batch.batch_id)
            .where(
                Batch.account_id == account_id,
                Batch.id.in_(
                    select(Outcome.batch_pk)
                    .outerjoin(FailureTag, FailureTag.outcome_id == Outcome.id)
                    .where(
                        Outcome.quota_failure.is_(True),
                        needs_classification([Tag.INCONCLUSIVE.value]),
                    )
                ),
            )
            .order_by(Batch.batch_id)
        )
    )


# ---------------------------------------------------------------- retention


def _old_audit(account_id: int) -> tuple[ColumnElement[bool], ...]:
    """The account's snapshots retention may thin: batch-less audit snapshots (the partial
    index ix_snapshots_audit_taken holds exactly these; the literal lets SQLite use it)."""
    return (
        Snapshot.account_id == account_id,
        Snapshot.kind == literal_column(f"'{SnapshotKind.AUDIT.value}'"),
        Snapshot.batch_pk.is_(None),
    )


class _utc_hour(FunctionElement[Any]):
    """The UTC hour a time falls in, as each dialect spells it (compiled below)."""

    inherit_cache = True


class _utc_day(FunctionElement[Any]):
    """The UTC day a time falls in, as each dialect spells it (compiled below)."""

    inherit_cache = True


# SQLite stores times as naive UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'): a prefix is the bucket.
@compiles(_utc_hour, "sqlite")
def _utc_hour_sqlite(element: _utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 13)"


@compiles(_utc_day, "sqlite")
def _utc_day_sqlite(element: _utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(_utc_hour, "postgresql")
def _utc_hour_postgresql(element: _utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date_trunc('hour', {compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC')"


@compiles(_utc_day, "postgresql")
def _utc_day_postgresql(element: _utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date_trunc('day', {compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC')"


def _bucket(daily_before: datetime) -> ColumnElement[Any]:
    """The retention bucket of a snapshot: its UTC day before ``daily_before``, else its
    UTC hour."""
    taken = Snapshot.taken_at
    daily = bindparam("daily_before", daily_before, type_=Snapshot.taken_at.type)
    return case((taken >= daily, _utc_hour(taken)), else_=_utc_day(taken))


def next_retention_chunk(
    session: Session, account_id: int, *, start: datetime | None, before: datetime, rows: int
) -> datetime:
    """Where a retention chunk that starts at ``start`` (a UTC midnight, or None for the
    beginning) ends: the UTC midnight after the ``rows``-th thinnable snapshot, or
    ``before``. Chunks end at midnights, so no hour or day bucket spans two of them."""
    conditions = [*_old_audit(account_id), Snapshot.taken_at < before]
    if start is not None:
        conditions.append(Snapshot.taken_at >= start)
    last = session.scalar(
        select(Snapshot.taken_at)
        .where(*conditions)
        .order_by(Snapshot.taken_at)
        .offset(rows - 1)
        .limit(1)
    )
    if last is None:
        return before
    midnight = last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return min(midnight + timedelta(days=1), before)


def thin_audit_snapshots(
    session: Session,
    account_id: int,
    *,
    start: datetime | None,
    end: datetime,
    daily_before: datetime,
) -> int:
    """Delete, among the account's batch-less audit snapshots taken in [start, end), every
    one but the first (by taken_at, id) of its bucket (:func:`_bucket`), except those a tag
    cites; how many went. One statement: the rule runs in the database, no id is loaded."""
    conditions = [*_old_audit(account_id), Snapshot.taken_at < end]
    if start is not None:
        conditions.append(Snapshot.taken_at >= start)
    rank = (
        func.row_number()
        .over(
            partition_by=_bucket(daily_before),
            order_by=(Snapshot.taken_at, Snapshot.id),
        )
        .label("rank")
    )
    ranked = select(Snapshot.id, rank).where(*conditions).subquery("ranked")
    doomed = select(ranked.c.id).where(ranked.c.rank > 1)
    # The conditions are repeated in the DELETE itself, so that it can never take a batch's
    # snapshot, another kind, or one a tag cites (the FK RESTRICT is the backstop).
    result = session.execute(
        delete(Snapshot).where(
            Snapshot.id.in_(doomed),
            *_old_audit(account_id),
            Snapshot.id.not_in(select(TagSnapshot.snapshot_id)),
        )
    )
    return _rowcount(result)


# ---------------------------------------------------------------- the run's final write


def store_run(session: Session, **values: Any) -> int:
    """Store an audit run; its id."""
    run = AuditRun(**values)
    session.add(run)
    session.flush()
    return run.id


def insert_finding(
    session: Session, account_id: int, run_id: int, draft: FindingDraft, *, now: datetime
) -> FindingRow | None:
    """The finding, or None when (account, kind, key) was already reported.

    Conflicts are ignored: a ``--force`` run racing this one may have reported it.
    """
    finding_id = insert_if_absent(
        session,
        Finding,
        {
            "account_id": account_id,
            "kind": draft.kind.value,
            "key": draft.key,
            "audit_run_id": run_id,
            "amount": draft.amount,
            "window_start": draft.window_start,
            "window_end": draft.window_end,
            "batches": list(draft.batches),
            "detail": dict(draft.detail),
            "created_at": now,
        },
    )
    if finding_id is None:
        return None
    return FindingRow(*session.execute(select(*FINDING_ROW).where(Finding.id == finding_id)).one())


@exact
def auto_finish(
    session: Session,
    writes: WriteStore,
    account_id: int,
    stale: Sequence[tuple[int, datetime]],
    *,
    now: datetime,
) -> None:
    """Finish these stale batches (pk, last activity when found stale), each only if nothing
    happened to it since. What they held leaves the account's held need; the account's row
    is locked before theirs (the lock order of :mod:`preflight.db.store`; ``writes``: the
    write port on ``session``'s transaction)."""
    writes.lock_account_of(account_id)
    released = ZERO
    for batch_pk, quiet_since in stale:
        row = session.execute(
            select(Batch.held)
            .where(
                Batch.id == batch_pk,
                Batch.status == BatchStatus.OPEN.value,
                Batch.last_activity_at == quiet_since,
            )
            .with_for_update(key_share=True)
        ).first()
        if row is None:
            continue
        session.execute(
            update(Batch)
            .where(Batch.id == batch_pk)
            .values(
                status=BatchStatus.FINISHED.value,
                finished_at=now,
                held=None,
                late_count=late_outcomes_count(session, batch_pk, finished_at=now),
            )
        )
        released += row.held or ZERO
    if released:
        writes.shift_held_need(account_id, -released)


def mark_claim_done(session: Session, claim_id: int, *, now: datetime) -> None:
    session.execute(
        update(AuditClaim)
        .where(AuditClaim.id == claim_id)
        .values(status=ClaimStatus.DONE.value, finished_at=now)
    )
