"""The check operator's verdict table, the finish operator, the sensor, the job decorator
and the retry policy, their methods called directly (local mode, the sandbox vendor);
the DAG-level behaviour is in test_dags.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSkipException,
    TaskDeferred,
)

from preflight.airflow import (
    PreflightBalanceSensor,
    PreflightBalanceTrigger,
    PreflightCheckOperator,
    PreflightFinishOperator,
    PreflightQuotaRetryPolicy,
    PreflightUnavailableError,
)
from preflight.airflow.decorators import preflight_job, recorded_outcome
from preflight.sandbox import SandboxServer
from tests.airflow.conftest import Connect, Preflight

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def check_op(batch_id: str = "b/run+1", **options: Any) -> PreflightCheckOperator:
    options.setdefault("need", "50")
    return PreflightCheckOperator(task_id="preflight_check", batch_id=batch_id, **options)


def at_risk(pf: Preflight) -> None:
    """Another open batch holds 60 of the 100 credits: a need of 50 is at risk."""
    pf.vendor.set_balance(credits=Decimal(100))
    with pf.ledger() as ledger:
        assert ledger.check("other", need="60").verdict.value == "go"


# ---------------------------------------------------------------- the verdict table


def test_go_returns_the_checks_answer(local: Preflight) -> None:
    assert check_op(reserve="5", labels={"team": "a"}).execute({}) == {
        "verdict": "go",
        "batch_id": "b/run+1",
        "balance": "1000",
        "need": "50",
        "outstanding_other": "0",
        "snapshot_id": 1,
        "meter": "credits",
    }


def test_waiting_out_at_risk_waits_for_go(local: Preflight) -> None:
    at_risk(local)
    with pytest.raises(TaskDeferred) as deferred:
        check_op(on_at_risk="wait", deferrable=True).execute({})
    assert deferred.value.trigger.serialize()[1]["at_risk_covers"] is False


@pytest.mark.parametrize(
    ("on_at_risk", "raised"),
    [("skip", AirflowSkipException), ("fail", AirflowFailException), ("wait", TaskDeferred)],
)
def test_at_risk_follows_on_at_risk(
    local: Preflight, on_at_risk: str, raised: type[BaseException]
) -> None:
    at_risk(local)
    with pytest.raises(raised):
        check_op(on_at_risk=on_at_risk, deferrable=True).execute({})


def test_at_risk_goes_by_default(local: Preflight) -> None:
    at_risk(local)
    answer = check_op().execute({})
    assert (answer["verdict"], answer["outstanding_other"]) == ("at_risk", "60")


@pytest.mark.parametrize(
    ("on_insufficient", "raised"),
    [("fail", AirflowFailException), ("skip", AirflowSkipException)],
)
def test_insufficient_fails_or_skips(
    local: Preflight, on_insufficient: str, raised: type[BaseException]
) -> None:
    with pytest.raises(raised, match=r"insufficient: balance 1000 is below need 5000"):
        check_op(need="5000", on_insufficient=on_insufficient).execute({})


def test_insufficient_with_wait_defers_to_the_balance_trigger(local: Preflight) -> None:
    operator = check_op(
        need="5000", on_insufficient="wait", deferrable=True, poll_interval=timedelta(seconds=30)
    )
    operator._clock = lambda: T0  # type: ignore[method-assign]
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PreflightBalanceTrigger)
    deadline = (T0 + timedelta(hours=6)).isoformat()
    assert trigger.serialize()[1] | {"labels": None} == {
        "need": "5000",
        "batch_id": "b/run+1",
        "account": None,
        "reserve": None,
        "meter": None,
        "labels": None,
        "preflight_conn_id": "preflight_default",
        "poll_interval": 30.0,
        "deadline": deadline,
        "at_risk_covers": True,
    }
    assert (deferred.value.method_name, deferred.value.kwargs) == (
        "execute_complete",
        {"deadline": deadline},
    )


def test_resumed_after_the_trigger_it_rechecks_and_succeeds(local: Preflight) -> None:
    operator = check_op(need="5000", on_insufficient="wait", deferrable=True)
    with pytest.raises(TaskDeferred):
        operator.execute({})
    local.vendor.topup(Decimal(5000))
    answer = operator.execute_complete(
        {}, {"status": "sufficient"}, deadline=(datetime.now(UTC) + timedelta(hours=1)).isoformat()
    )
    assert (answer["verdict"], answer["balance"]) == ("go", "6000")
    with local.ledger() as ledger:
        assert [s.kind for s in ledger.show("b/run+1").snapshots] == ["preflight", "recheck"]


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_a_trigger_that_gave_up_fails_the_task(local: Preflight, status: str) -> None:
    with pytest.raises(AirflowFailException, match="it gave up"):
        check_op().execute_complete({}, {"status": status, "message": "it gave up"})


def test_waiting_without_deferring_polls_in_the_worker_until_covered(local: Preflight) -> None:
    operator = check_op(need="5000", on_insufficient="wait", deferrable=False)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            local.vendor.topup(Decimal(5000))

    operator._sleep = sleep  # type: ignore[method-assign]
    assert operator.execute({})["verdict"] == "go"
    assert slept == [300.0, 300.0]


def test_past_wait_timeout_it_fails(local: Preflight) -> None:
    operator = check_op(
        need="5000", on_insufficient="wait", deferrable=False, wait_timeout=timedelta(minutes=9)
    )
    now = [T0]

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    operator._clock = lambda: now[0]  # type: ignore[method-assign]
    operator._sleep = sleep  # type: ignore[method-assign]
    with pytest.raises(AirflowFailException, match=r"still insufficient after waiting 0:09:00"):
        operator.execute({})
    assert now[0] == T0 + timedelta(minutes=10)  # two polls; the third would be past it


@pytest.mark.parametrize(
    ("fault", "verdict"),
    [
        ({"status": 401, "count": -1}, "auth_failed"),
        ({"status": 402, "count": -1}, "billing_blocked"),
    ],
)
def test_a_refused_token_or_a_blocked_account_fails_without_retry(
    local: Preflight, fault: dict[str, Any], verdict: str
) -> None:
    local.vendor.inject(fault)
    with pytest.raises(AirflowFailException, match=f": {verdict}: "):
        check_op().execute({})


def test_unavailable_is_an_ordinary_failure_so_retries_apply(local: Preflight) -> None:
    local.vendor.inject({"status": 503, "count": -1})
    with pytest.raises(PreflightUnavailableError, match=": unavailable: ") as raised:
        check_op().execute({})
    assert not isinstance(raised.value, AirflowFailException)


def test_unavailable_with_fail_open_succeeds_and_the_batch_is_unverified(local: Preflight) -> None:
    local.vendor.inject({"status": 503, "count": -1})
    assert check_op(fail_open=True).execute({})["verdict"] == "unavailable"
    local.vendor.reset()
    with local.ledger() as ledger:
        assert ledger.show("b/run+1").batch.verified is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_id": "has space"}, "invalid batch id 'has space'"),
        ({"batch_id": "x" * 501}, "use 1-500 characters"),
        ({"need": "-3"}, "need"),
    ],
)
def test_a_usage_error_fails_with_its_one_line_message(
    local: Preflight, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message) as raised:
        check_op(**options).execute({})
    assert "\n" not in str(raised.value)


def test_bad_choices_are_refused_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="on_insufficient"):
        check_op(on_insufficient="retry")
    with pytest.raises(ValueError, match="on_at_risk"):
        check_op(on_at_risk="maybe")


# ---------------------------------------------------------------- finish


def test_finish_sums_up_the_batch(local: Preflight) -> None:
    with local.ledger() as ledger:
        ledger.check("fin", need="100")
        ledger.record("fin", {"job_id": "a", "status": "succeeded", "cost": "30"})
        local.vendor.consume(Decimal(30))  # what job a cost
    finish = PreflightFinishOperator(task_id="preflight_finish", batch_id="fin")
    assert finish.trigger_rule == "all_done"
    assert finish.execute({}) == {
        "own_cost": "30",
        "balance_drop": "30",
        "foreign": "0",
        "quota_failures": {},
    }


def test_finish_can_fail_a_batch_that_started_short(local: Preflight) -> None:
    local.vendor.set_balance(credits=Decimal(100))
    with local.ledger() as ledger:
        ledger.check("short", need="10")
        ledger.record("short", {"job_id": "a", "status": "succeeded", "cost": "60"})
        local.vendor.consume(Decimal(60))
        ledger.record(
            "short",
            {"job_id": "b", "status": "failed", "http_status": 402, "expected_cost": "60"},
        )
    finish = PreflightFinishOperator(
        task_id="preflight_finish", batch_id="short", fail_on_pre_existing=True
    )
    with pytest.raises(AirflowFailException, match="1 quota failure"):
        finish.execute({})
    with local.ledger() as ledger:
        assert ledger.show("short").batch.status == "finished"  # finished all the same


# ---------------------------------------------------------------- sensor


def test_the_sensor_pokes_until_the_account_covers_the_need(local: Preflight) -> None:
    local.vendor.set_balance(credits=Decimal(40))
    sensor = PreflightBalanceSensor(task_id="funded", need="50", deferrable=False)
    assert sensor.poke({}) is False
    local.vendor.topup(Decimal(10))
    assert sensor.poke({}) is True


def test_the_sensor_fails_at_once_on_a_refused_token(local: Preflight) -> None:
    local.vendor.inject({"status": 401, "count": -1})
    with pytest.raises(AirflowFailException, match="401"):
        PreflightBalanceSensor(task_id="funded", need="50").poke({})


def test_the_deferrable_sensor_hands_the_wait_to_the_trigger(local: Preflight) -> None:
    sensor = PreflightBalanceSensor(
        task_id="funded",
        need="50",
        account="default",
        deferrable=True,
        timeout=600,
        poke_interval=20,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    kwargs = deferred.value.trigger.serialize()[1]
    assert (kwargs["batch_id"], kwargs["need"], kwargs["poll_interval"]) == (None, "50", 20.0)
    assert sensor.execute_complete({}, {"status": "sufficient", "balance": "60"}) == {
        "status": "sufficient",
        "balance": "60",
    }


# ---------------------------------------------------------------- decorator and policy


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://vendor.example/jobs")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


def test_the_retry_policy_leaves_other_failures_to_airflow() -> None:
    from airflow.sdk.definitions.retry_policy import RetryAction

    policy = PreflightQuotaRetryPolicy()
    assert policy.evaluate(ValueError("x"), 1, 3).action is RetryAction.DEFAULT
    # A 402 that preflight_job did not record: no tag to read.
    assert policy.evaluate(_status_error(402), 1, 3).action is RetryAction.DEFAULT


def test_the_retry_policy_serialises_as_its_base_class_requires() -> None:
    policy = PreflightQuotaRetryPolicy(concurrent_delay=timedelta(minutes=3))
    data = policy.serialize()
    assert data == {"__type": "PreflightQuotaRetryPolicy", "concurrent_delay": 180.0}
    assert PreflightQuotaRetryPolicy.deserialize(data) == policy


@pytest.fixture
def task_context(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """What get_current_context() gives a mapped task's third try (map index 2)."""
    import airflow.sdk

    ti = SimpleNamespace(
        task_id="summarise",
        map_index=2,
        try_number=3,
        task=SimpleNamespace(render_template=lambda template, context: "dag/run+1"),
    )
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": ti})
    return ti


def test_the_decorator_records_a_success_with_its_cost_and_returns_the_value(
    local: Preflight, task_context: SimpleNamespace
) -> None:
    @preflight_job
    def job(cost: str) -> dict[str, str]:
        return {"cost": cost, "text": "done"}

    assert job("12.5") == {"cost": "12.5", "text": "done"}
    with local.ledger() as ledger:
        report = ledger.show("dag/run+1")
    assert (report.outcomes.total, report.outcomes.succeeded, report.outcomes.cost) == (
        1,
        1,
        Decimal("12.5"),
    )


@pytest.mark.parametrize(
    ("own", "others", "tag", "action"),
    [
        # 100 at the check could not cover own 60 + this job's 60: sent out short.
        ("60", "0", "pre_existing_low_balance", "fail"),
        # It covered own 30 + 60, but others spent 60 meanwhile.
        ("30", "60", "concurrent_consumption", "retry"),
    ],
)
def test_a_402_is_recorded_re_raised_unchanged_and_its_tag_decides_the_retry(
    local: Preflight, task_context: SimpleNamespace, own: str, others: str, tag: str, action: str
) -> None:
    from airflow.sdk.definitions.retry_policy import RetryAction

    local.vendor.set_balance(credits=Decimal(100))
    with local.ledger() as ledger:
        ledger.check("dag/run+1", need="10")
        ledger.record("dag/run+1", {"job_id": "summarise[0]", "status": "succeeded", "cost": own})
    local.vendor.consume(Decimal(own) + Decimal(others))
    raised = _status_error(402)

    @preflight_job(expected_cost=lambda document: "60")
    def job(document: str) -> None:
        raise raised

    with pytest.raises(httpx.HTTPStatusError) as caught:
        job("a.pdf")
    assert caught.value is raised
    recorded = recorded_outcome(raised)
    assert recorded is not None
    assert recorded.tag is not None
    assert (recorded.outcome.job_id, recorded.outcome.attempt) == ("summarise[2]", 3)
    assert recorded.tag.tag.value == tag
    decision = PreflightQuotaRetryPolicy(timedelta(minutes=7)).evaluate(raised, 3, 4)
    assert decision.action is RetryAction(action)
    assert decision.reason is not None
    assert decision.reason.startswith(f"preflight: {tag}: balance at the check 100")
    if action == "retry":
        assert decision.retry_delay == timedelta(minutes=7)


@pytest.mark.parametrize(
    "connect", [pytest.param("serve", marks=pytest.mark.postgres)], indirect=True
)
def test_a_refused_preflight_api_token_is_a_usage_error(
    connect: Connect, vendor: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import os

    connect(vendor)
    conn = json.loads(os.environ["AIRFLOW_CONN_PREFLIGHT_DEFAULT"])
    monkeypatch.setenv(
        "AIRFLOW_CONN_PREFLIGHT_DEFAULT", json.dumps({**conn, "password": "pft_not-a-token"})
    )
    with pytest.raises(AirflowFailException, match="preflight server refused the token") as raised:
        check_op().execute({})
    assert "pft_not-a-token" not in str(raised.value)
