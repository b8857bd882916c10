"""The read models of ``preflight report``: a batch, or an account, over its timeline.

The report draws what these return (:mod:`preflight.report` renders them as HTML; the
HTTP API may serve their ``to_dict()``). The numbers come from the same rules as
everywhere else: ``show``'s post-mortem as it is, the classifier's walk for the foreign
consumption (:mod:`preflight.domain.timeline`), the audit's burn rate.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from preflight.db import reports
from preflight.domain.batch import validate_batch_id
from preflight.domain.timeline import (
    BatchSpan,
    TimelineSnapshot,
    burn,
    cited_snapshots,
    default_meter,
    readings,
    rises,
    split_drop,
)
from preflight.domain.vocabulary import METERS, SnapshotKind
from preflight.errors import UsageError
from preflight.services import batches
from preflight.services.batches import failure_view, finding_view
from preflight.services.results import AccountTimeline, BatchTimeline
from preflight.services.runtime import Runtime

__all__ = [
    "DEFAULT_PERIOD",
    "AccountTimeline",
    "BatchTimeline",
    "account_timeline",
    "batch_timeline",
]

#: The account report's period when no ``since`` is given.
DEFAULT_PERIOD: Final = timedelta(days=7)
_ZERO: Final = Decimal(0)


def batch_timeline(rt: Runtime, batch_id: str) -> BatchTimeline:
    """One batch's post-mortem (``show``) and the account's timeline around it."""
    validate_batch_id(batch_id)
    report = batches.show(rt, batch_id)  # UsageError for an unknown batch
    evidence_end = [
        datetime.fromisoformat(f.evidence["ta"])
        for f in report.quota_failures
        if isinstance(f.evidence.get("ta"), str)
    ]
    with rt.database.read() as session:
        batch = reports.batch_named(session, batch_id)
        if batch is None:  # deleted since show(): nothing to report
            raise UsageError(f"no batch {batch_id!r}")
        preflight = reports.first_snapshot(session, batch, SnapshotKind.PREFLIGHT)
        first_outcome, last_outcome = reports.outcome_times(session, batch)
        window_start = (
            preflight.taken_at
            if preflight is not None
            else min(batch.created_at, first_outcome or batch.created_at)
        )
        window_end = batch.finished_at or max(
            batch.last_activity_at, last_outcome or window_start, window_start
        )
        end = max([window_end, *evidence_end, *([last_outcome] if last_outcome else [])])
        cited = cited_snapshots([f.evidence for f in report.quota_failures])
        timeline = reports.timeline(
            session, batch.account_id, start=window_start, end=end, also=cited
        )
        meter = default_meter(timeline, batch.meter)
        # The drop runs from the check to the first finish snapshot (else the latest
        # reading); what other batches consumed is counted over the same interval.
        opening = next((s for s in timeline if preflight and s.id == preflight.id), None)
        closing = (
            _closing_reading(
                timeline,
                meter,
                opening,
                reports.first_snapshot(session, batch, SnapshotKind.FINISH),
            )
            if opening is not None and meter is not None
            else None
        )
        split_end = closing.taken_at if closing is not None else window_end
        others_cost = reports.costs_by_batch(
            session, batch.account_id, start=window_start, end=split_end, meter=meter, exclude=batch
        )
        split = None
        if opening is not None and closing is not None and meter is not None:
            split = split_drop(
                meter,
                opening.reading(meter),
                closing.reading(meter),
                readings(timeline, meter),
                reports.own_spends(session, batch, start=opening.taken_at, end=split_end),
                others_cost,
            )
        start = min([window_start, *([timeline[0].taken_at] if timeline else [])])
        end = max([end, *([timeline[-1].taken_at] if timeline else [])])
        others = [
            BatchSpan(other, began, ended, status, other_meter, others_cost.get(other, _ZERO))
            for other, began, ended, status, other_meter in reports.batch_spans(
                session, batch.account_id, start=start, end=end, exclude=batch
            )
        ]
    return BatchTimeline(
        report=report,
        meter=meter,
        start=start,
        end=end,
        window_start=window_start,
        window_end=window_end,
        timeline=timeline,
        others=others,
        split=split,
        rises=rises(timeline, meter),
        generated_at=rt.clock(),
    )


def account_timeline(
    rt: Runtime, account: str | None = None, *, since: datetime | None = None
) -> AccountTimeline:
    """An account's balance from ``since`` (default: 7 days ago) to now, the batches that
    ran, the audit's findings and the quota failures in that period, and the burn rate
    and runway over the audit's burn window."""
    name = account or rt.settings.account
    now = rt.clock()
    start = since if since is not None else now - DEFAULT_PERIOD
    if start >= now:
        raise UsageError(f"since: {start.isoformat()} is not in the past")
    with rt.database.read() as session:
        account_id = reports.account_named(session, name)
        if account_id is None:
            raise UsageError(f"no account {name!r}: nothing was ever checked or read on it")
        findings = [
            finding_view(f, name)
            for f in reports.findings_between(session, account_id, start=start, end=now)
        ]
        failures = [
            failure_view(item) for item in reports.failures(session, since=start, account=name)
        ]
        cited = cited_snapshots([f.evidence for f in failures] + [f.detail for f in findings])
        timeline = reports.timeline(
            session, account_id, start=start, end=now, also=cited, anchors=False
        )
        costs = reports.costs_by_batch(session, account_id, start=start, end=now)
        spans = [
            BatchSpan(batch_id, began, ended, status, meter, costs.get(batch_id, _ZERO))
            for batch_id, began, ended, status, meter in reports.batch_spans(
                session, account_id, start=start, end=now
            )
        ]
    configured = rt.settings.meter
    # The account's vendor says which meters exist and which comes first (an account no
    # longer configured is read with the first vendor's).
    configured_account = rt.settings.accounts.get(name)
    known = configured_account.adapter.meters if configured_account is not None else METERS
    meter = default_meter(timeline, configured if configured in known else None, known)
    return AccountTimeline(
        account=name,
        meter=meter,
        start=min([start, *([timeline[0].taken_at] if timeline else [])]),
        end=max([now, *([timeline[-1].taken_at] if timeline else [])]),
        timeline=timeline,
        batches=spans,
        findings=findings,
        failures=failures,
        burn=burn(timeline, meter, rt.settings.burn_window),
        rises=rises(timeline, meter),
        generated_at=now,
    )


# ---------------------------------------------------------------- helpers


def _closing_reading(
    timeline: list[TimelineSnapshot],
    meter: str,
    opening: TimelineSnapshot,
    finish: TimelineSnapshot | None,
) -> TimelineSnapshot | None:
    """The reading the drop ends at: the batch's first finish snapshot when it has the
    meter, else the latest reading after the check that has it."""
    if finish is not None:
        found = next((s for s in timeline if s.id == finish.id), None)
        if found is not None and found.balance(meter) is not None:
            return found
    return next(
        (
            s
            for s in reversed(timeline)
            if s.taken_at > opening.taken_at and s.balance(meter) is not None
        ),
        None,
    )
