"""``PreflightQuotaRetryPolicy``: after a 402, retry only when retrying can help (Airflow ≥ 3.3)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

try:
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
except ImportError as exc:  # Airflow 3.2: no pluggable retry policies yet
    raise ImportError(
        "PreflightQuotaRetryPolicy needs Airflow 3.3 or later (airflow.sdk retry policies)"
    ) from exc

from preflight.airflow.decorators import recorded_outcome
from preflight.integrations.outcome import http_status_of

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PreflightQuotaRetryPolicy"]

_QUOTA = 402


class PreflightQuotaRetryPolicy(RetryPolicy):
    """Read the tag preflight gave a task's 402 and decide the retry from it.

    For an exception carrying HTTP 402 whose attempt :func:`~preflight.airflow.preflight_job`
    recorded (so its tag is known):

    - ``pre_existing_low_balance``: fail now; the batch started short, and a retry would
      meet the same balance (the reason, with the balance at the check, the batch's own
      cost and the job's expected cost, is the task's failure reason);
    - ``concurrent_consumption``: retry after ``concurrent_delay`` (others spent the
      money; a top-up or the next period may cover it);
    - anything else (``inconclusive``, another status, no recorded outcome): Airflow's
      default (the task's ``retries`` and ``retry_delay``).

    Combine it with ``ExceptionRetryPolicy`` by subclassing and falling through to it
    for what this policy leaves to the default (docs/airflow.md shows how).
    """

    def __init__(self, concurrent_delay: timedelta = timedelta(minutes=10)) -> None:
        if concurrent_delay < timedelta(0):
            raise ValueError("concurrent_delay cannot be negative")
        self.concurrent_delay = concurrent_delay

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        """The decision for ``exception`` (see the class's list)."""
        if http_status_of(exception) != _QUOTA:
            return RetryDecision.default()
        recorded = recorded_outcome(exception)
        if recorded is None or recorded.tag is None:
            return RetryDecision.default()
        tag, reason = recorded.tag.tag.value, recorded.tag.reason
        if tag == "pre_existing_low_balance":
            return RetryDecision.fail(reason=f"preflight: {tag}: {reason}")
        if tag == "concurrent_consumption":
            return RetryDecision.retry(
                delay=self.concurrent_delay, reason=f"preflight: {tag}: {reason}"
            )
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        """JSON for DAG serialisation (the base class requires it)."""
        return {
            "__type": type(self).__name__,
            "concurrent_delay": self.concurrent_delay.total_seconds(),
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> PreflightQuotaRetryPolicy:
        """The policy :meth:`serialize` described."""
        return cls(concurrent_delay=timedelta(seconds=float(data["concurrent_delay"])))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreflightQuotaRetryPolicy) or type(other) is not type(self):
            return False
        return other.concurrent_delay == self.concurrent_delay

    def __hash__(self) -> int:
        return hash((type(self), self.concurrent_delay))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(concurrent_delay={self.concurrent_delay!r})"
