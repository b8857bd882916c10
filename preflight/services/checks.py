"""``check``: snapshot the profile, keep it keyed by the batch, answer go / no-go."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from preflight import metrics
from preflight.db import repositories as repo
from preflight.domain.amounts import parse_amount
from preflight.domain.batch import choose_meter, validate_batch_id
from preflight.domain.verdict import NO_GO, Assessment, Verdict, assess
from preflight.domain.vocabulary import METERS, BatchStatus, SnapshotKind
from preflight.domain.wire import amount_text
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    UsageError,
    VendorError,
    VendorUnavailableError,
)
from preflight.logs import get_logger
from preflight.services.results import CheckResult
from preflight.services.runtime import Runtime

if TYPE_CHECKING:
    from preflight.db.models import Batch
    from preflight.db.session import Session
    from preflight.vendor import Profile

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
) -> CheckResult:
    """Snapshot the profile, store it keyed by ``batch_id`` and answer go / no-go.

    A repeated check of the same batch keeps the first snapshot as the batch's
    ``preflight`` snapshot and stores the new one as ``recheck``. The vendor is read
    outside any transaction; the batch and its snapshot are written in one.
    """
    validate_batch_id(batch_id)
    need_amount = amount_field("need", need)
    reserve_amount = amount_field("reserve", reserve)
    if reserve_amount is None:
        reserve_amount = rt.settings.reserve
    requested_meter = meter or rt.settings.meter
    if requested_meter != "auto" and requested_meter not in METERS:
        raise UsageError(f"meter: must be auto, {' or '.join(METERS)}, not {meter!r}")
    fail_open = rt.settings.fail_open if fail_open is None else fail_open
    account_name = rt.account_name(account)
    bound = log.bind(batch_id=batch_id, account=account_name)

    # Refuse a contradiction before spending a vendor call on it.
    with rt.database.read() as session:
        existing = repo.find_batch(session, batch_id)
        if existing is not None:
            _check_consistent(existing, account_name, requested_meter)

    profile: Profile | None = None
    vendor_error: VendorError | None = None
    try:
        profile = rt.vendor(account_name).get_profile()
    except (AuthError, BillingBlockedError, VendorUnavailableError) as exc:
        vendor_error = exc
    now = rt.clock()

    def decide(session: Session) -> CheckResult:
        account_row = repo.get_or_create_account(session, account_name, now=now)
        batch, _created = repo.get_or_create_batch(
            session, batch_id, account=account_row, now=now, reserve=reserve_amount
        )
        _check_consistent(batch, account_name, requested_meter)
        snapshot_id: int | None = None
        snapshot_kind: SnapshotKind | None = None
        balance: Decimal | None = None
        outstanding: Decimal | None = None
        chosen: str | None = batch.meter
        if profile is not None:
            if chosen is None:
                present = {m: profile.meter(m) for m in METERS}
                found = choose_meter(requested_meter, present)
                chosen = found.value if found else None
            snapshot_kind = (
                SnapshotKind.RECHECK
                if repo.preflight_snapshot(session, batch) is not None
                else SnapshotKind.PREFLIGHT
            )
            snapshot_id = repo.store_snapshot(
                session, account_row, profile, now=now, batch=batch, kind=snapshot_kind
            ).id
            balance = profile.meter(chosen) if chosen else None
            if balance is None:
                # Name what is missing: the batch's or the requested meter; for auto, both.
                absent = chosen or (
                    requested_meter if requested_meter != "auto" else " and ".join(METERS)
                )
                assessment = Assessment(
                    Verdict.UNAVAILABLE, f"{absent} absent from the vendor's profile"
                )
            else:
                outstanding = repo.outstanding_need_of_others(
                    session,
                    account_row,
                    exclude=batch,
                    now=now,
                    hold_expiry=rt.settings.hold_expiry,
                )
                effective_need = need_amount if need_amount is not None else batch.need
                assessment = assess(
                    balance, effective_need or Decimal(0), reserve_amount, outstanding
                )
        else:
            assert vendor_error is not None
            verdict = next(v for t, v in _VERDICT_OF_ERROR.items() if isinstance(vendor_error, t))
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
        return CheckResult(
            batch_id=batch_id,
            account=account_name,
            verdict=verdict,
            reason=assessment.reason,
            meter=chosen,
            balance=balance,
            need=batch.need,
            reserve=reserve_amount,
            outstanding_other=outstanding,
            snapshot_id=snapshot_id,
            snapshot_kind=snapshot_kind.value if snapshot_kind else None,
            checked_at=now,
            status=batch.status,
            verified=batch.verified,
            fail_open=fail_open and verdict is Verdict.UNAVAILABLE,
            labels=dict(batch.labels),
        )

    # One write transaction; re-run whole if the connection breaks midway.
    result = rt.database.run_write(decide)
    metrics.check_done(result.verdict.value)
    if profile is not None:
        metrics.balance_seen(account_name, {m: profile.meter(m) for m in METERS})
    bound.info(
        "check_completed",
        verdict=result.verdict.value,
        meter=result.meter,
        balance=amount_text(result.balance),
        need=amount_text(result.need),
        snapshot_id=result.snapshot_id,
    )
    return result


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
