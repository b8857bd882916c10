"""The Python API: the CLI's verbs for Python orchestrators, each one verb of
:mod:`preflight.services` on the object's ``Runtime`` — or, in remote mode (``server_url``/
``server_token``, or ``PREFLIGHT_SERVER_URL``/``_TOKEN``), the same verb on a preflight
server (:mod:`preflight.remote`), with the same results. Which function runs a verb is
declared once, in :mod:`preflight.verbs`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from preflight import verbs
from preflight.domain.verdict import Verdict
from preflight.errors import NoGoError
from preflight.services.check_result import CheckResult
from preflight.services.runtime import Runtime, utcnow
from preflight.settings import Settings, load_settings

if TYPE_CHECKING:
    import httpx

    from preflight.db.session import Database
    from preflight.domain.outcome import OutcomeInput
    from preflight.remote import RemoteClient
    from preflight.secret import Secret
    from preflight.services import results
    from preflight.services.profile import ProfileUpdate
    from preflight.vendor import VendorClient

__all__ = ["BatchRun", "Preflight"]

Amount = Decimal | str | int
R = TypeVar("R")


@dataclass(frozen=True)
class BatchRun:
    """The handle ``Preflight.batch()`` yields: the check's answer and a way to record."""

    app: Preflight
    check: CheckResult

    def record(self, job_id: str, status: str, **fields: object) -> results.RecordResult:
        """Record one outcome of this batch (same fields as ``Preflight.record``)."""
        return self.app.record(self.check.batch_id, {"job_id": job_id, "status": status, **fields})

    def guard(
        self, *, next_cost: Amount | None = None, max_age: timedelta | None = None
    ) -> results.GuardResult:
        """Between two dispatches of this batch (as ``Preflight.guard``)."""
        return self.app.guard(self.check.batch_id, next_cost=next_cost, max_age=max_age)


class Preflight:
    """Snapshots, verdicts, outcomes and post-mortems for one configuration. The engine and
    the HTTP pools are built once; close it (or use ``with``) to release them."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database: Database | None = None,
        http_factory: Callable[[str], httpx.Client] | None = None,
        clock: Callable[[], datetime] = utcnow,
        server_url: str | None = None,
        server_token: str | Secret | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.runtime = Runtime(settings, database=database, http_factory=http_factory, clock=clock)
        self._remote: RemoteClient | None = None
        if server_url or settings.server_url:
            from preflight.remote import connect  # cold path: `preflight check` (no asyncio)

            self._remote = connect(settings, server_url, server_token)

    @classmethod
    def remote(cls, server_url: str, server_token: str | Secret, **options: Any) -> Preflight:
        """The facade of a preflight server (``preflight serve``): the same verbs over HTTP."""
        return cls(server_url=server_url, server_token=server_token, **options)

    def _do(self, verb: verbs.Verb[R], *args: Any, **kw: Any) -> R:
        """Run ``verb`` (:mod:`preflight.verbs`): on the server in remote mode, else its
        service function on this object's runtime."""
        if self._remote is not None and verb.remote:
            return cast(R, getattr(self._remote, verb.function)(*args, **kw))
        return cast(R, verbs.local(verb.function)(self.runtime, *args, **kw))

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def database(self) -> Database:
        return self.runtime.database

    def vendor(self, account: str | None = None) -> VendorClient:
        """The vendor client of ``account`` (default: the configured default account)."""
        return self.runtime.vendor(account)

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
        self.runtime.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def check(
        self,
        batch_id: str,
        *,
        need: Amount | None = None,
        meter: str | None = None,
        reserve: Amount | None = None,
        fail_open: bool | None = None,
        account: str | None = None,
        labels: Mapping[str, str] | None = None,
        jobs: int | None = None,
        estimate_from: str | None = None,
        estimate: str | None = None,
        min_history: int | None = None,
    ) -> CheckResult:
        """Snapshot the profile, store it keyed by ``batch_id`` and answer go / no-go. ``jobs``
        with ``estimate_from="K=V"`` estimates the need from history (``need_basis``)."""
        options = {"meter": meter, "reserve": reserve, "fail_open": fail_open}
        history = {
            "jobs": jobs,
            "estimate_from": estimate_from,
            "estimate": estimate,
            "min_history": min_history,
        }
        return self._do(
            verbs.CHECK, batch_id, need=need, account=account, labels=labels, **options, **history
        )

    @contextmanager
    def batch(
        self, batch_id: str, *, need: Amount | None = None, strict: bool = False, **options: Any
    ) -> Iterator[BatchRun]:
        """Check, run, finish: ``with pf.batch("B", need=60) as run: run.record(...)``.

        Raises :class:`NoGoError` before the block runs when the verdict is a no-go (or
        ``at_risk`` with ``strict``); the batch is finished when the block exits, even on
        an exception, so its finish snapshot and foreign consumption are always recorded.
        """
        result = self.check(batch_id, need=need, **options)
        if not result.go or (strict and result.verdict is Verdict.AT_RISK):
            raise NoGoError(
                f"batch {batch_id!r} not started: {result.verdict.value}: {result.reason}",
                verdict=result.verdict.value,
                strict=strict,
            )
        try:
            yield BatchRun(self, result)
        finally:
            self.finish(batch_id)

    def record(
        self,
        batch_id: str,
        outcome: OutcomeInput | Mapping[str, object],
        *,
        snapshot: bool = True,
        account: str | None = None,
    ) -> results.RecordResult:
        """Record one job outcome; idempotent on (batch, job, attempt)."""
        return self._do(verbs.RECORD, batch_id, outcome, snapshot=snapshot, account=account)

    def record_many(
        self,
        batch_id: str,
        lines: Iterable[str | bytes],
        *,
        account: str | None = None,
        chunk_size: int | None = None,
        progress: Callable[[results.ImportProgress], None] | None = None,
    ) -> results.ImportResult:
        """Record outcomes from JSON Lines; a bad line stops it, every line before is kept."""
        return self._do(
            verbs.RECORD_MANY,
            batch_id,
            lines,
            account=account,
            chunk_size=chunk_size,
            progress=progress,
        )

    def guard(
        self,
        batch_id: str,
        *,
        next_cost: Amount | None = None,
        max_age: timedelta | None = None,
    ) -> results.GuardResult:
        """Between two dispatches: continue, at_risk or stop, from a snapshot no older than
        ``max_age`` (default 60 s, else a recheck). ``exit_code(strict=)``: the CLI's."""
        return self._do(verbs.GUARD, batch_id, next_cost=next_cost, max_age=max_age)

    def finish(self, batch_id: str, *, snapshot: bool = True) -> results.FinishResult:
        """Take a ``finish`` snapshot, mark the batch finished, report foreign consumption."""
        return self._do(verbs.FINISH, batch_id, snapshot=snapshot)

    def classify(
        self, batch_id: str | None = None, *, only_inconclusive: bool = False
    ) -> dict[str, int]:
        """(Re)classify stored quota failures of one batch, or of every batch."""
        return self._do(verbs.CLASSIFY, batch_id, only_inconclusive=only_inconclusive)

    def show(self, batch_id: str) -> results.BatchReport:
        """One batch: snapshots in time order, outcome totals, tagged quota failures."""
        return self._do(verbs.SHOW, batch_id)

    def failures(
        self, *, since: datetime | None = None, tag: str | None = None, account: str | None = None
    ) -> list[results.FailureView]:
        """Quota failures across batches, oldest first."""
        return self._do(verbs.FAILURES, since=since, tag=tag, account=account)

    def batches(
        self,
        *,
        since: datetime | None = None,
        status: str | None = None,
        account: str | None = None,
    ) -> list[results.BatchListing]:
        """Recent batches, newest first, with verdicts and outcome totals."""
        return self._do(verbs.BATCHES, since=since, status=status, account=account)

    def findings(
        self, *, since: datetime | None = None, kind: str | None = None, account: str | None = None
    ) -> list[results.FindingView]:
        """Stored audit findings, oldest first."""
        return self._do(verbs.FINDINGS, since=since, kind=kind, account=account)

    def report(self, batch_id: str) -> results.BatchTimeline:
        """What ``preflight report BATCH_ID`` draws: show() and the timeline around it."""
        return self._do(verbs.BATCH_TIMELINE, batch_id)

    def account_report(self, account: str | None, since: datetime) -> results.AccountTimeline:
        """An account's balance, batches, findings, burn rate and runway since ``since``."""
        return self._do(verbs.ACCOUNT_TIMELINE, account, since=since)

    def audit(
        self,
        *,
        account: str | None = None,
        force: bool = False,
        replica: str | None = None,
        stop: threading.Event | None = None,
        log_findings: bool = True,
    ) -> list[results.AuditOutcome]:
        """One audit run per account for the current period (claimed once across replicas)."""
        return self._do(
            verbs.RUN_AUDIT,
            account=account,
            force=force,
            replica=replica,
            stop=stop,
            log_findings=log_findings,
        )

    def profile(self, account: str | None = None) -> results.ProfileReading:
        """Read the profile now and keep it as a ``manual`` snapshot."""
        return self._do(verbs.READ_PROFILE, account)

    def update_profile(
        self, webhook_url: str, *, account: str | None = None, allow_http: bool = False
    ) -> ProfileUpdate:
        """Set the profile's ``webhookUrl``; kept apart from batch work."""
        return self._do(verbs.UPDATE_PROFILE, webhook_url, account=account, allow_http=allow_http)
