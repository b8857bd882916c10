"""A check's no-go as an exception an orchestrator can act on: one class per verdict.

Each class is a :class:`~preflight.errors.NoGoError` (so ``except NoGoError`` still catches
them all) that is rebuilt from its message alone, as result backends and state stores do
(Celery's, Prefect's): ``InsufficientBalance("...")`` round-trips through pickle and JSON.
Whether a runner retries one is the runner's rule: only :class:`PreflightUnavailable` can
change by waiting; the others are refusals that retrying cannot fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

from preflight.domain.verdict import Verdict
from preflight.errors import NoGoError

if TYPE_CHECKING:
    from preflight.services.check_result import CheckResult

__all__ = [
    "AtRisk",
    "AuthFailed",
    "BillingBlocked",
    "GateClosed",
    "InsufficientBalance",
    "PreflightUnavailable",
    "refusal",
]


class GateClosed(NoGoError):
    """The check said no-go: the batch must not be dispatched."""

    verdict_name: ClassVar[Verdict]
    strict_refusal: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message, verdict=self.verdict_name.value, strict=self.strict_refusal)

    def __reduce__(self) -> tuple[type[GateClosed], tuple[str]]:
        return (type(self), (self.message,))


class InsufficientBalance(GateClosed):
    """The balance is below need + reserve before anything was dispatched."""

    verdict_name = Verdict.INSUFFICIENT


class AtRisk(GateClosed):
    """``at_risk`` with ``strict``: other open batches may take what this one needs."""

    verdict_name = Verdict.AT_RISK
    strict_refusal = True


class AuthFailed(GateClosed):
    """The vendor refused the token (401): retrying cannot help."""

    verdict_name = Verdict.AUTH_FAILED


class BillingBlocked(GateClosed):
    """The vendor answered 402 on the balance itself: the account is in a billing state."""

    verdict_name = Verdict.BILLING_BLOCKED


class PreflightUnavailable(GateClosed):
    """The balance could not be read (vendor or preflight server down): worth retrying."""

    verdict_name = Verdict.UNAVAILABLE


_OF_VERDICT: Final[dict[Verdict, type[GateClosed]]] = {
    kind.verdict_name: kind
    for kind in (InsufficientBalance, AuthFailed, BillingBlocked, PreflightUnavailable)
}


def refusal(result: CheckResult, *, strict: bool = False) -> GateClosed | None:
    """The exception a check's answer stands for, or None when the batch may go (``go``,
    ``at_risk`` unless ``strict``, ``unavailable`` with fail-open)."""
    if result.go and not (strict and result.verdict is Verdict.AT_RISK):
        return None
    kind = AtRisk if result.verdict is Verdict.AT_RISK else _OF_VERDICT[result.verdict]
    return kind(f"batch {result.batch_id!r} not started: {result.verdict.value}: {result.reason}")
