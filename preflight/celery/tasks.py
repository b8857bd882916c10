"""The Celery task classes and the two tasks (see the package's docstring)."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Final

from celery import Task, current_task, shared_task
from celery._state import _task_stack  # type: ignore[attr-defined]  # Task.__call__'s
from celery.exceptions import Ignore, Reject, Retry
from celery.utils.log import get_task_logger

from preflight.api import Preflight
from preflight.errors import UsageError
from preflight.integrations.gate import GateClosed, PreflightUnavailable, refusal
from preflight.integrations.recorder import record_failure, record_success

__all__ = [
    "PREFLIGHT_BATCH",
    "PreflightClientTask",
    "PreflightTask",
    "preflight_finish",
    "preflight_finish_on_error",
    "preflight_gate",
]

#: The keyword argument of a call that names its batch: ``job.s(1, preflight_batch="B")``.
PREFLIGHT_BATCH: Final = "preflight_batch"
#: The app setting (``app.conf.preflight_client``) that gives the facade to use: a
#: :class:`Preflight`, or a callable returning one.
CLIENT_SETTING: Final = "preflight_client"

_log = get_task_logger(__name__)
_default_lock = threading.Lock()
_default: Preflight | None = None

BatchOf = Callable[[tuple[Any, ...], Mapping[str, Any]], str | None]


def _environment_client() -> Preflight:
    """One facade per worker process, configured like the CLI (``PREFLIGHT_*``; remote mode
    with ``PREFLIGHT_SERVER_URL``), built on first use: its engine and HTTP pools are shared
    by every task the process runs."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Preflight()
        return _default


def _static(task: Task, name: str) -> Any:  # type: ignore[type-arg]
    """A task option as it was given: a function set as a class attribute (``@app.task(
    preflight_batch_id=lambda args, kwargs: ...)``) would otherwise come back a method."""
    value = inspect.getattr_static(task, name, None)
    return value.__func__ if isinstance(value, staticmethod) else value


def _without_batch(check: Callable[..., Any]) -> Callable[..., Any]:
    """Celery's argument check of a call (``task.typing``), blind to ``preflight_batch``."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop(PREFLIGHT_BATCH, None)
        return check(*args, **kwargs)

    if isinstance(check, functools.partial):  # a bound task's check: Celery tells them apart
        return functools.partial(_without_batch(check.func), *check.args, **check.keywords)
    return checked


class PreflightClientTask(Task):  # type: ignore[type-arg]  # any signature
    """A task that talks to preflight: :meth:`get_preflight_client` is the facade to use.

    It is, in order: the task's ``preflight_client`` attribute, the app's
    ``preflight_client`` setting (each a :class:`Preflight` or a callable returning one),
    else one facade per process from the environment, as the CLI configures itself.
    """

    preflight_client: ClassVar[Preflight | Callable[[], Preflight] | None] = None

    def get_preflight_client(self) -> Preflight:
        """The facade this task records and checks with (see the class docstring)."""
        option = _static(self, "preflight_client") or self.app.conf.get(CLIENT_SETTING)
        if option is None:
            return _environment_client()
        return option if isinstance(option, Preflight) else option()


class PreflightTask(PreflightClientTask):
    """A ``celery.Task`` base class that records each attempt's outcome in preflight.

    ``@app.task(base=PreflightTask)``; the batch of a call is its ``preflight_batch`` keyword
    argument (taken out before the task runs, unless the task declares it), else the task's
    ``preflight_batch_id``: a string, or a callable of the call's ``(args, kwargs)``.

    - a success (``on_success``) is recorded ``succeeded``, with the cost the return value
      declares (a number, a decimal string, or a mapping with ``"cost"``);
    - a retry or a failure (``on_retry``, ``on_failure``) is recorded ``failed``, with the
      HTTP status of an ``httpx.HTTPStatusError``, a ``requests.HTTPError`` or any exception
      with an ``http_status`` attribute (402: a quota failure, classified with a live
      snapshot).

    The worker records as the attempt ends, a step before Celery stores the result and
    calls those handlers: a chord's callback then finds every outcome of its header.

    Job id: the call's ``job_id`` keyword argument, else the task id; attempt:
    ``request.retries + 1``. Recording is idempotent on (batch, job, attempt), so a message
    delivered twice (``acks_late``) records once. It never changes the task's own result or
    exception: an error of preflight's (unreachable, a refused outcome) is logged and the
    attempt goes unrecorded; with ``preflight_raise_errors = True`` the attempt fails with
    that error instead. ``preflight_account`` names a non-default account.
    """

    preflight_batch_id: ClassVar[str | BatchOf | None] = None
    preflight_account: ClassVar[str | None] = None
    preflight_raise_errors: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # @app.task builds a subclass holding the function's argument check: a call with
        # preflight_batch must pass it even when the function does not take one.
        check = cls.__dict__.get("__header__")
        if isinstance(check, staticmethod):
            setattr(cls, "__header__", staticmethod(_without_batch(check.__func__)))  # noqa: B010

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.id is None:  # a plain call: no attempt
            return self._run(args, kwargs)
        try:
            value = self._run(args, kwargs)
        except (Ignore, Reject):
            raise  # not an attempt that ended: the message is dropped or handed back
        except Retry as retry:
            # Retry holds a pickle-safe copy of the error; the one raised is its context.
            error = retry.__context__ or retry.exc or retry
            self._record_failure(error, request.id, args, kwargs)
            self._ended(request.id)
            raise
        except BaseException as exc:
            self._record_failure(exc, request.id, args, kwargs)
            self._ended(request.id)
            raise
        self._record_success(value, request.id, args, kwargs)
        self._ended(request.id)
        return value

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``Task.__call__``, but ``run`` gets the call without ``preflight_batch`` (unless
        it takes it) while the request keeps it, so a retry is sent with its batch."""
        arguments = kwargs
        if PREFLIGHT_BATCH in kwargs and not self._takes_batch():
            arguments = {k: v for k, v in kwargs.items() if k != PREFLIGHT_BATCH}
        _task_stack.push(self)
        self.push_request(args=args, kwargs=kwargs)
        try:
            return self.run(*args, **arguments)
        finally:
            self.pop_request()
            _task_stack.pop()

    # The outcome is recorded as the attempt ends, in the worker, before Celery stores the
    # result: so a chord's callback (started by the last result stored) finds every outcome
    # of its header, and the exception read is the one raised, not the pickle-safe copy
    # Celery hands to on_failure (for an httpx.HTTPStatusError, a bare HTTPError without
    # its response, and so without its status). The handlers record only an attempt that
    # did not pass through here (one whose handler is called by other means).

    def _ended(self, task_id: str | None) -> None:
        self._recorded().add((task_id, int(self.request.retries or 0)))

    def _already_recorded(self, task_id: str) -> bool:
        key = (task_id, int(self.request.retries or 0))
        recorded = self._recorded()
        if key in recorded:
            recorded.discard(key)
            return True
        return False

    def _recorded(self) -> set[tuple[str | None, int]]:
        recorded: set[tuple[str | None, int]] = self.__dict__.setdefault("_preflight_ended", set())
        return recorded

    def _takes_batch(self) -> bool:
        takes: bool | None = self.__dict__.get("_preflight_takes_batch")
        if takes is None:
            parameters = inspect.signature(self.run).parameters.values()
            takes = any(
                p.name == PREFLIGHT_BATCH or p.kind is inspect.Parameter.VAR_KEYWORD
                for p in parameters
            )
            self.__dict__["_preflight_takes_batch"] = takes
        return takes

    def preflight_batch(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
        """The batch a call belongs to (None: it belongs to none, nothing is recorded)."""
        named = kwargs.get(PREFLIGHT_BATCH)
        if named is not None:
            return str(named)
        source: str | BatchOf | None = _static(self, "preflight_batch_id")
        if callable(source):
            return source(tuple(args), kwargs)
        return source

    def preflight_job(self, task_id: str, kwargs: Mapping[str, Any]) -> tuple[str, int]:
        """The (job id, attempt) of the running attempt."""
        job_id = kwargs.get("job_id")
        return (task_id if job_id is None else str(job_id)), int(self.request.retries or 0) + 1

    def _where(self, task_id: str, args: Any, kwargs: Any) -> tuple[str, str, int] | None:
        kwargs = kwargs or {}
        batch_id = self.preflight_batch(tuple(args or ()), kwargs)
        if batch_id is None:
            if self.preflight_raise_errors:
                raise UsageError(f"{PREFLIGHT_BATCH}: task {self.name} was called without one")
            _log.warning("outcome not recorded: task %s was called without a batch", self.name)
            return None
        return (batch_id, *self.preflight_job(task_id, kwargs))

    def _record_success(self, value: Any, task_id: str, args: Any, kwargs: Any) -> None:
        where = self._where(task_id, args, kwargs)
        if where is not None:
            batch_id, job_id, attempt = where
            record_success(
                self.get_preflight_client(),
                batch_id,
                job_id,
                attempt,
                value,
                account=self.preflight_account,
                raise_errors=self.preflight_raise_errors,
            )

    def _record_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any) -> None:
        where = self._where(task_id, args, kwargs)
        if where is not None:
            batch_id, job_id, attempt = where
            record_failure(
                self.get_preflight_client(),
                batch_id,
                job_id,
                attempt,
                exc,
                account=self.preflight_account,
                raise_errors=self.preflight_raise_errors,
            )

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Record ``succeeded`` (unless the attempt's end already did), then Celery's own."""
        if not self._already_recorded(task_id):
            self._record_success(retval, task_id, args, kwargs)
        super().on_success(retval, task_id, args, kwargs)

    def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Record this attempt as ``failed`` (unless already done), then Celery's own."""
        if not self._already_recorded(task_id):
            self._record_failure(exc, task_id, args, kwargs)
        super().on_retry(exc, task_id, args, kwargs, einfo)

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Record ``failed`` with the error's HTTP status (unless already done)."""
        if not self._already_recorded(task_id):
            self._record_failure(exc, task_id, args, kwargs)
        super().on_failure(exc, task_id, args, kwargs, einfo)


Amount = Decimal | str | int


@shared_task(
    bind=True,
    base=PreflightClientTask,
    name="preflight.gate",
    autoretry_for=(PreflightUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
    throws=(GateClosed,),
)
def preflight_gate(
    self: PreflightClientTask,
    batch_id: str,
    need: Amount | None = None,
    *,
    meter: str | None = None,
    reserve: Amount | None = None,
    account: str | None = None,
    labels: Mapping[str, str] | None = None,
    strict: bool = False,
    fail_open: bool | None = None,
) -> dict[str, Any]:
    """Check ``batch_id`` before its jobs are dispatched; returns the check as a dict.

    On a no-go it raises :class:`InsufficientBalance`, :class:`AuthFailed`,
    :class:`BillingBlocked` (or :class:`AtRisk` with ``strict``), which Celery does not
    retry: the chain stops there. :class:`PreflightUnavailable` is retried with
    exponential backoff (2 s, 4 s … up to 5 minutes, 6 times) before it fails the chain;
    with ``fail_open`` the batch goes ahead unverified instead.
    """
    result = self.get_preflight_client().check(
        batch_id,
        need=need,
        meter=meter,
        reserve=reserve,
        account=account,
        labels=labels,
        fail_open=fail_open,
    )
    refused = refusal(result, strict=strict)
    if refused is not None:
        raise refused
    return result.to_dict()


@shared_task(bind=True, base=PreflightClientTask, name="preflight.finish")
def preflight_finish(
    self: PreflightClientTask, *results: Any, batch_id: str, snapshot: bool = True
) -> dict[str, Any]:
    """Finish ``batch_id``: its ``finish`` snapshot, own cost against the balance drop.

    A chord callback (``preflight_finish.s(batch_id="B")``, the header's results ignored),
    or a plain task (``.si(batch_id="B")``). A failed header task makes Celery skip the
    callback: :data:`preflight_finish_on_error` is its error callback. Finishing twice
    returns the first finish's numbers.
    """
    return self.get_preflight_client().finish(batch_id, snapshot=snapshot).to_dict()


@shared_task(base=PreflightClientTask, name="preflight.finish_on_error")
def preflight_finish_on_error(
    request: Any, exc: BaseException | None, traceback: Any, *, batch_id: str, snapshot: bool = True
) -> dict[str, Any]:
    """Finish ``batch_id`` when the task it is linked to fails: the chord callback's error
    callback, ``preflight_finish.s(batch_id=B).on_error(preflight_finish_on_error.s(batch_id=B))``.

    A failed header task fails the chord: Celery skips its callback and calls the
    callback's error callbacks instead, with the chord's error. This one finishes the batch
    there (the failed jobs' outcomes are already recorded), in the worker that saw the
    last header task end and before it stores the chord's failure: whoever waits on the
    chord's result finds the batch finished. Its ``(request, exc, traceback)`` arguments
    make it an error callback that Celery calls in place, never one it sends as a message.
    """
    _log.warning("batch %s: finished after %s failed: %r", batch_id, request.id, exc)
    task = current_task  # the task being called (Task.__call__ pushed it), whatever its app
    if not isinstance(task, PreflightClientTask):
        raise UsageError("preflight_finish_on_error: call the task, not its run function")
    return task.get_preflight_client().finish(batch_id, snapshot=snapshot).to_dict()
