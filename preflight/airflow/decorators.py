"""``preflight_job``: record each attempt of a ``@task`` function as a preflight outcome."""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from airflow import sdk

from preflight.airflow.hooks import PreflightHook
from preflight.airflow.operators import DEFAULT_BATCH_ID
from preflight.errors import PreflightError
from preflight.integrations.outcome import failure_fields, success_fields
from preflight.integrations.recorder import record_attempt

if TYPE_CHECKING:
    from preflight.services.results import RecordResult

__all__ = ["preflight_job", "recorded_outcome"]

P = ParamSpec("P")
R = TypeVar("R")
Amount = Decimal | str | int | float
ExpectedCost = Amount | Callable[..., Amount | None] | None

#: The outcome each recent failed attempt was recorded as, by the exception it raised, for
#: PreflightQuotaRetryPolicy (it runs right after, in the same worker process, with that
#: exception). Exceptions take no weak references, so the few latest are held here.
_RECORDED: Final[OrderedDict[int, tuple[BaseException, RecordResult]]] = OrderedDict()
_RECORDED_MAX: Final = 32


def recorded_outcome(exception: BaseException) -> RecordResult | None:
    """The outcome :func:`preflight_job` recorded for ``exception`` in this process, if any."""
    entry = _RECORDED.get(id(exception))
    return entry[1] if entry is not None and entry[0] is exception else None


def _remember(exception: BaseException, result: RecordResult) -> None:
    _RECORDED[id(exception)] = (exception, result)
    while len(_RECORDED) > _RECORDED_MAX:
        _RECORDED.popitem(last=False)


def _job_id(ti: Any) -> str:
    map_index = getattr(ti, "map_index", None)
    mapped = isinstance(map_index, int) and map_index >= 0
    return f"{ti.task_id}[{map_index}]" if mapped else str(ti.task_id)


@overload
def preflight_job(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def preflight_job(
    *,
    batch_id: str = DEFAULT_BATCH_ID,
    preflight_conn_id: str = PreflightHook.default_conn_name,
    expected_cost: ExpectedCost = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def preflight_job(
    func: Callable[P, R] | None = None,
    /,
    *,
    batch_id: str = DEFAULT_BATCH_ID,
    preflight_conn_id: str = PreflightHook.default_conn_name,
    expected_cost: ExpectedCost = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every attempt of the decorated ``@task`` function with preflight.

    Put it under ``@task``::

        @task(retries=3, retry_policy=PreflightQuotaRetryPolicy())
        @preflight_job(expected_cost=40)
        def summarise(doc: str) -> dict: ...

    The job id is the task id (``task_id[map_index]`` when mapped), the attempt Airflow's
    ``try_number``, the batch ``batch_id`` (templated; by default the DAG run's, as the
    check operator's). A return value records a success with its cost (a number, a decimal
    string, or a dict with ``"cost"``), and is returned as it is. An exception records a
    failure with its HTTP status (:mod:`preflight.integrations.outcome`); a 402 is a quota failure,
    snapshotted and classified as ``record`` does, with ``expected_cost`` (an amount, or a
    function of the task's arguments) as the job's expected cost. The exception is then
    re-raised unchanged. A preflight that cannot record is logged, never the task's
    failure: the job's own result decides the task.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            context = sdk.get_current_context()
            ti = context["ti"]
            job_id, attempt = _job_id(ti), int(ti.try_number)
            batch = str(ti.task.render_template(batch_id, context))
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                error = exc
                expected = (
                    expected_cost(*args, **kwargs) if callable(expected_cost) else expected_cost
                )

                def failed() -> dict[str, object]:
                    fields = failure_fields(job_id, attempt, error)
                    if expected is not None:
                        fields["expected_cost"] = str(expected)
                    return fields

                recorded = _record(preflight_conn_id, batch, failed)
                if recorded is not None:
                    _remember(exc, recorded)
                raise
            _record(preflight_conn_id, batch, lambda: success_fields(job_id, attempt, value))
            return value

        return wrapper

    return decorate(func) if func is not None else decorate


def _record(
    conn_id: str, batch_id: str, fields: Callable[[], Mapping[str, object]]
) -> RecordResult | None:
    """Record the outcome ``fields()`` builds (the shared rules of
    :mod:`preflight.integrations.outcome`); None, logged, when preflight cannot."""
    log = logging.getLogger("preflight.airflow")
    hook = PreflightHook(conn_id)
    try:
        result = record_attempt(hook.get_conn(), batch_id, fields, account=hook.account(None))
    except PreflightError as exc:  # the connection itself (record_attempt logs its own)
        log.warning("preflight: could not record an outcome of batch %s: %s", batch_id, exc)
        return None
    finally:
        hook.close()
    if result is not None and result.tag is not None:
        log.warning(
            "preflight: %s attempt %s: quota failure, %s: %s",
            result.outcome.job_id,
            result.outcome.attempt,
            result.tag.tag.value,
            result.tag.reason,
        )
    return result
