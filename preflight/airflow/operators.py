"""``PreflightCheckOperator`` (the gate before dispatch) and ``PreflightFinishOperator``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from preflight.airflow.hooks import PreflightHook
from preflight.airflow.triggers import PreflightBalanceTrigger
from preflight.domain.verdict import Verdict
from preflight.domain.wire import amount_text
from preflight.errors import UsageError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from preflight.services.results import CheckResult

__all__ = [
    "DEFAULT_BATCH_ID",
    "PreflightCheckOperator",
    "PreflightFinishOperator",
    "PreflightUnavailableError",
]

#: One batch per DAG run: Airflow's own ids (domain/batch.py admits their ``+``).
DEFAULT_BATCH_ID: Final = "{{ dag.dag_id }}/{{ run_id }}"

OnInsufficient = Literal["fail", "skip", "wait"]
OnAtRisk = Literal["go", "skip", "fail", "wait"]
_ON_INSUFFICIENT: Final = ("fail", "skip", "wait")
_ON_AT_RISK: Final = ("go", "skip", "fail", "wait")


class PreflightUnavailableError(Exception):
    """The balance could not be read (``unavailable``): an ordinary failure, so that the
    task's retries apply. Not a subclass of preflight's errors: Airflow sees a plain one."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _text(value: Decimal | None) -> str | None:
    return amount_text(value)


def _amount(value: object) -> str | None:
    """An amount argument as the exact text the check takes (a float keeps its repr)."""
    return None if value is None or value == "" else str(value)


class PreflightCheckOperator(BaseOperator):
    """Check the balance before a paid batch and act on the verdict.

    ============================  ============================================================
    verdict                       the task
    ============================  ============================================================
    ``go``                        succeeds
    ``at_risk``                   per ``on_at_risk``: ``go``, ``skip``, ``fail`` (the CLI's
                                  ``--strict``) or ``wait``
    ``insufficient``              per ``on_insufficient``: ``fail`` (``AirflowFailException``,
                                  no retries), ``skip`` (downstream skipped, nothing spent) or
                                  ``wait`` (deferred to :class:`PreflightBalanceTrigger` until
                                  the balance covers the need, then re-checked; past
                                  ``wait_timeout`` it fails)
    ``auth_failed``,              ``AirflowFailException``: retrying cannot help
    ``billing_blocked``
    ``unavailable``               :class:`PreflightUnavailableError`, so the task's retries
                                  apply; with ``fail_open=True`` it succeeds and the batch is
                                  marked unverified
    a usage error                 ``AirflowFailException`` with the one-line message
    ============================  ============================================================

    Returns (XCom) ``{"verdict", "batch_id", "balance", "need", "outstanding_other",
    "snapshot_id", "meter"}``, amounts as exact decimal strings.
    """

    template_fields = ("batch_id", "need", "account", "reserve", "labels")
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        need: Decimal | str | int | None,
        batch_id: str = DEFAULT_BATCH_ID,
        account: str | None = None,
        reserve: Decimal | str | int | None = None,
        labels: Mapping[str, str] | None = None,
        preflight_conn_id: str = PreflightHook.default_conn_name,
        on_insufficient: OnInsufficient = "fail",
        on_at_risk: OnAtRisk = "go",
        fail_open: bool = False,
        wait_timeout: timedelta = timedelta(hours=6),
        poll_interval: timedelta = timedelta(minutes=5),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_insufficient not in _ON_INSUFFICIENT:
            raise ValueError(
                f"on_insufficient must be one of {_ON_INSUFFICIENT}: {on_insufficient!r}"
            )
        if on_at_risk not in _ON_AT_RISK:
            raise ValueError(f"on_at_risk must be one of {_ON_AT_RISK}: {on_at_risk!r}")
        if poll_interval <= timedelta(0) or wait_timeout < timedelta(0):
            raise ValueError("poll_interval must be positive and wait_timeout not negative")
        self.need = need
        self.batch_id = batch_id
        self.account = account
        self.reserve = reserve
        self.labels = labels
        self.preflight_conn_id = preflight_conn_id
        self.on_insufficient = on_insufficient
        self.on_at_risk = on_at_risk
        self.fail_open = fail_open
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    # Seams for tests (not arguments): the clock and the sleep of a wait not deferred.
    _clock = staticmethod(_utcnow)
    _sleep = staticmethod(time.sleep)

    # ------------------------------------------------------------ Airflow's entry points

    def execute(self, context: Context) -> dict[str, Any]:
        """Check, then act on the verdict (see the class's table)."""
        return self._decide(self._check(), deadline=None)

    def execute_complete(
        self, context: Context, event: Mapping[str, Any], deadline: str | None = None
    ) -> dict[str, Any]:
        """Resumed from :class:`PreflightBalanceTrigger`: re-check when it says covered."""
        status = event.get("status")
        if status != "sufficient":
            message = event.get("message") or f"the balance trigger ended with {status!r}"
            raise AirflowFailException(f"preflight: batch {self.batch_id}: {message}")
        return self._decide(
            self._check(), deadline=datetime.fromisoformat(deadline) if deadline else None
        )

    # ------------------------------------------------------------ the verdict table

    def _check(self) -> CheckResult:
        hook = PreflightHook(self.preflight_conn_id)
        try:
            return hook.check(
                self.batch_id,
                need=_amount(self.need),
                account=self.account or None,
                reserve=_amount(self.reserve),
                labels=self.labels or None,
                fail_open=self.fail_open,
            )
        except UsageError as exc:
            raise AirflowFailException(f"preflight: {exc}") from exc
        finally:
            hook.close()

    def _action(self, result: CheckResult) -> str:
        verdict = result.verdict
        if verdict is Verdict.GO:
            return "go"
        if verdict is Verdict.AT_RISK:
            return self.on_at_risk
        if verdict is Verdict.INSUFFICIENT:
            return self.on_insufficient
        if verdict is Verdict.UNAVAILABLE:
            return "go" if result.go else "unavailable"
        return "fail"  # auth_failed, billing_blocked: no retry can help

    def _decide(self, result: CheckResult, *, deadline: datetime | None) -> dict[str, Any]:
        while True:
            action = self._action(result)
            if action != "wait":
                return self._act(action, result)
            deadline = deadline or self._clock() + self.wait_timeout
            if self._clock() >= deadline:
                raise AirflowFailException(
                    f"preflight: batch {result.batch_id} still {result.verdict.value} after "
                    f"waiting {self.wait_timeout}: {result.reason}"
                )
            self.log.info(
                "preflight: batch %s is %s; waiting for a top-up: %s",
                result.batch_id,
                result.verdict.value,
                result.reason,
            )
            if self.deferrable:
                self.defer(
                    trigger=PreflightBalanceTrigger(
                        batch_id=result.batch_id,
                        need=_amount(self.need) or "0",
                        account=self.account or None,
                        reserve=_amount(self.reserve),
                        labels=self.labels or None,
                        preflight_conn_id=self.preflight_conn_id,
                        poll_interval=self.poll_interval.total_seconds(),
                        deadline=deadline.isoformat(),
                        at_risk_covers=self.on_at_risk != "wait",
                    ),
                    method_name="execute_complete",
                    kwargs={"deadline": deadline.isoformat()},
                )
            self._sleep(self.poll_interval.total_seconds())
            result = self._check()

    def _act(self, action: str, result: CheckResult) -> dict[str, Any]:
        line = f"preflight: batch {result.batch_id}: {result.verdict.value}: {result.reason}"
        if action == "go":
            if not result.verified:
                self.log.warning("%s (fail-open: the batch is marked unverified)", line)
            else:
                self.log.info(line)
            return self.xcom_of(result)
        if action == "skip":
            raise AirflowSkipException(line)
        if action == "unavailable":
            raise PreflightUnavailableError(line)
        raise AirflowFailException(line)

    @staticmethod
    def xcom_of(result: CheckResult) -> dict[str, Any]:
        """The operator's return value: the check's answer, JSON-ready."""
        return {
            "verdict": result.verdict.value,
            "batch_id": result.batch_id,
            "balance": _text(result.balance),
            "need": _text(result.need),
            "outstanding_other": _text(result.outstanding_other),
            "snapshot_id": result.snapshot_id,
            "meter": result.meter,
        }


class PreflightFinishOperator(BaseOperator):
    """Finish the batch after its jobs, whatever became of them (``trigger_rule="all_done"``).

    Returns (XCom) ``{"own_cost", "balance_drop", "foreign", "quota_failures": {tag: n}}``:
    what the batch's own jobs cost, how far the balance fell between the check and now,
    what others spent meanwhile, and its quota failures by tag. With
    ``fail_on_pre_existing=True`` the task fails (after finishing) when a quota failure was
    ``pre_existing_low_balance``: the batch was sent out short.
    """

    template_fields = ("batch_id",)
    ui_color = "#b7e4c7"

    def __init__(
        self,
        *,
        batch_id: str = DEFAULT_BATCH_ID,
        preflight_conn_id: str = PreflightHook.default_conn_name,
        fail_on_pre_existing: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.preflight_conn_id = preflight_conn_id
        self.fail_on_pre_existing = fail_on_pre_existing

    def execute(self, context: Context) -> dict[str, Any]:
        """Finish the batch and sum up its spend and its quota failures."""
        hook = PreflightHook(self.preflight_conn_id)
        try:
            finished = hook.finish(self.batch_id)
            report = hook.show(self.batch_id)
        except UsageError as exc:
            raise AirflowFailException(f"preflight: {exc}") from exc
        finally:
            hook.close()
        summary = finished.summary
        tags = Counter(f.tag or "unclassified" for f in report.quota_failures)
        answer = {
            "own_cost": _text(summary.own_cost),
            "balance_drop": _text(summary.drop),
            "foreign": _text(summary.foreign.amount) if summary.foreign else None,
            "quota_failures": dict(sorted(tags.items())),
        }
        self.log.info("preflight: batch %s finished: %s", self.batch_id, answer)
        if finished.snapshot_error:
            self.log.warning("preflight: no finish snapshot: %s", finished.snapshot_error)
        if self.fail_on_pre_existing and tags.get("pre_existing_low_balance"):
            raise AirflowFailException(
                f"preflight: batch {self.batch_id} started short: "
                f"{tags['pre_existing_low_balance']} quota failure(s) were "
                "pre_existing_low_balance"
            )
        return answer
