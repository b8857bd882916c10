"""Recording one attempt's outcome from inside an orchestrator, without ever changing the task.

The task has already returned or raised when its outcome is recorded: a preflight that cannot
be reached (or refuses the outcome) must not turn a paid, successful call into a failure, nor
hide the task's own exception. So by default such an error is logged and the attempt goes
unrecorded; ``raise_errors=True`` raises it instead, for those who would rather know at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from preflight.errors import PreflightError
from preflight.integrations.outcome import failure_fields, success_fields
from preflight.logs import get_logger

if TYPE_CHECKING:
    from preflight.api import Preflight
    from preflight.services.results import RecordResult

__all__ = ["record_attempt", "record_failure", "record_success"]

_log = get_logger("preflight.integrations")


def record_attempt(
    client: Preflight,
    batch_id: str,
    fields: Callable[[], Mapping[str, object]],
    *,
    account: str | None = None,
    raise_errors: bool = False,
) -> RecordResult | None:
    """Record the outcome ``fields()`` builds; None when it could not be recorded (logged)."""
    try:
        outcome = fields()
        return client.record(batch_id, outcome, account=account)
    except PreflightError as exc:
        if raise_errors:
            raise
        _log.warning(
            "outcome not recorded", batch_id=batch_id, error_type=type(exc).__name__, error=str(exc)
        )
        return None


def record_success(
    client: Preflight,
    batch_id: str,
    job_id: str,
    attempt: int,
    value: object,
    *,
    account: str | None = None,
    raise_errors: bool = False,
) -> RecordResult | None:
    """Record an attempt that returned ``value`` (its cost read by ``cost_of``)."""
    return record_attempt(
        client,
        batch_id,
        lambda: success_fields(job_id, attempt, value),
        account=account,
        raise_errors=raise_errors,
    )


def record_failure(
    client: Preflight,
    batch_id: str,
    job_id: str,
    attempt: int,
    error: BaseException,
    *,
    account: str | None = None,
    raise_errors: bool = False,
) -> RecordResult | None:
    """Record an attempt that raised ``error`` (its HTTP status read by ``http_status_of``)."""
    return record_attempt(
        client,
        batch_id,
        lambda: failure_fields(job_id, attempt, error),
        account=account,
        raise_errors=raise_errors,
    )
