"""The scheduled audit: one run per account and period, however many replicas tick.

A run of one account (docs/audit.md has the why):

1. **Claim** the period: ``INSERT … ON CONFLICT DO NOTHING`` of (account, period_start)
   with status ``running``, the replica's id and a lease. The insert's winner runs the
   period; a ``done`` period is a no-op that says so. A ``running`` claim whose lease
   expired (its holder died) or an ``abandoned`` one (its holder shut down) is taken
   over with ``UPDATE … WHERE`` on that state: rowcount 1 means this replica won it.
2. **Steps**, each writing only while the lease is held: every write transaction
   first renews the lease with ``UPDATE … WHERE holder = me AND lease_expires_at >=
   now`` and aborts the run when no row matched. A replica whose lease lapsed stops
   writing. The steps: an ``audit`` snapshot (vendor call outside any transaction);
   unexplained consumption; low balance; stale batches; reclassification of
   ``inconclusive`` quota failures; retention of old audit snapshots.
3. **Finish** in one transaction: the run row, its findings, and the claim marked
   ``done``. A run killed or aborted before that leaves no audit run rows.

Findings are logged (``audit_finding``) and sent to the alert webhook after the commit.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

import structlog
from sqlalchemy import CursorResult, and_, delete, func, or_, select, update

from preflight.db.models import (
    Account,
    AuditClaim,
    AuditRun,
    Batch,
    FailureTag,
    Finding,
    Outcome,
    Snapshot,
    TagSnapshot,
)
from preflight.db.repositories import (
    get_or_create_account,
    insert_if_absent,
    needs_classification,
)
from preflight.domain.audit import (
    ZERO,
    BatchSpan,
    FindingDraft,
    FindingKind,
    Point,
    RecordedCost,
    low_balance,
    retention_doomed,
    unexplained_consumption,
)
from preflight.domain.batch import BatchStatus, SnapshotKind
from preflight.domain.classify import Tag
from preflight.domain.wire import amount_text, time_text
from preflight.errors import AuthError, ConfigError, PreflightError, VendorError
from preflight.settings import FINDING_KINDS, Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from preflight.api import Preflight

__all__ = [
    "ALREADY_AUDITED",
    "AuditOutcome",
    "ClaimStatus",
    "RunStatus",
    "accounts_to_audit",
    "finding_to_dict",
    "list_findings",
    "period_start",
    "replica_id",
    "run_audit",
    "token_fingerprint",
]

log = structlog.get_logger("preflight.audit")

ALREADY_AUDITED: Final = "already audited in this period"
IN_PROGRESS: Final = "being audited by another replica in this period"
PERIOD_FAILED: Final = "the audit of this period failed; the next period runs again"
AUTH_SKIP: Final = "the vendor rejected this token (401) before; skipped until the token changes"
# Lapsed claims of earlier periods are completed late, but not forever: a period from
# last week is history, not a tick to catch up on.
RECOVERY_HORIZON: Final = timedelta(days=1)
# How many earlier runs are read for the state a run carries on (401 token, low balance).
_HISTORY: Final = 20
_DELETE_CHUNK: Final = 500
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class ClaimStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ABANDONED = "abandoned"


class RunStatus(StrEnum):
    OK = "ok"  # every step succeeded
    PARTIAL = "partial"  # some step failed (e.g. the vendor was down); the rest ran
    AUTH_FAILED = "auth_failed"  # the vendor said 401: nothing else was done
    SKIPPED = "skipped"  # the same token was rejected before: the vendor was not called


class _LeaseLost(Exception):
    """This replica's claim lapsed or was taken over: it must stop writing."""


class _Stopping(Exception):
    """Shutdown was requested: abandon the run at this step boundary."""


# ---------------------------------------------------------------- periods and identity


def period_start(settings: Settings, now: datetime) -> datetime:
    """The start of the period ``now`` falls in (UTC).

    With ``audit_cron``: its most recent fire time at or before ``now``. Otherwise
    ``now`` floored to a multiple of ``audit_interval`` since the Unix epoch, so every
    replica, whenever it started, computes the same periods (15m: :00, :15, :30, :45).
    """
    if settings.audit_cron:
        return _cron_period_start(settings.audit_cron, now)
    step = settings.audit_interval // _MICROSECOND
    elapsed = (now.astimezone(UTC) - _EPOCH) // _MICROSECOND
    return _EPOCH + timedelta(microseconds=elapsed - elapsed % step)


def _cron_period_start(expression: str, now: datetime) -> datetime:
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(expression, timezone=UTC)
    # APScheduler 3 only looks forward: walk from a little before now, widening the
    # look-back until it holds a fire time (a yearly crontab needs a year).
    for look_back in (
        timedelta(hours=1),
        timedelta(days=2),
        timedelta(days=32),
        timedelta(days=400),
    ):
        latest: datetime | None = None
        fire: datetime | None = trigger.get_next_fire_time(None, now - look_back)
        while fire is not None and fire <= now:
            latest = fire
            fire = trigger.get_next_fire_time(fire, fire + _MICROSECOND)
        if latest is not None:
            return latest.astimezone(UTC)
    raise ConfigError(f"audit_cron {expression!r} has not fired in the last 400 days")


def replica_id() -> str:
    """This process's id in claims: host, pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def token_fingerprint(settings: Settings, account: str) -> str | None:
    """A short SHA-256 fingerprint of the account's token: tells "changed" without storing it."""
    token = settings.account_settings(account).token
    if token is None:
        return None
    return "sha256:" + hashlib.sha256(token.reveal().encode("utf-8")).hexdigest()[:16]


def accounts_to_audit(settings: Settings, account: str | None = None) -> list[str]:
    """``account``, else ``audit_accounts``, else every configured account with a token."""
    if account is not None:
        names = [settings.account_settings(account).name]
    elif settings.audit_accounts is not None:
        names = [settings.account_settings(name).name for name in settings.audit_accounts]
    else:
        names = [name for name, item in settings.accounts.items() if item.token is not None]
        if not names:
            raise ConfigError(
                "no account to audit: set PREFLIGHT_API_TOKEN or PREFLIGHT_API_TOKEN_FILE"
            )
    missing = [name for name in names if settings.accounts[name].token is None]
    if missing:
        raise ConfigError(f"no vendor token for account(s) to audit: {', '.join(missing)}")
    return names


# ---------------------------------------------------------------- outcome


@dataclass(frozen=True)
class AuditOutcome:
    """What one account's audit did in one period (or why it did nothing)."""

    account: str
    period_start: datetime
    skipped: bool
    reason: str | None = None
    audit_run_id: int | None = None
    snapshot_id: int | None = None
    status: str | None = None
    takeover: bool = False
    steps: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "period_start": self.period_start.isoformat(),
            "skipped": self.skipped,
            "reason": self.reason,
            "audit_run_id": self.audit_run_id,
            "snapshot_id": self.snapshot_id,
            "status": self.status,
            "takeover": self.takeover,
            "steps": dict(self.steps),
            "findings": list(self.findings),
        }


def finding_to_dict(finding: Finding, account: str) -> dict[str, Any]:
    """A stored finding as JSON: amounts as decimal strings, times ISO 8601 UTC."""
    return {
        "id": finding.id,
        "kind": finding.kind,
        "account": account,
        "amount": amount_text(finding.amount),
        "window_start": finding.window_start.isoformat(),
        "window_end": finding.window_end.isoformat(),
        "batches": list(finding.batches),
        "audit_run_id": finding.audit_run_id,
        "detail": dict(finding.detail),
        "created_at": finding.created_at.isoformat(),
    }


def list_findings(
    app: Preflight,
    *,
    since: datetime | None = None,
    kind: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Stored findings, oldest first."""
    if kind is not None and kind not in FINDING_KINDS:
        raise ConfigError(f"--kind: must be one of {', '.join(FINDING_KINDS)}")
    query = (
        select(Finding, Account.name)
        .join(Account, Account.id == Finding.account_id)
        .order_by(Finding.created_at, Finding.id)
    )
    if since is not None:
        query = query.where(Finding.created_at >= since)
    if kind is not None:
        query = query.where(Finding.kind == kind)
    if account is not None:
        query = query.where(Account.name == account)
    with app.database.read() as session:
        return [finding_to_dict(finding, name) for finding, name in session.execute(query)]


# ---------------------------------------------------------------- entry point


def run_audit(
    app: Preflight,
    *,
    account: str | None = None,
    force: bool = False,
    replica: str | None = None,
    stop: threading.Event | None = None,
) -> list[AuditOutcome]:
    """Audit every account to audit (or ``account``) for the current period.

    Without ``force``, each account's period is claimed first: a period already audited
    is a no-op outcome (``skipped``, reason ``already audited in this period``). Lapsed
    claims of earlier periods (holder dead or shut down) are completed too. ``force``
    runs an extra audit outside the claim mechanism (no claim row, no lease): use it by
    hand, not from several hosts. ``stop`` set: the run is abandoned at the next step
    boundary, leaving the claim for another replica and no audit run rows.
    """
    names = accounts_to_audit(app.settings, account)
    replica = replica or replica_id()
    outcomes: list[AuditOutcome] = []
    for name in names:
        if stop is not None and stop.is_set():
            break
        outcomes.extend(_audit_account(app, name, force=force, replica=replica, stop=stop))
    return outcomes


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def _takeover_condition(now: datetime) -> Any:
    return or_(
        and_(AuditClaim.status == ClaimStatus.RUNNING.value, AuditClaim.lease_expires_at < now),
        AuditClaim.status == ClaimStatus.ABANDONED.value,
    )


def _take_over(
    session: Session, claim_id: int, replica: str, now: datetime, lease: timedelta
) -> bool:
    result = session.execute(
        update(AuditClaim)
        .where(AuditClaim.id == claim_id, _takeover_condition(now))
        .values(status=ClaimStatus.RUNNING.value, holder=replica, lease_expires_at=now + lease)
    )
    return _rowcount(result) == 1


def _audit_account(
    app: Preflight, name: str, *, force: bool, replica: str, stop: threading.Event | None
) -> list[AuditOutcome]:
    settings = app.settings
    now = app._clock()
    period = period_start(settings, now)
    bound = log.bind(account=name, period_start=period.isoformat(), replica=replica)

    def runner(claim_id: int | None, at: datetime, *, takeover: bool = False) -> _AccountRun:
        return _AccountRun(
            app, name, account_id, at, claim_id, replica=replica, stop=stop, takeover=takeover
        )

    if force:
        with app.database.write() as session:
            account_id = get_or_create_account(session, name, now=now).id
        return [runner(None, period).run()]

    outcomes: list[AuditOutcome] = []
    takeover = False
    reason: str | None = None
    with app.database.write() as session:
        account_id = get_or_create_account(session, name, now=now).id
        won = insert_if_absent(
            session,
            AuditClaim,
            {
                "account_id": account_id,
                "period_start": period,
                "status": ClaimStatus.RUNNING.value,
                "holder": replica,
                "lease_expires_at": now + settings.audit_lease,
                "started_at": now,
            },
        )
        claim_id, status, holder = session.execute(
            select(AuditClaim.id, AuditClaim.status, AuditClaim.holder).where(
                AuditClaim.account_id == account_id, AuditClaim.period_start == period
            )
        ).one()
        if won is None:
            takeover = _take_over(session, claim_id, replica, now, settings.audit_lease)
            if not takeover:
                reason = {
                    ClaimStatus.DONE: ALREADY_AUDITED,
                    ClaimStatus.FAILED: PERIOD_FAILED,
                }.get(ClaimStatus(status), IN_PROGRESS)
    if reason is None:
        if takeover:
            bound.warning("audit_claim_taken_over", previous_holder=holder)
        outcomes.append(runner(claim_id, period, takeover=takeover).run())
    else:
        bound.info("audit_period_skipped", reason=reason, holder=holder)
        outcomes.append(AuditOutcome(name, period, skipped=True, reason=reason))

    # Earlier periods whose holder died mid-run (or shut down) are completed now.
    with app.database.read() as session:
        lapsed = session.execute(
            select(AuditClaim.id, AuditClaim.period_start, AuditClaim.holder)
            .where(
                AuditClaim.account_id == account_id,
                AuditClaim.period_start < period,
                AuditClaim.period_start >= now - RECOVERY_HORIZON,
                _takeover_condition(now),
            )
            .order_by(AuditClaim.period_start)
        ).all()
    for lapsed_id, lapsed_period, previous_holder in lapsed:
        if stop is not None and stop.is_set():
            break
        now = app._clock()
        with app.database.write() as session:
            won = _take_over(session, lapsed_id, replica, now, settings.audit_lease)
        if won:
            log.warning(
                "audit_claim_taken_over",
                account=name,
                period_start=lapsed_period.isoformat(),
                previous_holder=previous_holder,
                replica=replica,
            )
            outcomes.append(runner(lapsed_id, lapsed_period, takeover=True).run())
    return outcomes


# ---------------------------------------------------------------- one account's run


class _AccountRun:
    """One audit run of one account in one period, under a claim (or forced, without)."""

    def __init__(
        self,
        app: Preflight,
        account: str,
        account_id: int,
        period: datetime,
        claim_id: int | None,
        *,
        replica: str,
        stop: threading.Event | None,
        takeover: bool,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.account = account
        self.account_id = account_id
        self.period = period
        self.claim_id = claim_id
        self.replica = replica
        self.stop = stop
        self.takeover = takeover
        self.clock: Callable[[], datetime] = app._clock
        self.started_at = self.clock()
        self.steps: dict[str, dict[str, Any]] = {}
        self.drafts: list[FindingDraft] = []
        self.snapshot_id: int | None = None
        self.checked_until: datetime | None = None
        self.to_finish: list[tuple[int, datetime]] = []  # stale batches to auto-finish
        self.log = log.bind(account=account, period_start=period.isoformat(), replica=replica)

    # ------------------------------------------------------------ lease

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction that first renews this run's lease, or aborts the run."""
        with self.app.database.write() as session:
            if self.claim_id is not None:
                now = self.clock()
                renewed = session.execute(
                    update(AuditClaim)
                    .where(
                        AuditClaim.id == self.claim_id,
                        AuditClaim.holder == self.replica,
                        AuditClaim.status == ClaimStatus.RUNNING.value,
                        AuditClaim.lease_expires_at >= now,
                    )
                    .values(lease_expires_at=now + self.settings.audit_lease)
                )
                if _rowcount(renewed) != 1:
                    raise _LeaseLost
            yield session

    def _checkpoint(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stopping

    def _release(self, status: ClaimStatus) -> None:
        """Give the claim up (best effort: a lapsed lease is taken over anyway)."""
        if self.claim_id is None:
            return
        now = self.clock()
        try:
            with self.app.database.write() as session:
                session.execute(
                    update(AuditClaim)
                    .where(
                        AuditClaim.id == self.claim_id,
                        AuditClaim.holder == self.replica,
                        AuditClaim.status == ClaimStatus.RUNNING.value,
                    )
                    .values(status=status.value, finished_at=now, lease_expires_at=now)
                )
        except PreflightError as exc:
            self.log.warning("audit_claim_release_failed", status=status.value, error=str(exc))

    # ------------------------------------------------------------ run

    def run(self) -> AuditOutcome:
        try:
            return self._run()
        except _LeaseLost:
            self.log.warning("audit_lease_lost")
            return self._skipped("lease lapsed: another replica may take the period over")
        except _Stopping:
            self._release(ClaimStatus.ABANDONED)
            self.log.warning("audit_abandoned", reason="shutdown requested")
            return self._skipped("abandoned at shutdown; another replica takes the period over")
        except KeyboardInterrupt:
            self._release(ClaimStatus.ABANDONED)
            raise
        except BaseException:
            self._release(ClaimStatus.FAILED)
            raise

    def _skipped(self, reason: str) -> AuditOutcome:
        return AuditOutcome(
            self.account, self.period, skipped=True, reason=reason, takeover=self.takeover
        )

    def _run(self) -> AuditOutcome:
        fingerprint = token_fingerprint(self.settings, self.account)
        history = self._history()
        if history and _rejected_token(history[0]) == fingerprint:
            self.log.warning("audit_account_skipped", reason=AUTH_SKIP)
            self.steps["snapshot"] = {
                "ok": False,
                "skipped": True,
                "error": AUTH_SKIP,
                "auth_failed": True,
                "token_fingerprint": fingerprint,
            }
            return self._finish(RunStatus.SKIPPED, reason=AUTH_SKIP)
        self._checkpoint()
        if not self._snapshot(fingerprint):
            return self._finish(RunStatus.AUTH_FAILED, reason=self.steps["snapshot"]["error"])
        for name, step in (
            ("consumption", self._consumption),
            ("low_balance", lambda: self._low_balance(history)),
            ("stale_batches", self._stale_batches),
            ("reclassify", self._reclassify),
            ("retention", self._retention),
        ):
            self._checkpoint()
            try:
                self.steps[name] = {"ok": True, **step()}
            except PreflightError as exc:
                self.log.warning("audit_step_failed", step=name, error=str(exc))
                self.steps[name] = {"ok": False, "error": str(exc)}
        self._checkpoint()
        ok = all(step.get("ok") for step in self.steps.values())
        return self._finish(RunStatus.OK if ok else RunStatus.PARTIAL)

    def _history(self) -> list[AuditRun]:
        with self.app.database.read() as session:
            return list(
                session.scalars(
                    select(AuditRun)
                    .where(AuditRun.account_id == self.account_id)
                    .order_by(AuditRun.finished_at.desc(), AuditRun.id.desc())
                    .limit(_HISTORY)
                )
            )

    # ------------------------------------------------------------ steps

    def _snapshot(self, fingerprint: str | None) -> bool:
        """Take (or, after a takeover, reuse) the audit snapshot. False: the token was rejected."""
        if self.claim_id is not None:
            with self.app.database.read() as session:
                taken = session.scalar(
                    select(AuditClaim.snapshot_id).where(AuditClaim.id == self.claim_id)
                )
            if taken is not None:
                self.snapshot_id = taken
                self.steps["snapshot"] = {"ok": True, "snapshot_id": taken, "reused": True}
                return True
        try:
            # Outside any transaction: a slow vendor never holds a database lock.
            profile = self.app.vendor(self.account).get_profile()
        except AuthError as exc:
            # Loud: nothing else will tell the operator that the audit has gone blind.
            self.log.error("audit_auth_failed", error=str(exc), token_fingerprint=fingerprint)
            self.steps["snapshot"] = {
                "ok": False,
                "error": str(exc),
                "auth_failed": True,
                "token_fingerprint": fingerprint,
            }
            return False
        except VendorError as exc:
            # 402, or 5xx / timeouts / unusable bodies after the client's retries.
            self.log.warning("audit_snapshot_failed", error=str(exc), status=exc.status)
            self.steps["snapshot"] = {"ok": False, "error": str(exc), "status": exc.status}
            return True
        self._checkpoint()  # asked to stop during the vendor call: write nothing
        from preflight.api import Preflight

        with self._write() as session:
            account_row = session.get(Account, self.account_id)
            assert account_row is not None
            snapshot = Preflight._store_snapshot(
                session, account_row, profile, now=self.clock(), kind=SnapshotKind.AUDIT
            )
            if self.claim_id is not None:
                session.execute(
                    update(AuditClaim)
                    .where(AuditClaim.id == self.claim_id)
                    .values(snapshot_id=snapshot.id)
                )
        self.snapshot_id = snapshot.id
        self.steps["snapshot"] = {
            "ok": True,
            "snapshot_id": snapshot.id,
            "latency_ms": profile.latency_ms,
            "token_fingerprint": fingerprint,
        }
        return True

    def _points(self, session: Session, *conditions: Any) -> list[Point]:
        rows = session.execute(
            select(
                Snapshot.id,
                Snapshot.taken_at,
                Snapshot.credits,
                Snapshot.api_quota_remaining,
                Batch.batch_id,
            )
            .outerjoin(Batch, Batch.id == Snapshot.batch_pk)
            .where(Snapshot.account_id == self.account_id, *conditions)
            .order_by(Snapshot.taken_at, Snapshot.id)
        )
        return [
            Point(sid, at, {"credits": credits, "api_quota_remaining": quota}, batch_id)
            for sid, at, credits, quota, batch_id in rows
        ]

    def _consumption(self) -> dict[str, Any]:
        now = self.clock()
        with self.app.database.read() as session:
            cursor = session.scalar(
                select(func.max(AuditRun.checked_until)).where(
                    AuditRun.account_id == self.account_id
                )
            )
            # A first run looks back over the burn window, not the whole history.
            after = cursor or now - self.settings.burn_window
            anchor = session.scalar(
                select(Snapshot.id)
                .where(Snapshot.account_id == self.account_id, Snapshot.taken_at <= after)
                .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
                .limit(1)
            )
            points = self._points(
                session,
                or_(Snapshot.id == anchor, Snapshot.taken_at > after),
                Snapshot.taken_at <= now,
            )
            if len(points) < 2:
                self.checked_until = points[-1].taken_at if points else cursor
                return {"windows": 0, "checked_until": time_text(self.checked_until)}
            start, end = points[0].taken_at, points[-1].taken_at
            costs = [
                RecordedCost(batch_id, meter, at, cost or ZERO)
                for batch_id, meter, at, cost in session.execute(
                    select(Batch.batch_id, Batch.meter, Outcome.occurred_at, Outcome.cost)
                    .join(Batch, Batch.id == Outcome.batch_pk)
                    .where(
                        Batch.account_id == self.account_id,
                        Outcome.cost.is_not(None),
                        Outcome.occurred_at > start,
                        Outcome.occurred_at <= end,
                    )
                )
            ]
            spans = [
                BatchSpan(batch_id, created, finished or active + self.settings.hold_expiry)
                for batch_id, created, finished, active in session.execute(
                    select(
                        Batch.batch_id, Batch.created_at, Batch.finished_at, Batch.last_activity_at
                    ).where(
                        Batch.account_id == self.account_id,
                        Batch.status != BatchStatus.BLOCKED.value,
                        Batch.created_at <= end,
                        or_(Batch.finished_at.is_(None), Batch.finished_at >= start),
                    )
                )
            ]
        drafts, rises = unexplained_consumption(
            points, costs, spans, after=after, tolerance=self.settings.tolerance
        )
        self.drafts.extend(drafts)
        self.checked_until = end
        windows = sum(1 for _, e in pairwise(points) if e.taken_at > after)
        return {"windows": windows, "checked_until": time_text(end), "rises": rises}

    def _low_balance(self, history: Sequence[AuditRun]) -> dict[str, Any]:
        now = self.clock()
        with self.app.database.read() as session:
            points = self._points(
                session,
                Snapshot.taken_at >= now - self.settings.burn_window,
                Snapshot.taken_at <= now,
            )
        if not points:
            return {"low": None, "note": "no snapshot within the burn window"}
        latest = points[-1].balances
        meter = self.settings.meter
        if meter == "auto":
            meter = "credits" if latest.get("credits") is not None else "api_quota_remaining"
        low, measured, draft = low_balance(
            points,
            meter,
            threshold=self.settings.low_balance_threshold,
            runway_threshold=self.settings.runway_threshold,
            min_span=self.settings.burn_window / 2,
        )
        # Reported when the balance becomes low, not on every tick while it stays low.
        was_low = next(
            (
                run.steps["low_balance"]["low"]
                for run in history
                if isinstance(run.steps.get("low_balance", {}).get("low"), bool)
            ),
            False,
        )
        if draft is not None and not was_low:
            self.drafts.append(draft)
        return {"low": low, "already_reported": low and was_low, **measured}

    def _stale_batches(self) -> dict[str, Any]:
        now = self.clock()
        with self.app.database.read() as session:
            stale = session.execute(
                select(Batch.id, Batch.batch_id, Batch.last_activity_at).where(
                    Batch.account_id == self.account_id,
                    Batch.status == BatchStatus.OPEN.value,
                    Batch.last_activity_at < now - self.settings.stale_after,
                )
            ).all()
            # Keyed by the batch and its last activity: reported once, and again only if
            # the batch comes back to life and then goes quiet again.
            keys = {
                f"{pk}@{active.isoformat()}": (pk, batch_id, active)
                for pk, batch_id, active in stale
            }
            reported = (
                set(
                    session.scalars(
                        select(Finding.key).where(
                            Finding.account_id == self.account_id,
                            Finding.kind == FindingKind.STALE_BATCH.value,
                            Finding.key.in_(list(keys)),
                        )
                    )
                )
                if keys
                else set()
            )
        auto_finish = self.settings.auto_finish_stale
        new = 0
        for key, (pk, batch_id, active) in sorted(keys.items()):
            if auto_finish:
                self.to_finish.append((pk, active))
            if key in reported:
                continue
            new += 1
            self.drafts.append(
                FindingDraft(
                    kind=FindingKind.STALE_BATCH,
                    key=key,
                    amount=None,
                    window_start=active,
                    window_end=now,
                    batches=(batch_id,),
                    detail={
                        "last_activity_at": active.isoformat(),
                        "stale_after_hours": amount_text(
                            Decimal(str(self.settings.stale_after.total_seconds())) / 3600
                        ),
                        "auto_finished": auto_finish,
                    },
                )
            )
        return {"stale": len(keys), "new": new, "auto_finish": auto_finish}

    def _reclassify(self) -> dict[str, Any]:
        # classify() writes in its own transactions; it is idempotent (a pure function of
        # stored rows), so renewing the lease just before is enough.
        with self._write():
            pass
        with self.app.database.read() as session:
            batch_ids = list(
                session.scalars(
                    select(Batch.batch_id)
                    .where(
                        Batch.account_id == self.account_id,
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
        tags: dict[str, int] = {}
        for batch_id in batch_ids:
            self._checkpoint()
            for tag, count in self.app.classify(batch_id, only_inconclusive=True).items():
                tags[tag] = tags.get(tag, 0) + count
        return {"batches": len(batch_ids), "tags": tags}

    def _retention(self) -> dict[str, Any]:
        now = self.clock()
        horizon = self.settings.retention_horizon
        deleted = 0
        with self._write() as session:
            old = session.execute(
                select(Snapshot.id, Snapshot.taken_at).where(
                    Snapshot.account_id == self.account_id,
                    Snapshot.kind == SnapshotKind.AUDIT.value,
                    Snapshot.batch_pk.is_(None),
                    Snapshot.taken_at < now - horizon,
                )
            ).all()
            doomed = retention_doomed([(i, t) for i, t in old], now=now, horizon=horizon)
            for offset in range(0, len(doomed), _DELETE_CHUNK):
                chunk = doomed[offset : offset + _DELETE_CHUNK]
                # The conditions are repeated here so that the DELETE itself can never take a
                # batch's snapshot, another kind, or one a tag cites (the FK RESTRICT is the
                # backstop, not the plan).
                result = session.execute(
                    delete(Snapshot).where(
                        Snapshot.id.in_(chunk),
                        Snapshot.account_id == self.account_id,
                        Snapshot.kind == SnapshotKind.AUDIT.value,
                        Snapshot.batch_pk.is_(None),
                        Snapshot.id.not_in(select(TagSnapshot.snapshot_id)),
                    )
                )
                deleted += _rowcount(result)
        return {"deleted": deleted, "older_than": time_text(now - horizon)}

    # ------------------------------------------------------------ finish

    def _finish(self, status: RunStatus, *, reason: str | None = None) -> AuditOutcome:
        """Run row, findings, auto-finished batches and the claim's ``done``: one transaction."""
        findings: list[dict[str, Any]] = []
        with self._write() as session:
            now = self.clock()
            run = AuditRun(
                account_id=self.account_id,
                claim_id=self.claim_id,
                period_start=self.period,
                started_at=self.started_at,
                finished_at=now,
                status=status.value,
                steps=self.steps,
                snapshot_id=self.snapshot_id,
                checked_until=self.checked_until,
            )
            session.add(run)
            session.flush()
            for draft in self.drafts:
                key = {"account_id": self.account_id, "kind": draft.kind.value, "key": draft.key}
                # Ignoring conflicts: a --force run racing this one may have reported it.
                finding_id = insert_if_absent(
                    session,
                    Finding,
                    {
                        **key,
                        "audit_run_id": run.id,
                        "amount": draft.amount,
                        "window_start": draft.window_start,
                        "window_end": draft.window_end,
                        "batches": list(draft.batches),
                        "detail": dict(draft.detail),
                        "created_at": now,
                    },
                )
                if finding_id is not None:
                    stored = session.get_one(Finding, finding_id)
                    findings.append(finding_to_dict(stored, self.account))
            for batch_pk, active in self.to_finish:
                # Only if nothing happened to the batch since it was found stale.
                session.execute(
                    update(Batch)
                    .where(
                        Batch.id == batch_pk,
                        Batch.status == BatchStatus.OPEN.value,
                        Batch.last_activity_at == active,
                    )
                    .values(status=BatchStatus.FINISHED.value, finished_at=now)
                )
            if self.claim_id is not None:
                session.execute(
                    update(AuditClaim)
                    .where(AuditClaim.id == self.claim_id)
                    .values(status=ClaimStatus.DONE.value, finished_at=now)
                )
        self.log.info(
            "audit_run_completed",
            audit_run_id=run.id,
            status=status.value,
            snapshot_id=self.snapshot_id,
            findings=len(findings),
            takeover=self.takeover,
        )
        for finding in findings:
            self.log.warning(
                "audit_finding",
                kind=finding["kind"],
                amount=finding["amount"],
                finding_id=finding["id"],
                audit_run_id=run.id,
                window_start=finding["window_start"],
                window_end=finding["window_end"],
                batches=finding["batches"],
            )
        if findings:
            from preflight.alerts import send_alerts

            send_alerts(self.settings, findings)
        return AuditOutcome(
            account=self.account,
            period_start=self.period,
            skipped=status is RunStatus.SKIPPED,
            reason=reason,
            audit_run_id=run.id,
            snapshot_id=self.snapshot_id,
            status=status.value,
            takeover=self.takeover,
            steps=self.steps,
            findings=tuple(findings),
        )


def _rejected_token(run: AuditRun) -> str | None:
    """The fingerprint of the token this run found rejected (401), if it did."""
    step = run.steps.get("snapshot") or {}
    if step.get("auth_failed"):
        fingerprint = step.get("token_fingerprint")
        return fingerprint if isinstance(fingerprint, str) else None
    return None
