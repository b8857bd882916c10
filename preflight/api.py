"""The Python API: the same verbs as the CLI, for Python orchestrators.

    from preflight.api import Preflight

    with Preflight() as pf:
        result = pf.check("nightly-2026-11-24", need=Decimal("500"))
        if result.go:
            dispatch()

Each method is one verb of :mod:`preflight.services`, run on the object's
:class:`~preflight.services.runtime.Runtime`: it talks to the vendor outside any database
transaction (a slow vendor never holds SQLite's write lock), then commits once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self

from preflight.domain.verdict import Verdict
from preflight.errors import NoGoError
from preflight.services.results import (
    AuditOutcome,
    BatchListing,
    BatchReport,
    CheckResult,
    FailureView,
    FindingView,
    FinishResult,
    ImportResult,
    ProfileReading,
    RecordResult,
)
from preflight.services.runtime import Runtime, utcnow
from preflight.settings import Settings, load_settings

if TYPE_CHECKING:
    import httpx

    from preflight.db.session import Database
    from preflight.domain.outcome import OutcomeInput
    from preflight.services.profile import ProfileUpdate
    from preflight.vendor import VendorClient

__all__ = ["BatchRun", "Preflight"]

Amount = Decimal | str | int


@dataclass(frozen=True)
class BatchRun:
    """The handle ``Preflight.batch()`` yields: the check's answer and a way to record."""

    app: Preflight
    check: CheckResult

    def record(self, job_id: str, status: str, **fields: object) -> RecordResult:
        """Record one outcome of this batch (same fields as ``Preflight.record``)."""
        return self.app.record(self.check.batch_id, {"job_id": job_id, "status": status, **fields})


class Preflight:
    """Snapshots, verdicts, outcomes and post-mortems for one configuration.

    The engine and the HTTP connection pools are built once and reused by every call;
    close the object (or use it as a context manager) to release them.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database: Database | None = None,
        http_factory: Callable[[str], httpx.Client] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = Runtime(
            settings or load_settings(), database=database, http_factory=http_factory, clock=clock
        )

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
        self.runtime.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ before and during a batch

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
    ) -> CheckResult:
        """Snapshot the profile, store it keyed by ``batch_id`` and answer go / no-go."""
        from preflight.services import checks as _checks

        return _checks.check(
            self.runtime,
            batch_id,
            need=need,
            meter=meter,
            reserve=reserve,
            fail_open=fail_open,
            account=account,
            labels=labels,
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
    ) -> RecordResult:
        """Record one job outcome; idempotent on (batch, job, attempt)."""
        from preflight.services import outcomes as _outcomes

        return _outcomes.record(self.runtime, batch_id, outcome, snapshot=snapshot, account=account)

    def record_many(
        self,
        batch_id: str,
        lines: Iterable[str | bytes],
        *,
        account: str | None = None,
        chunk_size: int | None = None,
    ) -> ImportResult:
        """Record outcomes from JSON Lines; a bad line stops it, every line before is kept."""
        from preflight.services import outcomes as _outcomes

        return _outcomes.record_many(
            self.runtime, batch_id, lines, account=account, chunk_size=chunk_size
        )

    def finish(self, batch_id: str, *, snapshot: bool = True) -> FinishResult:
        """Take a ``finish`` snapshot, mark the batch finished, report foreign consumption."""
        from preflight.services import batches as _batches

        return _batches.finish(self.runtime, batch_id, snapshot=snapshot)

    def classify(
        self, batch_id: str | None = None, *, only_inconclusive: bool = False
    ) -> dict[str, int]:
        """(Re)classify stored quota failures of one batch, or of every batch."""
        from preflight.services import outcomes as _outcomes

        return _outcomes.classify(self.runtime, batch_id, only_inconclusive=only_inconclusive)

    # ------------------------------------------------------------ post-mortems

    def show(self, batch_id: str) -> BatchReport:
        """One batch: snapshots in time order, outcome totals, tagged quota failures."""
        from preflight.services import batches as _batches

        return _batches.show(self.runtime, batch_id)

    def failures(
        self, *, since: datetime | None = None, tag: str | None = None, account: str | None = None
    ) -> list[FailureView]:
        """Quota failures across batches, oldest first."""
        from preflight.services import batches as _batches

        return _batches.failures(self.runtime, since=since, tag=tag, account=account)

    def batches(
        self,
        *,
        since: datetime | None = None,
        status: str | None = None,
        account: str | None = None,
    ) -> list[BatchListing]:
        """Recent batches, newest first, with verdicts and outcome totals."""
        from preflight.services import batches as _batches

        return _batches.batches(self.runtime, since=since, status=status, account=account)

    def findings(
        self, *, since: datetime | None = None, kind: str | None = None, account: str | None = None
    ) -> list[FindingView]:
        """Stored audit findings, oldest first."""
        from preflight.services import batches as _batches

        return _batches.findings(self.runtime, since=since, kind=kind, account=account)

    # ------------------------------------------------------------ audit and profile

    def audit(
        self,
        *,
        account: str | None = None,
        force: bool = False,
        replica: str | None = None,
        stop: threading.Event | None = None,
    ) -> list[AuditOutcome]:
        """One audit run per account for the current period (claimed once across replicas)."""
        from preflight.services import audit as _audit

        return _audit.run_audit(
            self.runtime, account=account, force=force, replica=replica, stop=stop
        )

    def profile(self, account: str | None = None) -> ProfileReading:
        """Read the profile now and keep it as a ``manual`` snapshot."""
        from preflight.services import profile as _profile

        return _profile.read_profile(self.runtime, account)

    def update_profile(
        self, webhook_url: str, *, account: str | None = None, allow_http: bool = False
    ) -> ProfileUpdate:
        """Set the profile's ``webhookUrl``; kept apart from batch work."""
        from preflight.services import profile as _profile

        return _profile.update_profile(
            self.runtime, webhook_url, account=account, allow_http=allow_http
        )
