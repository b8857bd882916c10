"""The Python API: the same verbs as the CLI, for Python orchestrators.

    from preflight.api import Preflight

    with Preflight() as pf:
        result = pf.check("nightly-2026-11-24", need=Decimal("500"))
        if result.go:
            dispatch()

Every method is one unit of work: it talks to the vendor outside any database
transaction (a slow vendor never holds SQLite's write lock), then commits once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Self

import structlog

from preflight.db.models import Account, Batch, Snapshot
from preflight.db.reports import list_batches, list_failures, show_batch
from preflight.db.repositories import (
    SpendSummary,
    batch_spend_summary,
    batches_with_quota_failures,
    find_batch,
    get_or_create_account,
    get_or_create_batch,
    insert_new_outcomes,
    load_quota_failures,
    outcome_rows_by_key,
    outstanding_need_of_others,
    preflight_snapshot,
    quota_failures,
    save_tag,
)
from preflight.domain.batch import BatchStatus, Meter, SnapshotKind, choose_meter, validate_batch_id
from preflight.domain.classify import Classification, Tag, classify
from preflight.domain.outcome import (
    MAX_LINE_BYTES,
    OutcomeInput,
    build_outcome,
    parse_json_line,
)
from preflight.domain.verdict import NO_GO, Assessment, Verdict, assess, exit_code
from preflight.domain.wire import amount_text
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    ConfigError,
    ConflictError,
    NoGoError,
    UsageError,
    VendorError,
    VendorUnavailableError,
)
from preflight.settings import METERS, Settings, load_settings, parse_amount

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.orm import Session

    from preflight.db.session import Database
    from preflight.vendor import Profile, VendorClient

log = structlog.get_logger("preflight")

ADVISORY: Final = "advisory: the balance was read, not reserved; other workers may still spend it"

_VERDICT_OF_ERROR: Final[dict[type[VendorError], Verdict]] = {
    AuthError: Verdict.AUTH_FAILED,
    BillingBlockedError: Verdict.BILLING_BLOCKED,
    VendorUnavailableError: Verdict.UNAVAILABLE,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CheckResult:
    """The answer to "may batch B, needing N, be dispatched now?"."""

    batch_id: str
    account: str
    verdict: Verdict
    reason: str
    meter: str | None
    balance: Decimal | None
    need: Decimal | None
    reserve: Decimal
    outstanding_other: Decimal | None
    snapshot_id: int | None
    snapshot_kind: str | None
    checked_at: datetime
    status: str
    verified: bool
    fail_open: bool
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def go(self) -> bool:
        """True when the orchestrator may dispatch (go, at_risk, or unavailable with fail-open)."""
        return self.verdict not in NO_GO or (self.verdict is Verdict.UNAVAILABLE and self.fail_open)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "account": self.account,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "meter": self.meter,
            "balance": amount_text(self.balance),
            "need": amount_text(self.need),
            "reserve": amount_text(self.reserve),
            "outstanding_other": amount_text(self.outstanding_other),
            "snapshot_id": self.snapshot_id,
            "snapshot_kind": self.snapshot_kind,
            "checked_at": self.checked_at.isoformat(),
            "status": self.status,
            "verified": self.verified,
            "fail_open": self.fail_open,
            "labels": dict(self.labels),
            "advisory": ADVISORY,
        }


@dataclass(frozen=True)
class ProfileReading:
    """A profile fetched on demand and stored as a snapshot."""

    account: str
    snapshot_id: int
    taken_at: datetime
    profile: Profile

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat(),
            "user_id": self.profile.user_id,
            "tier": self.profile.tier,
            "credits": amount_text(self.profile.credits),
            "api_quota_remaining": amount_text(self.profile.api_quota_remaining),
            "latency_ms": self.profile.latency_ms,
            "raw": self.profile.raw,
        }


@dataclass(frozen=True)
class BatchRun:
    """The handle ``Preflight.batch()`` yields: the check's answer and a way to record."""

    app: Preflight
    check: CheckResult

    def record(self, job_id: str, status: str, **fields: object) -> RecordResult:
        """Record one outcome of this batch (same fields as ``Preflight.record``)."""
        return self.app.record(self.check.batch_id, {"job_id": job_id, "status": status, **fields})


@dataclass(frozen=True)
class RecordResult:
    """One recorded outcome, and the tag when it was a quota failure."""

    batch_id: str
    outcome: OutcomeInput
    created: bool
    tag: Classification | None
    snapshot_id: int | None
    snapshot_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "job_id": self.outcome.job_id,
            "attempt": self.outcome.attempt,
            "status": self.outcome.status.value,
            "created": self.created,
            "quota_failure": self.outcome.quota_failure,
            "tag": self.tag.tag.value if self.tag else None,
            "reason": self.tag.reason if self.tag else None,
            "snapshot_id": self.snapshot_id,
            "snapshot_error": self.snapshot_error,
        }


@dataclass(frozen=True)
class ImportResult:
    """What a JSON Lines import stored."""

    batch_id: str
    lines: int
    inserted: int
    duplicates: int
    tags: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "lines": self.lines,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class FinishResult:
    """A finished batch: its own recorded cost against the balance drop during it."""

    batch_id: str
    finished_at: datetime
    summary: SpendSummary
    snapshot_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": BatchStatus.FINISHED.value,
            "finished_at": self.finished_at.isoformat(),
            **self.summary.to_dict(),
            "snapshot_error": self.snapshot_error,
        }


def _outcome_row(batch: Batch, item: OutcomeInput, now: datetime) -> dict[str, Any]:
    return {
        "batch_pk": batch.id,
        "job_id": item.job_id,
        "attempt": item.attempt,
        "status": item.status.value,
        "http_status": item.http_status,
        "cost": item.cost,
        "expected_cost": item.expected_cost,
        "error": item.error,
        "quota_failure": item.quota_failure,
        "occurred_at": item.at or now,
        "recorded_at": now,
    }


@dataclass(frozen=True)
class _Stored:
    inserted: int
    duplicates: int
    conflict: tuple[int, ConflictError] | None  # the first contradicting line, if any


def _store_outcomes(
    session: Session, batch: Batch, items: Sequence[tuple[int, OutcomeInput]], now: datetime
) -> _Stored:
    """Store numbered outcomes in order, up to the first one that contradicts a stored
    outcome or an earlier line: that line and every later one are not kept.

    Identical repeats are duplicates, not errors. New keys are inserted without being
    looked up first; only keys that were already stored are read back and compared.
    """
    first: dict[tuple[str, int], tuple[int, OutcomeInput]] = {}
    conflict: tuple[int, ConflictError] | None = None
    for line_no, item in items:
        key = (item.job_id, item.attempt)
        earlier = first.get(key)
        if earlier is None:
            first[key] = (line_no, item)
        elif earlier[1] != item:
            conflict = (
                line_no,
                ConflictError(
                    f"job {item.job_id!r} attempt {item.attempt} was given on line {earlier[0]} "
                    "with different values"
                ),
            )
            break
    candidates = list(first.values())
    savepoint = session.begin_nested()
    inserted = insert_new_outcomes(session, [_outcome_row(batch, i, now) for _, i in candidates])
    leftovers = [(n, i) for n, i in candidates if (i.job_id, i.attempt) not in inserted]
    if leftovers:
        stored = outcome_rows_by_key(session, batch, {i.job_id for _, i in leftovers})
        for line_no, item in leftovers:
            differences = item.differences(stored[(item.job_id, item.attempt)])
            if differences:
                if conflict is None or line_no < conflict[0]:
                    conflict = (line_no, _conflict_error(batch.batch_id, item, differences))
                break
    if conflict is not None and any(
        n >= conflict[0] for n, i in candidates if (i.job_id, i.attempt) in inserted
    ):
        # Lines after the conflicting one went in with the rest: keep only those before it.
        savepoint.rollback()
        inserted = insert_new_outcomes(
            session,
            [
                _outcome_row(batch, i, now)
                for n, i in candidates
                if n < conflict[0] and (i.job_id, i.attempt) in inserted
            ],
        )
    else:
        savepoint.commit()
    processed = sum(1 for n, _ in items if conflict is None or n < conflict[0])
    return _Stored(len(inserted), processed - len(inserted), conflict)


def _conflict_error(batch_id: str, item: OutcomeInput, differences: list[str]) -> ConflictError:
    return ConflictError(
        f"job {item.job_id!r} attempt {item.attempt} of batch {batch_id!r} is already "
        f"recorded with a different {', '.join(differences)}; outcomes are never "
        "overwritten (record a new --attempt instead)"
    )


def _count_tags(results: Iterable[Classification]) -> dict[str, int]:
    return dict(Counter(result.tag.value for result in results))


def _amount(name: str, value: Decimal | str | int | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


class Preflight:
    """Snapshots, verdicts and (later) outcomes for one configuration.

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
        self.settings = settings or load_settings()
        self._database = database
        self._http_factory = http_factory
        self._clock = clock
        self._vendors: dict[str, VendorClient] = {}
        self._http_clients: list[httpx.Client] = []

    # ------------------------------------------------------------ resources

    @property
    def database(self) -> Database:
        if self._database is None:
            from preflight.db.migrate import ensure_schema
            from preflight.db.session import Database

            database = Database.from_url(self.settings.database_url)
            ensure_schema(database.engine)
            self._database = database
        return self._database

    def vendor(self, account: str | None = None) -> VendorClient:
        """The vendor client of ``account`` (default: the configured default account)."""
        from preflight.vendor import RetryPolicy, VendorClient, build_http_client

        account_settings = self.settings.account_settings(account)
        name = account_settings.name
        if name not in self._vendors:
            if account_settings.token is None:
                hint = (
                    "set PREFLIGHT_API_TOKEN or PREFLIGHT_API_TOKEN_FILE"
                    if name == "default"
                    else f"set token_file or token_env in [accounts.{name}]"
                )
                raise ConfigError(f"no vendor token for account {name!r}: {hint}")
            base_url = self.settings.vendor_url_for(account_settings)
            http = (
                self._http_factory(base_url)
                if self._http_factory
                else build_http_client(self.settings, base_url)
            )
            self._http_clients.append(http)
            self._vendors[name] = VendorClient(
                http,
                account_settings.token,
                policy=RetryPolicy.from_settings(self.settings),
                max_body_bytes=self.settings.max_body_bytes,
            )
        return self._vendors[name]

    def close(self) -> None:
        for client in self._http_clients:
            client.close()
        self._http_clients.clear()
        self._vendors.clear()
        if self._database is not None:
            self._database.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ verbs

    def check(
        self,
        batch_id: str,
        *,
        need: Decimal | str | int | None = None,
        meter: str | None = None,
        reserve: Decimal | str | int | None = None,
        fail_open: bool | None = None,
        account: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> CheckResult:
        """Snapshot the profile, store it keyed by ``batch_id`` and answer go / no-go.

        A repeated check of the same batch keeps the first snapshot as the batch's
        ``preflight`` snapshot and stores the new one as ``recheck``.
        """
        validate_batch_id(batch_id)
        need_amount = _amount("need", need)
        reserve_amount = _amount("reserve", reserve)
        if reserve_amount is None:
            reserve_amount = self.settings.reserve
        requested_meter = meter or self.settings.meter
        if requested_meter != "auto" and requested_meter not in METERS:
            raise UsageError(
                f"--meter: must be auto, credits or api_quota_remaining, not {meter!r}"
            )
        fail_open = self.settings.fail_open if fail_open is None else fail_open
        account_name = self.settings.account_settings(account).name
        bound = log.bind(batch_id=batch_id, account=account_name)

        # Refuse a contradiction before spending a vendor call on it.
        with self.database.read() as session:
            existing = find_batch(session, batch_id)
            if existing is not None:
                _check_consistent(existing, account_name, requested_meter)

        profile: Profile | None = None
        vendor_error: VendorError | None = None
        try:
            profile = self.vendor(account_name).get_profile()
        except (AuthError, BillingBlockedError, VendorUnavailableError) as exc:
            vendor_error = exc
        now = self._clock()

        with self.database.write() as session:
            account_row = get_or_create_account(session, account_name, now=now)
            batch, _created = get_or_create_batch(
                session, batch_id, account=account_row, now=now, reserve=reserve_amount
            )
            _check_consistent(batch, account_name, requested_meter)
            snapshot: Snapshot | None = None
            balance: Decimal | None = None
            outstanding: Decimal | None = None
            chosen: str | None = batch.meter
            if profile is not None:
                if chosen is None:
                    found = choose_meter(requested_meter, _meters_of(profile))
                    chosen = found.value if found else None
                snapshot = self._store_snapshot(
                    session,
                    account_row,
                    profile,
                    now=now,
                    batch=batch,
                    kind=SnapshotKind.RECHECK
                    if preflight_snapshot(session, batch) is not None
                    else SnapshotKind.PREFLIGHT,
                )
                balance = profile.meter(chosen) if chosen else None
                if balance is None:
                    absent = chosen or "no meter (credits, api_quota_remaining)"
                    assessment = Assessment(
                        Verdict.UNAVAILABLE, f"{absent} absent from the vendor's profile"
                    )
                else:
                    outstanding = outstanding_need_of_others(
                        session,
                        account_row,
                        exclude=batch,
                        now=now,
                        hold_expiry=self.settings.hold_expiry,
                    )
                    effective_need = need_amount if need_amount is not None else batch.need
                    assessment = assess(
                        balance, effective_need or Decimal(0), reserve_amount, outstanding
                    )
            else:
                assert vendor_error is not None
                verdict = next(
                    v for t, v in _VERDICT_OF_ERROR.items() if isinstance(vendor_error, t)
                )
                assessment = Assessment(verdict, str(vendor_error))

            verdict = assessment.verdict
            dispatchable = verdict not in NO_GO or (verdict is Verdict.UNAVAILABLE and fail_open)
            batch.meter = chosen
            if need_amount is not None:
                batch.need = need_amount
            batch.reserve = reserve_amount
            batch.verdict = verdict.value
            # Verified: a usable balance was read (an insufficient batch is verified too).
            batch.verified = balance is not None
            batch.checked_at = now
            batch.last_activity_at = now
            if labels:
                batch.labels = {**batch.labels, **labels}
            if batch.status != BatchStatus.FINISHED.value:
                batch.status = (BatchStatus.OPEN if dispatchable else BatchStatus.BLOCKED).value
            result = CheckResult(
                batch_id=batch_id,
                account=account_name,
                verdict=verdict,
                reason=assessment.reason,
                meter=chosen,
                balance=balance,
                need=batch.need,
                reserve=reserve_amount,
                outstanding_other=outstanding,
                snapshot_id=snapshot.id if snapshot else None,
                snapshot_kind=snapshot.kind if snapshot else None,
                checked_at=now,
                status=batch.status,
                verified=batch.verified,
                fail_open=fail_open and verdict is Verdict.UNAVAILABLE,
                labels=dict(batch.labels),
            )
        bound.info(
            "check_completed",
            verdict=verdict.value,
            meter=chosen,
            balance=amount_text(balance),
            need=amount_text(result.need),
            snapshot_id=result.snapshot_id,
        )
        return result

    def profile(self, account: str | None = None) -> ProfileReading:
        """Read the profile now and keep it as a ``manual`` snapshot."""
        account_name = self.settings.account_settings(account).name
        profile = self.vendor(account_name).get_profile()
        now = self._clock()
        with self.database.write() as session:
            account_row = get_or_create_account(session, account_name, now=now)
            snapshot = self._store_snapshot(
                session, account_row, profile, now=now, kind=SnapshotKind.MANUAL
            )
        return ProfileReading(account_name, snapshot.id, now, profile)

    @contextmanager
    def batch(
        self,
        batch_id: str,
        *,
        need: Decimal | str | int | None = None,
        strict: bool = False,
        **check_options: Any,
    ) -> Iterator[BatchRun]:
        """Check, run, finish: ``with pf.batch("B", need=60) as run: run.record(...)``.

        Raises :class:`NoGoError` before the block runs when the verdict is a no-go (or
        ``at_risk`` with ``strict``); the batch is finished when the block exits, even on
        an exception, so its finish snapshot and foreign consumption are always recorded.
        """
        result = self.check(batch_id, need=need, **check_options)
        refused = not result.go or (strict and result.verdict is Verdict.AT_RISK)
        if refused:
            raise NoGoError(
                f"batch {batch_id!r} not started: {result.verdict.value}: {result.reason}",
                verdict=result.verdict.value,
                exit_code=exit_code(result.verdict, strict=strict, fail_open=result.fail_open),
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
        """Record one job outcome; idempotent on (batch, job, attempt).

        The same outcome again changes nothing; a different one for the same key is a
        ``ConflictError``. A quota failure recorded live takes a ``failure`` snapshot
        (unless ``snapshot`` is False) and is classified at once.
        """
        validate_batch_id(batch_id)
        item = outcome if isinstance(outcome, OutcomeInput) else build_outcome(outcome)
        now = self._clock()
        with self.database.write() as session:
            batch = self._batch_for_outcomes(session, batch_id, account, now)
            stored = _store_outcomes(session, batch, [(1, item)], now)
            if stored.conflict is not None:
                raise stored.conflict[1]
            batch.last_activity_at = now
            account_name = batch.account.name
        created = stored.inserted == 1
        snapshot_id: int | None = None
        snapshot_error: str | None = None
        if created and item.quota_failure and snapshot:
            try:
                snapshot_id = self._take_snapshot(
                    account_name, SnapshotKind.FAILURE, batch_id=batch_id
                ).id
            except (VendorError, ConfigError) as exc:
                # The outcome is stored; the audit job reclassifies once a snapshot exists.
                snapshot_error = str(exc)
                log.info("failure_snapshot_failed", batch_id=batch_id, error=snapshot_error)
        tag: Classification | None = None
        if item.quota_failure:
            tags = self._classify_batches([batch_id], job=(item.job_id, item.attempt))
            tag = tags[0] if tags else None
        log.info(
            "outcome_recorded",
            batch_id=batch_id,
            job_id=item.job_id,
            attempt=item.attempt,
            status=item.status.value,
            created=created,
            tag=tag.tag.value if tag else None,
        )
        return RecordResult(batch_id, item, created, tag, snapshot_id, snapshot_error)

    def record_many(
        self,
        batch_id: str,
        lines: Iterable[str | bytes],
        *,
        account: str | None = None,
        chunk_size: int = 1000,
    ) -> ImportResult:
        """Record outcomes from JSON Lines, streaming, ``chunk_size`` per transaction.

        A bad line stops the import with a ``UsageError`` naming its line number; every
        line before it is kept (re-running the fixed file is safe: records are
        idempotent). Quota failures are classified from the account's snapshot
        timeline afterwards; no live snapshot is taken.
        """
        validate_batch_id(batch_id)
        counts = {"lines": 0, "inserted": 0, "duplicates": 0}
        pending: list[tuple[int, OutcomeInput]] = []
        quota_failures_seen = 0

        def flush() -> None:
            if not pending:
                return
            now = self._clock()
            with self.database.write() as session:
                batch = self._batch_for_outcomes(session, batch_id, account, now)
                stored = _store_outcomes(session, batch, pending, now)
                batch.last_activity_at = now
            counts["inserted"] += stored.inserted
            counts["duplicates"] += stored.duplicates
            pending.clear()
            if stored.conflict is not None:
                line_no, error = stored.conflict
                raise UsageError(f"line {line_no}: {error}")

        for line_no, raw in enumerate(lines, start=1):
            try:
                # Bytes are decoded line by line, so a bad byte is blamed on its own line.
                line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            except UnicodeDecodeError:
                flush()
                raise UsageError(f"line {line_no}: not UTF-8 text") from None
            if len(line.rstrip("\r\n")) > MAX_LINE_BYTES:
                flush()
                raise UsageError(f"line {line_no}: longer than {MAX_LINE_BYTES} bytes")
            if not line.strip():
                continue
            counts["lines"] += 1
            try:
                item = parse_json_line(line)
            except UsageError as exc:
                flush()
                raise UsageError(f"line {line_no}: {exc}") from None
            quota_failures_seen += item.quota_failure
            pending.append((line_no, item))
            if len(pending) >= chunk_size:
                flush()
        flush()
        tags = self._classify_batches([batch_id]) if quota_failures_seen else []
        return ImportResult(
            batch_id=batch_id,
            lines=counts["lines"],
            inserted=counts["inserted"],
            duplicates=counts["duplicates"],
            tags=_count_tags(tags),
        )

    def classify(
        self, batch_id: str | None = None, *, only_inconclusive: bool = False
    ) -> dict[str, int]:
        """(Re)classify stored quota failures of one batch, or of every batch. Idempotent."""
        if batch_id is not None:
            validate_batch_id(batch_id)
            with self.database.read() as session:
                if find_batch(session, batch_id) is None:
                    raise UsageError(f"no batch {batch_id!r}")
            names = [batch_id]
        else:
            with self.database.read() as session:
                names = batches_with_quota_failures(session)
        only = {Tag.INCONCLUSIVE.value} if only_inconclusive else None
        return _count_tags(self._classify_batches(names, only_tags=only))

    def finish(self, batch_id: str, *, snapshot: bool = True) -> FinishResult:
        """Take a ``finish`` snapshot, mark the batch finished, and compare its own cost
        with the balance drop since its preflight snapshot (foreign consumption)."""
        validate_batch_id(batch_id)
        with self.database.read() as session:
            batch = find_batch(session, batch_id)
            if batch is None:
                raise UsageError(f"no batch {batch_id!r}: check or record it first")
            account_name = batch.account.name
        snapshot_error: str | None = None
        if snapshot:
            try:
                self._take_snapshot(account_name, SnapshotKind.FINISH, batch_id=batch_id)
            except (VendorError, ConfigError) as exc:
                snapshot_error = str(exc)
                log.info("finish_snapshot_failed", batch_id=batch_id, error=snapshot_error)
        now = self._clock()
        with self.database.write() as session:
            batch = find_batch(session, batch_id)
            assert batch is not None
            batch.status = BatchStatus.FINISHED.value
            batch.finished_at = now
            batch.last_activity_at = now
            summary = batch_spend_summary(session, batch)
        log.info("batch_finished", batch_id=batch_id, own_cost=amount_text(summary.own_cost))
        return FinishResult(batch_id, now, summary, snapshot_error)

    # ------------------------------------------------------------ post-mortems

    def show(self, batch_id: str) -> dict[str, Any]:
        """One batch: status, snapshots in time order, outcome totals, tagged quota failures."""
        validate_batch_id(batch_id)
        with self.database.read() as session:
            batch = find_batch(session, batch_id)
            if batch is None:
                raise UsageError(f"no batch {batch_id!r}")
            return show_batch(session, batch)

    def failures(
        self, *, since: datetime | None = None, tag: str | None = None, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Quota failures across batches, oldest first."""
        if tag is not None and tag not in {t.value for t in Tag}:
            raise UsageError(f"--tag: must be one of {', '.join(t.value for t in Tag)}")
        with self.database.read() as session:
            return list_failures(session, since=since, tag=tag, account=account)

    def batches(
        self, *, since: datetime | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Recent batches, newest first, with verdicts and failure counts."""
        with self.database.read() as session:
            return list_batches(session, since=since, status=status)

    # ------------------------------------------------------------ helpers

    def _batch_for_outcomes(
        self, session: Session, batch_id: str, account: str | None, now: datetime
    ) -> Batch:
        """The batch, or a new unverified one: outcomes are never refused for lack of a check."""
        existing = find_batch(session, batch_id)
        if existing is not None:
            if account is not None and existing.account.name != account:
                raise UsageError(f"batch {batch_id!r} belongs to account {existing.account.name!r}")
            return existing
        account_row = get_or_create_account(
            session, self.settings.account_settings(account).name, now=now
        )
        batch, _ = get_or_create_batch(session, batch_id, account=account_row, now=now)
        return batch

    def _take_snapshot(
        self, account: str, kind: SnapshotKind, *, batch_id: str | None = None
    ) -> Snapshot:
        """Read the profile (outside any transaction) and store it."""
        profile = self.vendor(account).get_profile()
        now = self._clock()
        with self.database.write() as session:
            account_row = get_or_create_account(session, account, now=now)
            batch = find_batch(session, batch_id) if batch_id else None
            return self._store_snapshot(
                session, account_row, profile, now=now, kind=kind, batch=batch
            )

    def _classify_batches(
        self,
        batch_ids: Iterable[str],
        *,
        job: tuple[str, int] | None = None,
        only_tags: Collection[str] | None = None,
    ) -> list[Classification]:
        results: list[Classification] = []
        now = self._clock()
        with self.database.write() as session:
            for batch_id in batch_ids:
                batch = find_batch(session, batch_id)
                if batch is None:
                    continue
                failures = [
                    f
                    for f in quota_failures(session, batch, only_tags=only_tags)
                    if job is None or (f.job_id, f.attempt) == job
                ]
                cases = load_quota_failures(
                    session,
                    batch,
                    failures,
                    staleness_window=self.settings.staleness_window,
                    tolerance=self.settings.tolerance,
                )
                for failure, case in zip(failures, cases, strict=True):
                    result = classify(case)
                    save_tag(session, failure, result, now=now)
                    results.append(result)
        return results

    @staticmethod
    def _store_snapshot(
        session: Session,
        account: Account,
        profile: Profile,
        *,
        now: datetime,
        kind: SnapshotKind,
        batch: Batch | None = None,
    ) -> Snapshot:
        if account.user_id is None and profile.user_id is not None:
            account.user_id = profile.user_id
        snapshot = Snapshot(
            account_id=account.id,
            batch_pk=batch.id if batch else None,
            kind=kind.value,
            taken_at=now,
            credits=profile.credits,
            api_quota_remaining=profile.api_quota_remaining,
            tier=profile.tier,
            user_id=profile.user_id,
            raw=profile.raw,
            http_status=profile.http_status,
            latency_ms=profile.latency_ms,
        )
        session.add(snapshot)
        session.flush()
        return snapshot


def _meters_of(profile: Profile) -> dict[str, object]:
    return {meter.value: profile.meter(meter.value) for meter in Meter}


def _check_consistent(batch: Batch, account: str, requested_meter: str) -> None:
    if batch.account.name != account:
        raise UsageError(
            f"batch {batch.batch_id!r} belongs to account {batch.account.name!r}, not {account!r}"
        )
    if batch.meter and requested_meter not in ("auto", batch.meter):
        raise UsageError(
            f"batch {batch.batch_id!r} is checked on {batch.meter}; "
            f"a recheck cannot switch it to {requested_meter}"
        )
