"""The scheduled audit: one run per account and period, however many replicas tick.

A run of one account (docs/audit.md has the why):

1. **Claim** the period: ``INSERT … ON CONFLICT DO NOTHING`` of (account, period_start)
   with status ``running``, the replica's id and a lease. The insert's winner runs the
   period; a ``done`` period is a no-op that says so. A ``running`` claim whose lease
   expired (its holder died) or an ``abandoned`` one (its holder shut down) is taken
   over with ``UPDATE … WHERE`` on that state: rowcount 1 means this replica won it.
2. **Steps**, each writing only while the lease is held: every write transaction
   first renews the lease and aborts the run when it was lost. The steps: an ``audit``
   snapshot (vendor call outside any transaction); unexplained consumption; low
   balance; stale batches; reclassification of quota failures that need it (untagged,
   ``inconclusive``, or of an older classifier); retention of old audit snapshots.
3. **Finish** in one transaction: the run row, its findings, and the claim marked
   ``done``. A run killed or aborted before that leaves no audit run rows.

This module orchestrates; every statement is in :mod:`preflight.db.audit`. Findings are
logged (``audit_finding``) and sent to the alert webhook after the commit.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

from preflight import metrics
from preflight.adapters import DEFAULT_ADAPTER
from preflight.db import audit as store
from preflight.domain.audit import (
    ClaimStatus,
    FindingDraft,
    RunStatus,
    low_balance,
    unexplained_consumption,
)
from preflight.domain.periods import period_start
from preflight.domain.vocabulary import FindingKind, SnapshotKind
from preflight.domain.wire import amount_text, time_text
from preflight.errors import AuthError, ConfigError, PreflightError, VendorError
from preflight.logs import get_logger
from preflight.services.batches import finding_view
from preflight.services.outcomes import classify
from preflight.services.results import AuditOutcome, FindingView
from preflight.services.runtime import Runtime
from preflight.services.snapshots import read_profile, seen

if TYPE_CHECKING:
    from preflight.db.session import Session
    from preflight.settings import Settings

__all__ = [
    "ALREADY_AUDITED",
    "AUTH_SKIP",
    "accounts_to_audit",
    "current_period",
    "replica_id",
    "run_audit",
    "token_fingerprint",
]

log = get_logger("preflight.audit")

ALREADY_AUDITED: Final = "already audited in this period"
IN_PROGRESS: Final = "being audited by another replica in this period"
PERIOD_FAILED: Final = "the audit of this period failed; the next period runs again"
AUTH_SKIP: Final = "the vendor rejected this token (401) before; skipped until the token changes"
#: Lapsed claims older than this are left alone: their snapshots are history by now.
RECOVERY_HORIZON: Final = timedelta(days=1)
#: How many earlier runs a run reads (low-balance state, a rejected token).
_HISTORY: Final = 20
#: Old audit snapshots one retention transaction looks at (at most: chunks end at midnights).
_RETENTION_CHUNK: Final = 50_000


class _LeaseLost(Exception):
    """This replica's claim lapsed or was taken over: it must stop writing."""


class _Stopping(Exception):
    """Shutdown was requested: abandon the run at this step boundary."""


def current_period(settings: Settings, now: datetime) -> datetime:
    """The start of the audit period ``now`` falls in (``audit_cron`` or ``audit_interval``)."""
    return period_start(now, interval=settings.audit_interval, cron=settings.audit_cron)


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


def run_audit(
    rt: Runtime,
    *,
    account: str | None = None,
    force: bool = False,
    replica: str | None = None,
    stop: threading.Event | None = None,
    log_findings: bool = True,
) -> list[AuditOutcome]:
    """Audit every account to audit (or ``account``) for the current period.

    Without ``force``, each account's period is claimed first: a period already audited
    is a no-op outcome (``skipped``, reason ``already audited in this period``). Lapsed
    claims of earlier periods (holder dead or shut down) are completed too. ``force``
    runs an extra audit outside the claim mechanism (no claim row, no lease): use it by
    hand, not from several hosts. ``stop`` set: the run is abandoned at the next step
    boundary, leaving the claim for another replica and no audit run rows.
    ``log_findings`` False: the caller shows the findings itself (no ``audit_finding``
    events, e.g. the CLI printing them on a terminal).
    """
    names = accounts_to_audit(rt.settings, account)
    replica = replica or replica_id()
    outcomes: list[AuditOutcome] = []
    for name in names:
        if stop is not None and stop.is_set():
            break
        outcomes.extend(
            _audit_account(
                rt, name, force=force, replica=replica, stop=stop, log_findings=log_findings
            )
        )
    for outcome in outcomes:
        result = "skipped" if outcome.skipped else (outcome.status or "unknown")
        metrics.audit_run(result, (finding.kind for finding in outcome.findings))
    return outcomes


def _audit_account(
    rt: Runtime,
    name: str,
    *,
    force: bool,
    replica: str,
    stop: threading.Event | None,
    log_findings: bool,
) -> list[AuditOutcome]:
    settings = rt.settings
    now = rt.clock()
    period = current_period(settings, now)
    bound = log.bind(account=name, period_start=period.isoformat(), replica=replica)
    lease = settings.audit_lease

    def runner(claim_id: int | None, at: datetime, *, takeover: bool = False) -> _AccountRun:
        return _AccountRun(
            rt,
            name,
            account_id,
            at,
            claim_id,
            replica=replica,
            stop=stop,
            takeover=takeover,
            log_findings=log_findings,
        )

    with rt.database.write() as session:
        account_id = rt.database.store(session).account(name, now=now).id
        if force:
            claim = None
        else:
            claim = store.claim_period(
                session, account_id, period, replica=replica, now=now, lease=lease
            )
            claim_id, won, status, holder = claim
            takeover = not won and store.take_over(
                session, claim_id, replica=replica, now=now, lease=lease
            )
    if claim is None:
        return [runner(None, period).run()]

    outcomes: list[AuditOutcome] = []
    if won or takeover:
        if takeover:
            bound.warning("audit_claim_taken_over", previous_holder=holder)
        outcomes.append(runner(claim_id, period, takeover=takeover).run())
    else:
        reason = {
            ClaimStatus.DONE: ALREADY_AUDITED,
            ClaimStatus.FAILED: PERIOD_FAILED,
        }.get(ClaimStatus(status), IN_PROGRESS)
        bound.info("audit_period_skipped", reason=reason, holder=holder)
        outcomes.append(AuditOutcome(name, period, skipped=True, reason=reason))

    # Earlier periods whose holder died mid-run (or shut down) are completed now.
    with rt.database.read() as session:
        lapsed = store.lapsed_claims(
            session, account_id, before=period, since=now - RECOVERY_HORIZON, now=now
        )
    for lapsed_id, lapsed_period, previous_holder in lapsed:
        if stop is not None and stop.is_set():
            break
        now = rt.clock()
        with rt.database.write() as session:
            won_it = store.take_over(session, lapsed_id, replica=replica, now=now, lease=lease)
        if won_it:
            log.warning(
                "audit_claim_taken_over",
                account=name,
                period_start=lapsed_period.isoformat(),
                previous_holder=previous_holder,
                replica=replica,
            )
            outcomes.append(runner(lapsed_id, lapsed_period, takeover=True).run())
    return outcomes


class _AccountRun:
    """One audit run of one account in one period, under a claim (or forced, without)."""

    def __init__(
        self,
        rt: Runtime,
        account: str,
        account_id: int,
        period: datetime,
        claim_id: int | None,
        *,
        replica: str,
        stop: threading.Event | None,
        takeover: bool,
        log_findings: bool = True,
    ) -> None:
        self.rt = rt
        self.log_findings = log_findings
        self.settings = rt.settings
        self.account = account
        self.account_id = account_id
        self.period = period
        self.claim_id = claim_id
        self.replica = replica
        self.stop = stop
        self.takeover = takeover
        self.started_at = rt.clock()
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
        with self.rt.database.write() as session:
            if self.claim_id is not None and not store.renew_lease(
                session,
                self.claim_id,
                replica=self.replica,
                now=self.rt.clock(),
                lease=self.settings.audit_lease,
            ):
                raise _LeaseLost
            yield session

    def _checkpoint(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stopping

    def _release(self, status: ClaimStatus) -> None:
        """Give the claim up (best effort: a lapsed lease is taken over anyway)."""
        if self.claim_id is None:
            return
        try:
            with self.rt.database.write() as session:
                store.release_claim(
                    session, self.claim_id, replica=self.replica, status=status, now=self.rt.clock()
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
        with self.rt.database.read() as session:
            history = store.history(session, self.account_id, _HISTORY)
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

    # ------------------------------------------------------------ steps

    def _snapshot(self, fingerprint: str | None) -> bool:
        """Take (or, after a takeover, reuse) the audit snapshot. False: the token was rejected."""
        if self.claim_id is not None:
            with self.rt.database.read() as session:
                taken = store.claim_snapshot(session, self.claim_id)
            if taken is not None:
                self.snapshot_id = taken
                self.steps["snapshot"] = {"ok": True, "snapshot_id": taken, "reused": True}
                return True
        try:
            reading = read_profile(self.rt, self.account)
            seen(self.account, reading)
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
        with self._write() as session:
            snapshot_id = self.rt.database.store(session).store_snapshot(
                self.account_id, reading.profile, now=reading.taken_at, kind=SnapshotKind.AUDIT
            )
            if self.claim_id is not None:
                store.set_claim_snapshot(session, self.claim_id, snapshot_id)
        self.snapshot_id = snapshot_id
        self.steps["snapshot"] = {
            "ok": True,
            "snapshot_id": snapshot_id,
            "latency_ms": reading.profile.latency_ms,
            "token_fingerprint": fingerprint,
        }
        return True

    def _consumption(self) -> dict[str, Any]:
        now = self.rt.clock()
        with self.rt.database.read() as session:
            cursor = store.checked_until(session, self.account_id)
            # A first run looks back over the burn window, not the whole history.
            after = cursor or now - self.settings.burn_window
            points = store.points(
                session, self.account_id, after=after, until=now, with_anchor=True
            )
            if len(points) < 2:
                self.checked_until = points[-1].taken_at if points else cursor
                return {"windows": 0, "checked_until": time_text(self.checked_until)}
            start, end = points[0].taken_at, points[-1].taken_at
            costs = store.recorded_costs(session, self.account_id, start=start, end=end)
            spans = store.batch_spans(
                session, self.account_id, start=start, end=end, hold=self.settings.hold_expiry
            )
        drafts, rises = unexplained_consumption(
            points, costs, spans, after=after, tolerance=self.settings.tolerance
        )
        self.drafts.extend(drafts)
        self.checked_until = end
        windows = sum(1 for _, e in pairwise(points) if e.taken_at > after)
        return {"windows": windows, "checked_until": time_text(end), "rises": rises}

    def _low_balance(self, history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        now = self.rt.clock()
        with self.rt.database.read() as session:
            points = store.points(
                session, self.account_id, since=now - self.settings.burn_window, until=now
            )
        if not points:
            return {"low": None, "note": "no snapshot within the burn window"}
        latest = points[-1].balances
        meter = _low_balance_meter(self.rt, self.account, latest)
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
                steps["low_balance"]["low"]
                for steps in history
                if isinstance(steps.get("low_balance", {}).get("low"), bool)
            ),
            False,
        )
        if draft is not None and not was_low:
            self.drafts.append(draft)
        return {"low": low, "already_reported": low and was_low, **measured}

    def _stale_batches(self) -> dict[str, Any]:
        now = self.rt.clock()
        with self.rt.database.read() as session:
            stale = store.stale_batches(
                session, self.account_id, quiet_since=now - self.settings.stale_after
            )
            # Keyed by the batch and its last activity: reported once, and again only if
            # the batch comes back to life and then goes quiet again.
            keys = {
                f"{pk}@{active.isoformat()}": (pk, batch_id, active)
                for pk, batch_id, active in stale
            }
            reported = store.reported_keys(session, self.account_id, FindingKind.STALE_BATCH, keys)
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
        with self.rt.database.read() as session:
            batch_ids = store.batches_to_reclassify(session, self.account_id)
        tags: dict[str, int] = {}
        for batch_id in batch_ids:
            self._checkpoint()
            for tag, count in classify(self.rt, batch_id, only_inconclusive=True).items():
                tags[tag] = tags.get(tag, 0) + count
        return {"batches": len(batch_ids), "tags": tags}

    def _retention(self) -> dict[str, Any]:
        """Thin old audit snapshots (docs/audit.md), in the database, a chunk of at most
        ``_RETENTION_CHUNK`` snapshots per transaction: no id is loaded, and a first run
        over years of history neither holds the write lock nor grows in memory."""
        now = self.rt.clock()
        horizon = self.settings.retention_horizon
        hourly_before, daily_before = now - horizon, now - 7 * horizon
        deleted = 0
        start: datetime | None = None
        while start is None or start < hourly_before:
            self._checkpoint()
            with self._write() as session:
                end = store.next_retention_chunk(
                    session,
                    self.account_id,
                    start=start,
                    before=hourly_before,
                    rows=_RETENTION_CHUNK,
                )
                deleted += store.thin_audit_snapshots(
                    session, self.account_id, start=start, end=end, daily_before=daily_before
                )
            start = end
        return {"deleted": deleted, "older_than": time_text(hourly_before)}

    # ------------------------------------------------------------ finish

    def _finish(self, status: RunStatus, *, reason: str | None = None) -> AuditOutcome:
        """Run row, findings, auto-finished batches and the claim's ``done``: one transaction."""
        findings: list[FindingView] = []
        with self._write() as session:
            now = self.rt.clock()
            run_id = store.store_run(
                session,
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
            for draft in self.drafts:
                stored = store.insert_finding(session, self.account_id, run_id, draft, now=now)
                if stored is not None:
                    findings.append(finding_view(stored, self.account))
            if self.to_finish:
                store.auto_finish(
                    session,
                    self.rt.database.store(session),
                    self.account_id,
                    self.to_finish,
                    now=now,
                )
            if self.claim_id is not None:
                store.mark_claim_done(session, self.claim_id, now=now)
        self.log.info(
            "audit_run_completed",
            audit_run_id=run_id,
            status=status.value,
            snapshot_id=self.snapshot_id,
            findings=len(findings),
            takeover=self.takeover,
        )
        for finding in findings if self.log_findings else ():
            self.log.warning(
                "audit_finding",
                kind=finding.kind,
                amount=amount_text(finding.amount),
                finding_id=finding.id,
                audit_run_id=run_id,
                window_start=finding.window_start.isoformat(),
                window_end=finding.window_end.isoformat(),
                batches=list(finding.batches),
            )
        if findings:
            from preflight.alerts import send_alerts

            send_alerts(self.settings, [finding.to_dict() for finding in findings])
        return AuditOutcome(
            account=self.account,
            period_start=self.period,
            skipped=status is RunStatus.SKIPPED,
            reason=reason,
            audit_run_id=run_id,
            snapshot_id=self.snapshot_id,
            status=status.value,
            takeover=self.takeover,
            steps=self.steps,
            findings=tuple(findings),
        )


def _rejected_token(steps: Mapping[str, Any]) -> str | None:
    """The fingerprint of the token a run (its steps) found rejected (401), if it did."""
    step = steps.get("snapshot") or {}
    if step.get("auth_failed"):
        fingerprint = step.get("token_fingerprint")
        return fingerprint if isinstance(fingerprint, str) else None
    return None


def _low_balance_meter(rt: Runtime, account: str, latest: Mapping[str, Decimal | None]) -> str:
    """The meter the low-balance rule watches: the configured one when the account's vendor
    has it, else ``auto``'s choice in the vendor's order (credits, else the quota, by
    default), else any meter the latest snapshot has."""
    configured = rt.settings.accounts.get(account)
    adapter = configured.adapter if configured is not None else DEFAULT_ADAPTER
    meter = rt.settings.meter
    if meter != "auto" and (meter in adapter.meters or adapter.open_meters):
        return meter
    present = [name for name in (*adapter.meters, *sorted(latest)) if latest.get(name) is not None]
    # With none present, the vendor's last meter (the legacy quota by default), as ever.
    return present[0] if present else (adapter.meters or ("api_quota_remaining",))[-1]
