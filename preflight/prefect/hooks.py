"""Task hooks that record each task's outcome, and a retry condition for preflight's outages.

``@task(on_completion=[record_on_completion], on_failure=[record_on_failure])`` records the
task's outcome in the batch: ``succeeded`` with the cost its return value declares (a
number, a decimal string, or a mapping with ``"cost"``), ``failed`` with the HTTP status of
the exception (``httpx.HTTPStatusError``, ``requests.HTTPError``, or an ``http_status``
attribute; 402 is a quota failure, classified with a live snapshot). The rules are
:mod:`preflight.integrations.outcome`'s, shared with Celery and Airflow.

- batch: the hook's ``batch_id``, else the task's ``preflight_batch`` parameter, else the
  flow run's id (what :data:`~preflight.prefect.preflight_check` defaults to);
- job id: the task's ``job_id`` parameter, else the task run's id; attempt: the run count.

Prefect calls ``on_failure`` once retries are exhausted (and ``on_running`` without the
previous attempt's error; a retried attempt never enters a Failed state), so the only place
that sees each failed attempt that Prefect retries is the retry condition:
:func:`record_and_retry` wraps one and records the attempt it lets Prefect retry. Give a
connection or a batch with ``functools.partial(record_on_completion, connection=block)``. A
preflight that cannot be reached is logged, never raised: recording does not change the
task's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prefect.context import TaskRunContext

from preflight.errors import StorageError, VendorUnavailableError
from preflight.integrations.gate import PreflightUnavailable
from preflight.integrations.recorder import record_failure, record_success
from preflight.logs import get_logger
from preflight.prefect.blocks import PreflightConnection

__all__ = [
    "RetryCondition",
    "record_and_retry",
    "record_on_completion",
    "record_on_failure",
    "retry_if_unavailable",
]

#: A ``retry_condition_fn``: ``(task, task_run, state) -> bool``.
RetryCondition = Callable[[Any, Any, Any], bool]

PREFLIGHT_BATCH = "preflight_batch"
_log = get_logger("preflight.prefect")


def _parameters() -> Mapping[str, Any]:
    context = TaskRunContext.get()
    return context.parameters if context is not None else {}


def _where(task_run: Any, batch_id: str | None) -> tuple[str, str, int] | None:
    parameters = _parameters()
    batch = batch_id or parameters.get(PREFLIGHT_BATCH) or task_run.flow_run_id
    if batch is None:  # a task run outside any flow run, and no batch given
        _log.warning("outcome not recorded: the task run has no batch", task_run=task_run.name)
        return None
    job = parameters.get("job_id")
    job_id = str(job) if job is not None else str(task_run.id)
    return str(batch), job_id, max(int(task_run.run_count or 1), 1)


def record_on_completion(
    task: Any,
    task_run: Any,
    state: Any,
    *,
    connection: PreflightConnection | None = None,
    batch_id: str | None = None,
) -> None:
    """An ``on_completion`` hook: record ``succeeded`` with the returned value's cost."""
    where = _where(task_run, batch_id)
    if where is None:
        return
    batch, job_id, attempt = where
    value = state.result(raise_on_failure=False)
    connection = connection or PreflightConnection()
    with connection.get_client() as client:
        record_success(client, batch, job_id, attempt, value, account=connection.account)


def record_on_failure(
    task: Any,
    task_run: Any,
    state: Any,
    *,
    connection: PreflightConnection | None = None,
    batch_id: str | None = None,
) -> None:
    """An ``on_failure`` hook: record ``failed`` with the exception's HTTP status."""
    where = _where(task_run, batch_id)
    if where is None:
        return
    batch, job_id, attempt = where
    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = RuntimeError(str(state.message or "failed"))
    connection = connection or PreflightConnection()
    with connection.get_client() as client:
        record_failure(client, batch, job_id, attempt, error, account=connection.account)


def retry_if_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """A ``retry_condition_fn``: retry only what waiting can fix — the balance could not be
    read (:class:`PreflightUnavailable`), the vendor is down, or the preflight server cannot
    be reached. A refusal (insufficient, auth failed, billing blocked) is never retried."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, PreflightUnavailable | VendorUnavailableError | StorageError)


def record_and_retry(
    condition: RetryCondition | None = None,
    *,
    connection: PreflightConnection | None = None,
    batch_id: str | None = None,
) -> RetryCondition:
    """A ``retry_condition_fn`` that records each failed attempt Prefect retries.

    ``@task(retries=2, retry_condition_fn=record_and_retry(), on_completion=[...],
    on_failure=[...])``: Prefect asks the retry condition about every failed attempt but
    the last, with that attempt's exception; when ``condition`` (default: retry, as
    Prefect does without one) says retry, the attempt is recorded ``failed`` as
    :func:`record_on_failure` would (attempt: the run count) and Prefect retries it. An
    attempt it does not retry, and the last one, end the task run: ``on_failure`` records
    them, so no attempt is recorded twice. ``condition`` must be synchronous.
    """

    def should_retry(task: Any, task_run: Any, state: Any) -> bool:
        retry = True if condition is None else bool(condition(task, task_run, state))
        if retry:
            record_on_failure(task, task_run, state, connection=connection, batch_id=batch_id)
        return retry

    return should_retry
