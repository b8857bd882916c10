"""The gate, the wait for a top-up and the finish, as Prefect tasks.

None of them is cached (``NO_CACHE``): each reads the balance, or writes, when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.states import Cancelled

from preflight.domain.amounts import AmountError, parse_amount
from preflight.domain.batch import choose_meter
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    StorageError,
    UsageError,
    VendorUnavailableError,
)
from preflight.integrations.gate import (
    AuthFailed,
    BillingBlocked,
    InsufficientBalance,
    refusal,
)
from preflight.logs import get_logger
from preflight.prefect.blocks import PreflightConnection
from preflight.prefect.hooks import retry_if_unavailable

__all__ = ["BalanceTimeout", "preflight_check", "preflight_finish", "wait_for_balance"]

Amount = Decimal | str | int
_log = get_logger("preflight.prefect")


class BalanceTimeout(InsufficientBalance):
    """``wait_for_balance`` gave up: the balance did not cover the need in time."""


def flow_run_batch_id() -> str:
    """The batch id a flow run's tasks default to: the flow run's id."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise UsageError("batch_id: give one when the task does not run inside a flow run")
    return str(context.flow_run.id)


def _amount(value: Amount, name: str) -> Decimal:
    try:
        return parse_amount(value)
    except AmountError as exc:
        raise UsageError(f"{name}: {exc}") from None


@task(
    name="preflight-check",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_condition_fn=retry_if_unavailable,
)
def preflight_check(
    need: Amount,
    batch_id: str | None = None,
    connection: PreflightConnection | None = None,
    on_insufficient: Literal["fail", "cancel"] = "fail",
    *,
    meter: str | None = None,
    reserve: Amount | None = None,
    labels: Mapping[str, str] | None = None,
    strict: bool = False,
    fail_open: bool | None = None,
) -> dict[str, Any] | State[Any]:
    """Check the batch (default: the flow run's id) before its jobs run.

    ``go`` (and ``at_risk`` unless ``strict``) returns the check as a dict. ``insufficient``
    raises :class:`InsufficientBalance` (``on_insufficient="fail"``: the task run fails and,
    uncaught, the flow run) or ends the task run ``Cancelled`` (``"cancel"``: return that
    state from the flow, and the flow run ends Cancelled; see docs/orchestrators.md).
    ``auth_failed`` / ``billing_blocked`` raise :class:`AuthFailed` / :class:`BillingBlocked`
    (never retried); ``unavailable`` raises :class:`PreflightUnavailable`, retried by the
    task's ``retry_if_unavailable`` condition (3 times: after 10 s, 1 min, 5 min).
    """
    if on_insufficient not in ("fail", "cancel"):
        raise UsageError(f"on_insufficient: must be fail or cancel: {on_insufficient!r}")
    batch = batch_id or flow_run_batch_id()
    connection = connection or PreflightConnection()
    with connection.get_client() as client:
        result = client.check(
            batch,
            need=need,
            meter=meter,
            reserve=reserve,
            account=connection.account,
            labels=labels,
            fail_open=fail_open,
        )
    refused = refusal(result, strict=strict)
    if refused is None:
        return result.to_dict()
    if on_insufficient == "cancel" and type(refused) is InsufficientBalance:
        return Cancelled(message=refused.message)
    raise refused


@task(name="preflight-wait-for-balance", cache_policy=NO_CACHE)
def wait_for_balance(
    need: Amount,
    poll_interval: float = 300.0,
    timeout: float = 6 * 3600.0,
    *,
    connection: PreflightConnection | None = None,
    meter: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Wait until the account's balance covers ``need`` (no batch: a top-up sensor).

    Reads the balance every ``poll_interval`` seconds (each reading kept as a ``manual``
    snapshot) on ``meter`` (default: the first meter the vendor reports), until it covers
    ``need`` (returns ``{"balance", "need", "meter", "readings"}``) or ``timeout`` seconds
    have passed (:class:`BalanceTimeout`). A vendor or server that cannot be reached is
    logged and read again at the next poll; a refused token or a billing block raises
    :class:`AuthFailed` / :class:`BillingBlocked` at once. ``sleep`` and ``clock``
    (monotonic seconds) are there for tests.
    """
    wanted = _amount(need, "need")
    if poll_interval <= 0 or timeout < 0:
        raise UsageError("poll_interval: must be > 0, and timeout ≥ 0")
    connection = connection or PreflightConnection()
    deadline = clock() + timeout
    readings = 0
    last: Decimal | None = None
    with connection.get_client() as client:
        while True:
            try:
                reading = client.profile(connection.account)
            except AuthError as exc:
                raise AuthFailed(f"balance not read: {exc}") from None
            except BillingBlockedError as exc:
                raise BillingBlocked(f"balance not read: {exc}") from None
            except (VendorUnavailableError, StorageError) as exc:
                _log.warning("balance_unavailable", error=str(exc))
            else:
                readings += 1
                meters = reading.profile.meters
                name = choose_meter(meter or "auto", meters)
                last = meters.get(name) if name is not None else None
                if last is not None and last >= wanted:
                    return {
                        "balance": format(last, "f"),
                        "need": format(wanted, "f"),
                        "meter": name,
                        "readings": readings,
                    }
            remaining = deadline - clock()
            if remaining <= 0:
                shown = "unknown" if last is None else format(last, "f")
                raise BalanceTimeout(
                    f"balance {shown} still below need {format(wanted, 'f')} "
                    f"after {timeout:g} s ({readings} readings)"
                )
            sleep(min(poll_interval, remaining))


@task(name="preflight-finish", cache_policy=NO_CACHE)
def preflight_finish(
    batch_id: str | None = None,
    connection: PreflightConnection | None = None,
    *,
    snapshot: bool = True,
) -> dict[str, Any]:
    """Finish the batch (default: the flow run's id): its ``finish`` snapshot, own cost
    against the balance drop, foreign consumption. Finishing twice gives the first's numbers."""
    batch = batch_id or flow_run_batch_id()
    connection = connection or PreflightConnection()
    with connection.get_client() as client:
        return client.finish(batch, snapshot=snapshot).to_dict()
