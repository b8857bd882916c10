"""``PreflightBalanceTrigger``: wait in the triggerer, not in a worker slot, until the
balance covers a need."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from preflight.airflow.hooks import PreflightHook
from preflight.domain.batch import choose_meter
from preflight.domain.verdict import Verdict, assess
from preflight.domain.wire import amount_text
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    PreflightError,
    UsageError,
    VendorError,
)

if TYPE_CHECKING:
    from preflight.services.results import CheckResult

__all__ = ["PreflightBalanceTrigger"]

#: Verdicts after which waiting cannot help: the vendor refused the token or the account.
_HOPELESS = frozenset({"auth_failed", "billing_blocked"})


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _text(value: Decimal | None) -> str | None:
    return amount_text(value)


class PreflightBalanceTrigger(BaseTrigger):
    """Poll every ``poll_interval`` seconds until the balance covers ``need``.

    With a ``batch_id`` each poll is a preflight check of that batch (a ``recheck``
    snapshot, the verdict the check operator acts on, counting what other open batches
    still hold), covered at ``go`` (and ``at_risk``, unless ``at_risk_covers`` is False:
    an operator that waits out ``at_risk`` too); without one, a balance reading of the
    account compared with ``need`` + ``reserve`` (the sensor's case). Polls go through
    :class:`PreflightHook`'s async twins, so nothing here blocks the triggerer's event loop.

    Yields one event and ends:

    - ``{"status": "sufficient", "verdict", "balance", "snapshot_id", ...}``: covered;
    - ``{"status": "error", "verdict", "message"}``: ``auth_failed``/``billing_blocked``
      or a usage error: waiting cannot help;
    - ``{"status": "timeout", ...}``: ``deadline`` (ISO 8601) passed while still short.

    A vendor or server that is unavailable for one poll is polled again.
    """

    def __init__(
        self,
        *,
        need: str,
        batch_id: str | None = None,
        account: str | None = None,
        reserve: str | None = None,
        meter: str | None = None,
        labels: Mapping[str, str] | None = None,
        preflight_conn_id: str = PreflightHook.default_conn_name,
        poll_interval: float = 300.0,
        deadline: str | None = None,
        at_risk_covers: bool = True,
    ) -> None:
        super().__init__()
        self.need = str(need)
        self.batch_id = batch_id
        self.account = account
        self.reserve = None if reserve is None else str(reserve)
        self.meter = meter
        self.labels = dict(labels) if labels else None
        self.preflight_conn_id = preflight_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.at_risk_covers = at_risk_covers
        # Seams for tests (not serialised): the clock and the sleep between polls.
        self.clock: Callable[[], datetime] = _utcnow
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "need": self.need,
                "batch_id": self.batch_id,
                "account": self.account,
                "reserve": self.reserve,
                "meter": self.meter,
                "labels": self.labels,
                "preflight_conn_id": self.preflight_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "at_risk_covers": self.at_risk_covers,
            },
        )

    @staticmethod
    def deadline_after(wait: timedelta, now: datetime | None = None) -> str:
        """The ``deadline`` argument ``wait`` from ``now`` (default: the current time)."""
        return ((now or _utcnow()) + wait).isoformat()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until covered, hopeless or past the deadline; yield that one event."""
        hook = PreflightHook(self.preflight_conn_id)
        deadline = datetime.fromisoformat(self.deadline) if self.deadline else None
        try:
            while True:
                event = await self._poll(hook)
                if event is not None:
                    yield TriggerEvent(event)
                    return
                if deadline is not None and self.clock() >= deadline:
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "batch_id": self.batch_id,
                            "need": self.need,
                            "message": f"the balance did not cover {self.need} by {self.deadline}",
                        }
                    )
                    return
                await self.sleep(self.poll_interval)
        finally:
            await hook.aclose()

    async def _poll(self, hook: PreflightHook) -> dict[str, Any] | None:
        try:
            if self.batch_id is not None:
                return self._from_check(
                    await hook.acheck(
                        self.batch_id,
                        need=self.need,
                        account=self.account,
                        reserve=self.reserve,
                        labels=self.labels,
                        meter=self.meter,
                    )
                )
            return await self._from_profile(hook)
        except UsageError as exc:
            return {"status": "error", "verdict": None, "message": str(exc)}
        except VendorError as exc:
            if isinstance(exc, AuthError | BillingBlockedError):
                verdict = "auth_failed" if isinstance(exc, AuthError) else "billing_blocked"
                return {"status": "error", "verdict": verdict, "message": str(exc)}
            self.log.warning("preflight: balance unavailable, polling again: %s", exc)
            return None
        except PreflightError as exc:  # the server or the database, for now
            self.log.warning("preflight: poll failed, polling again: %s", exc)
            return None

    def _from_check(self, result: CheckResult) -> dict[str, Any] | None:
        verdict = result.verdict.value
        if verdict in _HOPELESS:
            return {"status": "error", "verdict": verdict, "message": result.reason}
        covered = (Verdict.GO, Verdict.AT_RISK) if self.at_risk_covers else (Verdict.GO,)
        if result.verdict in covered:
            return {
                "status": "sufficient",
                "verdict": verdict,
                "batch_id": result.batch_id,
                "balance": _text(result.balance),
                "need": _text(result.need),
                "meter": result.meter,
                "snapshot_id": result.snapshot_id,
            }
        self.log.info("preflight: batch %s still %s: %s", result.batch_id, verdict, result.reason)
        return None

    async def _from_profile(self, hook: PreflightHook) -> dict[str, Any] | None:
        # A blocked account or a refused token raises here (the vendor's 402 / 401, or a
        # 200 whose body says the account is blocked), and the caller ends the trigger
        # with that error.
        reading = await hook.aprofile(self.account)
        meters = dict(reading.meters)
        meter = choose_meter(self.meter or "auto", meters)
        balance = meters.get(meter) if meter is not None else None
        if balance is None:
            self.log.warning("preflight: no %s meter in the balance reading", self.meter or "")
            return None
        reserve = Decimal(self.reserve) if self.reserve is not None else Decimal(0)
        assessment = assess(balance, Decimal(self.need), reserve, Decimal(0))
        if assessment.verdict is Verdict.INSUFFICIENT:
            self.log.info("preflight: account %s: %s", reading.account, assessment.reason)
            return None
        return {
            "status": "sufficient",
            "verdict": assessment.verdict.value,
            "account": reading.account,
            "balance": _text(balance),
            "need": self.need,
            "meter": meter,
            "snapshot_id": reading.snapshot_id,
        }
