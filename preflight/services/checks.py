"""``check``: snapshot the profile, keep it keyed by the batch, answer go / no-go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from preflight import metrics
from preflight.db.store import BatchValues
from preflight.domain.amounts import parse_amount
from preflight.domain.batch import choose_meter, validate_batch_id
from preflight.domain.exact import exact
from preflight.domain.holds import hold, hold_change
from preflight.domain.verdict import NO_GO, Assessment, Verdict, assess
from preflight.domain.vocabulary import BatchStatus, SnapshotKind
from preflight.domain.wire import amount_text
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    UsageError,
    VendorError,
    VendorUnavailableError,
)
from preflight.logs import get_logger
from preflight.services.check_result import CheckResult
from preflight.services.runtime import Runtime
from preflight.services.snapshots import Reading, read_profile, seen

if TYPE_CHECKING:
    from preflight.db.store import BatchState, WriteStore
    from preflight.domain.forecast import NeedBasis

log = get_logger("preflight")

_VERDICT_OF_ERROR: Final[dict[type[VendorError], Verdict]] = {
    AuthError: Verdict.AUTH_FAILED,
    BillingBlockedError: Verdict.BILLING_BLOCKED,
    VendorUnavailableError: Verdict.UNAVAILABLE,
}

Amount = Decimal | str | int


def amount_field(name: str, value: Amount | None) -> Decimal | None:
    """An amount given for field ``name``; UsageError naming the field."""
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def check(
    rt: Runtime,
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
    """Snapshot the profile, store it keyed by ``batch_id`` and answer go / no-go.

    A repeated check of the same batch keeps the first snapshot as the batch's
    ``preflight`` snapshot and stores the new one as ``recheck``. The vendor is read
    outside any transaction; the batch and its snapshot are written in one.

    ``jobs`` with ``estimate_from`` (``KEY=VALUE``) estimates the need from history:
    ``jobs`` × the ``estimate`` statistic (mean, p50, p90, p95, max; default mean) of the
    consumed cost of the succeeded jobs of the account's most recent 100 finished batches
    with that label, at least ``min_history`` (default 20) jobs; the batch carries the label.
    """
    validate_batch_id(batch_id)
    need_amount = amount_field("need", need)
    reserve_amount = amount_field("reserve", reserve)
    if reserve_amount is None:
        reserve_amount = rt.settings.reserve
    requested_meter = meter or rt.settings.meter
    account_name = rt.account_name(account)
    basis: NeedBasis | None = None
    if jobs is not None or estimate_from is not None or estimate or min_history is not None:
        # The history is read with the ORM, which a plain check never imports.
        from preflight.services.forecasts import need_from_history  # cold path: `preflight check`

        if need_amount is not None:
            raise UsageError("need: give a need or --jobs with --estimate-from, not both")
        basis = need_from_history(
            rt,
            account_name,
            jobs=jobs,
            estimate_from=estimate_from,
            estimate=estimate,
            min_history=min_history,
            exclude=batch_id,
        )
        need_amount = basis.need
        key, _, value = basis.label.partition("=")
        labels = {**(labels or {}), key: value}
    rt.adapter(account_name).check_meter(requested_meter)
    fail_open = rt.settings.fail_open if fail_open is None else fail_open

    # Refuse a contradiction before spending a vendor call on it.
    existing = rt.plain_database.peek_batch(batch_id)
    if existing is not None:
        _check_consistent(existing, account_name, requested_meter)

    reading: Reading | None = None
    vendor_error: VendorError | None = None
    try:
        reading = read_profile(rt, account_name)
    except (AuthError, BillingBlockedError, VendorUnavailableError) as exc:
        vendor_error = exc
    now = reading.taken_at if reading is not None else rt.clock()

    request = _Request(
        batch_id, account_name, requested_meter, need_amount, reserve_amount, fail_open, labels
    )
    for _ in range(3):
        try:
            # One write transaction, re-run whole if the connection breaks midway.
            result = rt.plain_database.run_write(
                lambda store: _write_check(rt, store, request, reading, vendor_error, now)
            )
            break
        except _CreatedConcurrently:
            continue  # another writer created the batch meanwhile: check it as it stands now
    else:  # pragma: no cover - a batch is created once; the second pass finds it
        raise RuntimeError(f"batch {batch_id!r} could not be checked")
    if basis is not None:
        result = replace(result, need_basis=basis)
    metrics.check_done(result.verdict.value)
    if reading is not None:
        seen(account_name, reading)
    log.info(
        "check_completed",
        batch_id=batch_id,
        account=account_name,
        verdict=result.verdict.value,
        meter=result.meter,
        balance=amount_text(result.balance),
        need=amount_text(result.need),
        snapshot_id=result.snapshot_id,
    )
    return result


@dataclass(frozen=True)
class _Request:
    batch_id: str
    account: str
    meter: str
    need: Decimal | None
    reserve: Decimal
    fail_open: bool
    labels: Mapping[str, str] | None


class _CreatedConcurrently(Exception):
    """The batch did not exist when read, and another writer inserted it before us."""


@exact
def _write_check(
    rt: Runtime,
    store: WriteStore,
    request: _Request,
    reading: Reading | None,
    vendor_error: VendorError | None,
    now: datetime,
) -> CheckResult:
    """The check's one write transaction: the batch, its snapshot, its hold, the verdict."""
    # The account, the batch, and the account's holds brought up to the hold expiry (the
    # change to its held need comes back): the other open batches' outstanding need is
    # then the account's held need less what this batch holds itself.
    account, batch, held_need_change = store.open_check(
        request.account,
        request.batch_id,
        now=now,
        hold_cutoff=now - rt.settings.hold_expiry,
    )
    if batch is not None:
        _check_consistent(batch, request.account, request.meter)
    snapshot_kind: SnapshotKind | None = None
    balance: Decimal | None = None
    outstanding: Decimal | None = None
    chosen = batch.meter if batch is not None else None
    need = request.need if request.need is not None else (batch.need if batch else None)
    profile = reading.profile if reading is not None else None
    if profile is not None:
        if chosen is None:
            chosen = choose_meter(request.meter, profile.meters)
        snapshot_kind = (
            SnapshotKind.RECHECK
            if batch is not None and store.has_preflight_snapshot(batch.pk)
            else SnapshotKind.PREFLIGHT
        )
        balance = profile.meters.get(chosen) if chosen else None
        if balance is None:
            # Name what is missing: the batch's or the requested meter; for auto, every one.
            absent = chosen or (
                request.meter if request.meter != "auto" else " and ".join(profile.meter_names)
            )
            assessment = Assessment(
                Verdict.UNAVAILABLE, f"{absent} absent from the vendor's profile"
            )
        elif profile.blocked is not None:
            assessment = Assessment(Verdict.BILLING_BLOCKED, profile.blocked)
        else:
            own = (batch.held if batch is not None else None) or Decimal(0)
            outstanding = account.held_need + held_need_change - own
            assessment = assess(balance, need or Decimal(0), request.reserve, outstanding)
    else:
        assert vendor_error is not None
        verdict = next(v for t, v in _VERDICT_OF_ERROR.items() if isinstance(vendor_error, t))
        assessment = Assessment(verdict, str(vendor_error))

    verdict = assessment.verdict
    dispatchable = verdict not in NO_GO or (verdict is Verdict.UNAVAILABLE and request.fail_open)
    status = (BatchStatus.OPEN if dispatchable else BatchStatus.BLOCKED).value
    if batch is not None and batch.status == BatchStatus.FINISHED.value:
        status = batch.status
    labels = {**(batch.labels if batch else {}), **(request.labels or {})}
    consumed = batch.consumed_cost if batch is not None else Decimal(0)
    held = hold(status, need, consumed)
    values = BatchValues(
        meter=chosen,
        need=need,
        reserve=request.reserve,
        verdict=verdict.value,
        # Verified: a usable balance was read (an insufficient batch is verified too).
        verified=balance is not None,
        checked_at=now,
        last_activity_at=now,
        labels=labels,
        status=status,
        held=held,
    )
    held_need_change += hold_change(batch.held if batch else None, held)
    stored = store.store_check(
        account=account,
        batch=batch,
        values=values,
        batch_id=request.batch_id,
        now=now,
        held_need_change=held_need_change,
        profile=profile,
        kind=snapshot_kind,
    )
    if stored is None:
        raise _CreatedConcurrently
    _pk, snapshot_id = stored
    return CheckResult(
        batch_id=request.batch_id,
        account=request.account,
        verdict=verdict,
        reason=assessment.reason,
        meter=chosen,
        balance=balance,
        need=need,
        reserve=request.reserve,
        outstanding_other=outstanding,
        snapshot_id=snapshot_id,
        snapshot_kind=snapshot_kind.value if snapshot_kind else None,
        checked_at=now,
        status=status,
        verified=balance is not None,
        fail_open=request.fail_open and verdict is Verdict.UNAVAILABLE,
        labels=labels,
    )


def _check_consistent(batch: BatchState, account: str, requested_meter: str) -> None:
    if batch.account != account:
        raise UsageError(
            f"batch {batch.batch_id!r} belongs to account {batch.account!r}, not {account!r}"
        )
    if batch.meter and requested_meter not in ("auto", batch.meter):
        raise UsageError(
            f"batch {batch.batch_id!r} is checked on {batch.meter}; "
            f"a recheck cannot switch it to {requested_meter}"
        )
