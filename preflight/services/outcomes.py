"""``record`` one outcome or many, and (re)``classify`` stored quota failures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from preflight import metrics
from preflight.db import repositories as repo
from preflight.db.store import BatchState, BatchValues, StoredOutcomes
from preflight.domain.batch import validate_batch_id
from preflight.domain.classify import Classification
from preflight.domain.classify import classify as classify_failure
from preflight.domain.outcome import (
    MAX_LINE_BYTES,
    ROW_QUOTA_FAILURE,
    ROW_STATUS,
    OutcomeInput,
    OutcomeRow,
    build_outcome,
    outcome_from_row,
    outcome_row,
    parse_json_row,
)
from preflight.domain.vocabulary import OutcomeStatus, SnapshotKind, Tag
from preflight.errors import ConfigError, ConflictError, NotFoundError, UsageError, VendorError
from preflight.logs import get_logger
from preflight.services.results import ImportProgress, ImportResult, RecordResult
from preflight.services.runtime import Runtime
from preflight.services.snapshots import take_snapshot

if TYPE_CHECKING:
    from datetime import datetime

    from preflight.db.store import WriteStore

log = get_logger("preflight")

_FAILED = OutcomeStatus.FAILED.value


def record(
    rt: Runtime,
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
    vendor_says = quota_rule(rt, batch_id, account)
    if vendor_says is not None:
        item = vendor_says(item)
    now = rt.clock()

    def store(writes: WriteStore) -> tuple[StoredOutcomes, str, tuple[str, ...]]:
        batch = _batch_for_outcomes(rt, writes, batch_id, account, now)
        stored = writes.store_outcomes(batch, [(1, outcome_row(item))], now)
        if stored.conflict is not None:
            raise stored.conflict[1]
        finished_at = writes.record_activity(batch, stored.added, now=now)
        return stored, batch.account, lifecycle_warnings(batch, finished_at=finished_at)

    # Re-run whole if the connection breaks midway: an acknowledged outcome is stored.
    stored, account_name, warnings = rt.database.run_write(store)
    created = stored.inserted == 1
    snapshot_id: int | None = None
    snapshot_error: str | None = None
    if created and item.quota_failure and snapshot:
        try:
            snapshot_id = take_snapshot(
                rt,
                account_name,
                SnapshotKind.FAILURE,
                batch_id=batch_id,
                outcome=(item.job_id, item.attempt),
            ).snapshot_id
        except (VendorError, ConfigError) as exc:
            # The outcome is stored; the audit job reclassifies once a snapshot exists.
            snapshot_error = str(exc)
            log.info("failure_snapshot_failed", batch_id=batch_id, error=snapshot_error)
    tag: Classification | None = None
    if item.quota_failure:
        tags = classify_batches(rt, [batch_id], job=(item.job_id, item.attempt))
        tag = tags[0] if tags else None
    metrics.outcomes_received([item.status.value])
    if tag is not None and created:
        metrics.quota_failures({tag.tag.value: 1})
    log.info(
        "outcome_recorded",
        batch_id=batch_id,
        job_id=item.job_id,
        attempt=item.attempt,
        status=item.status.value,
        created=created,
        tag=tag.tag.value if tag else None,
    )
    return RecordResult(batch_id, item, created, tag, snapshot_id, snapshot_error, warnings)


def record_many(
    rt: Runtime,
    batch_id: str,
    lines: Iterable[str | bytes],
    *,
    account: str | None = None,
    chunk_size: int | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
) -> ImportResult:
    """Record outcomes from JSON Lines, streaming, ``chunk_size`` per transaction (by
    default 1,000 on SQLite, whose write lock a chunk holds, and 5,000 on PostgreSQL,
    where a chunk locks one batch row and each commit waits for the disk).

    A bad line stops the import with a ``UsageError`` naming its line number and how
    many lines before it were kept: all of them (re-running the fixed file is safe:
    records are idempotent). Quota failures are classified from the account's snapshot
    timeline afterwards; no live snapshot is taken. ``progress`` hears after each chunk.
    """
    validate_batch_id(batch_id)
    chunk_size = chunk_size or rt.database.chunk_lines
    counts = {"lines": 0, "inserted": 0, "duplicates": 0}
    pending: list[tuple[int, OutcomeRow]] = []
    warnings: dict[str, None] = {}

    def flush(lines_read: int, failed: int) -> None:
        counts["lines"] = lines_read
        if not pending:
            return
        now = rt.clock()

        def store(writes: WriteStore) -> StoredOutcomes:
            batch = _batch_for_outcomes(rt, writes, batch_id, account, now)
            stored = writes.store_outcomes(batch, pending, now)
            finished_at = writes.record_activity(batch, stored.added, now=now)
            warnings.update(dict.fromkeys(lifecycle_warnings(batch, finished_at=finished_at)))
            return stored

        # A chunk whose connection broke is re-run whole: the import resumes where it was.
        stored = rt.database.run_write(store)
        counts["inserted"] += stored.inserted
        counts["duplicates"] += stored.duplicates
        metrics.outcomes_counted(
            {OutcomeStatus.SUCCEEDED.value: len(pending) - failed, _FAILED: failed}
        )
        pending.clear()
        if stored.conflict is not None:
            line_no, error = stored.conflict
            # A conflicting line is a ConflictError (409 over HTTP), still exit 2 in the CLI.
            raise bad_line(line_no, str(error), ConflictError)
        if progress is not None:
            progress(ImportProgress(counts["lines"], counts["inserted"], counts["duplicates"]))

    def bad_line(line_no: int, problem: str, error: type[UsageError] = UsageError) -> UsageError:
        kept = counts["inserted"] + counts["duplicates"]
        return error(
            f"line {line_no}: {problem} (stopped there; the {kept} outcome(s) before it are "
            f"kept: {counts['inserted']} recorded, {counts['duplicates']} already recorded)"
        )

    # Counted as the lines go by, in locals (this loop runs once per line, up to millions
    # of times): lines read, failed outcomes of the chunk, quota failures of the import.
    read = failed = quota_failures_seen = 0
    append = pending.append
    vendor_says = quota_rule(rt, batch_id, account)
    for line_no, raw in enumerate(lines, start=1):
        try:
            # Bytes are decoded line by line, so a bad byte is blamed on its own line.
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            flush(read, failed)
            raise bad_line(line_no, "not UTF-8 text") from None
        if len(line) > MAX_LINE_BYTES and len(line.rstrip("\r\n")) > MAX_LINE_BYTES:
            flush(read, failed)
            raise bad_line(line_no, f"longer than {MAX_LINE_BYTES} bytes")
        if not line or line.isspace():
            continue
        read += 1
        try:
            row = parse_json_row(line)
            if (
                vendor_says is not None
                and row[ROW_STATUS] == _FAILED
                and not row[ROW_QUOTA_FAILURE]
            ):
                # The vendor's own quota signal (a failed line only, and only for a vendor
                # that has one): decided, like every quota failure, by OutcomeInput.
                row = outcome_row(vendor_says(outcome_from_row(row)))
        except UsageError as exc:
            flush(read, failed)
            raise bad_line(line_no, str(exc)) from None
        if row[ROW_STATUS] == _FAILED:
            failed += 1
            quota_failures_seen += row[ROW_QUOTA_FAILURE]
        append((line_no, row))
        if len(pending) >= chunk_size:
            flush(read, failed)
            failed = 0
    flush(read, failed)
    tags = classify_batches(rt, [batch_id]) if quota_failures_seen else []
    metrics.quota_failures(count_tags(tags))
    return ImportResult(
        batch_id=batch_id,
        lines=counts["lines"],
        inserted=counts["inserted"],
        duplicates=counts["duplicates"],
        tags=count_tags(tags),
        warnings=tuple(warnings),
    )


def classify(
    rt: Runtime, batch_id: str | None = None, *, only_inconclusive: bool = False
) -> dict[str, int]:
    """(Re)classify stored quota failures of one batch, or of every batch. Idempotent.

    ``only_inconclusive`` limits it to failures that need it: untagged, inconclusive, or
    tagged by an older classifier version.
    """
    if batch_id is not None:
        validate_batch_id(batch_id)
        with rt.database.read() as session:
            if repo.find_batch(session, batch_id) is None:
                raise NotFoundError(f"no batch {batch_id!r}")
        names = [batch_id]
    else:
        with rt.database.read() as session:
            names = repo.batches_with_quota_failures(session)
    only = {Tag.INCONCLUSIVE.value} if only_inconclusive else None
    return count_tags(classify_batches(rt, names, only_tags=only))


def classify_batches(
    rt: Runtime,
    batch_ids: Iterable[str],
    *,
    job: tuple[str, int] | None = None,
    only_tags: Collection[str] | None = None,
) -> list[Classification]:
    """Classify the quota failures of these batches (or one job) and store the tags."""
    results: list[Classification] = []
    now = rt.clock()
    with rt.database.write() as session:
        for batch_id in batch_ids:
            batch = repo.find_batch(session, batch_id)
            if batch is None:
                continue
            failures = [
                f
                for f in repo.quota_failures(session, batch, only_tags=only_tags)
                if job is None or (f.job_id, f.attempt) == job
            ]
            cases = repo.load_quota_failures(
                session,
                batch,
                failures,
                staleness_window=rt.settings.staleness_window,
                tolerance=rt.settings.tolerance,
            )
            for failure, case in zip(failures, cases, strict=True):
                result = classify_failure(case)
                repo.save_tag(session, failure, result, now=now)
                results.append(result)
    return results


def quota_rule(
    rt: Runtime, batch_id: str, account: str | None
) -> Callable[[OutcomeInput], OutcomeInput] | None:
    """What the batch's vendor adds to "a 402 is a quota failure", as a function that marks
    such a failure as quota (ElevenLabs: a 401 whose body says ``quota_exceeded``); None
    when the vendor adds nothing, as most do (and then no lookup is made)."""
    if not rt.quota_signals:
        return None
    if account is None:
        existing = rt.database.peek_batch(batch_id)
        account = existing.account if existing is not None else rt.settings.account
    configured = rt.settings.accounts.get(account)
    if configured is None or not configured.adapter.recognises_more_quota_failures:
        return None
    adapter = configured.adapter

    def mark(item: OutcomeInput) -> OutcomeInput:
        if (
            item.status is OutcomeStatus.FAILED
            and not item.quota_failure
            and adapter.quota_signal(item.http_status, item.error)
        ):
            # Re-validated: a declared cost of a quota failure becomes its expected cost.
            return replace(item, marked_quota=True)
        return item

    return mark


def count_tags(results: Iterable[Classification]) -> dict[str, int]:
    return dict(Counter(result.tag.value for result in results))


def lifecycle_warnings(batch: BatchState, *, finished_at: datetime | None) -> tuple[str, ...]:
    """What a caller recording outcomes of ``batch`` should hear (a warning, not an error);
    ``finished_at``: as the write that stored them found the batch, under its lock."""
    warnings: list[str] = []
    if batch.checked_at is None:
        warnings.append(
            f"batch {batch.batch_id!r} was never checked: "
            "its quota failures stay inconclusive (no preflight snapshot)"
        )
    if finished_at is not None:
        warnings.append(
            f"batch {batch.batch_id!r} is finished: the outcome is stored and shown as late"
        )
    return tuple(warnings)


def _batch_for_outcomes(
    rt: Runtime, writes: WriteStore, batch_id: str, account: str | None, now: datetime
) -> BatchState:
    """The batch, or a new unverified one: outcomes are never refused for lack of a check."""
    existing = writes.batch(batch_id)
    if existing is None:
        # The account before the batch it gets (the lock order of preflight.db.store).
        owner = writes.lock_account(rt.account_name(account), now=now)
        writes.create_batch(batch_id, owner.id, BatchValues.unverified(now), now=now)
        existing = writes.batch(batch_id)
        assert existing is not None
    if account is not None and existing.account != account:
        raise UsageError(f"batch {batch_id!r} belongs to account {existing.account!r}")
    return existing
