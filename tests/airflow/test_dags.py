"""DAGs run by ``dag.test()`` against the sandbox vendor, in local mode and through
``preflight serve``: the tasks' states, and preflight's own ledger of the batch."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from preflight.sandbox import SandboxServer
from tests.airflow.conftest import Connect, run_dag

pytestmark = pytest.mark.slow

GATES = "preflight_gates.py"


def test_enough_balance_every_task_succeeds_and_the_batch_is_finished(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor)
    run = run_dag("example_preflight", "example_preflight.py", {"vendor_url": vendor.url})

    assert run.state == "success"
    assert run.states("preflight_check") == ["success"]
    assert run.states("summarise") == ["success"] * 3
    assert run.states("preflight_finish") == ["success"]
    check = run.xcom["preflight_check"]
    assert check["verdict"] == "go"
    assert check["batch_id"] == run.batch_id
    assert "+" in run.batch_id  # Airflow's own run id, with its UTC offset
    assert (check["balance"], check["need"], check["meter"]) == ("1000", "120", "credits")
    assert run.xcom["preflight_finish"] == {
        "own_cost": "120",
        "balance_drop": "120",
        "foreign": "0",
        "quota_failures": {},
    }
    with pf.ledger() as ledger:
        report = ledger.show(run.batch_id)
    assert report.batch.status == "finished"
    assert [s.kind for s in report.snapshots] == ["preflight", "finish"]
    assert (report.outcomes.total, report.outcomes.succeeded) == (3, 3)
    assert report.outcomes.cost == Decimal(120)
    assert vendor.spent["credits"] == Decimal(120)


def test_insufficient_with_skip_skips_the_jobs_and_spends_nothing(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor)
    run = run_dag("preflight_gate_skip", GATES, {"need": "5000", "costs": ["10", "10"]})

    assert run.states("preflight_check") == ["skipped"]
    assert run.states("plan") == ["skipped"]
    assert set(run.states("pay")) == {"skipped"}
    assert run.states("preflight_finish") == ["success"]
    assert vendor.spent["credits"] == Decimal(0)
    with pf.ledger() as ledger:
        report = ledger.show(run.batch_id)
    assert report.batch.verdict == "insufficient"
    assert report.outcomes.total == 0


def _top_up_after_profile_reads(
    vendor: SandboxServer, reads: int, amount: Decimal
) -> threading.Thread:
    """Top the vendor up once it has answered ``reads`` balance reads (the check's, then
    the waiting trigger's first poll): "a few seconds later", as an operator would."""
    seen = threading.Event()

    def watch() -> None:
        for _ in range(2400):  # at most two minutes
            if vendor.request_counts.get("GET /api/open/v1/profile", 0) >= reads:
                vendor.topup(amount)
                return
            seen.wait(0.05)

    thread = threading.Thread(target=watch, name="top-up", daemon=True)
    thread.start()
    return thread


def test_insufficient_with_wait_defers_until_a_top_up_then_the_jobs_run(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor)
    vendor.set_balance(credits=Decimal(15))
    topping = _top_up_after_profile_reads(vendor, reads=2, amount=Decimal(100))
    run = run_dag("preflight_gate_wait", GATES, {"need": "20", "costs": ["10", "10"]})
    topping.join(timeout=5)

    assert run.states("preflight_check") == ["success"]
    assert run.tries("preflight_check") == [1]  # deferred and resumed, not retried
    assert run.states("pay") == ["success", "success"]
    assert run.xcom["preflight_check"]["verdict"] == "go"
    assert run.xcom["preflight_check"]["balance"] == "115"
    assert vendor.spent["credits"] == Decimal(20)
    with pf.ledger() as ledger:
        report = ledger.show(run.batch_id)
    kinds = [s.kind for s in report.snapshots]
    assert kinds[0] == "preflight"
    assert set(kinds[1:-1]) == {"recheck"}  # the trigger's polls and the operator's re-check
    assert kinds[-1] == "finish"
    assert (report.outcomes.total, report.outcomes.succeeded) == (2, 2)


def test_another_consumer_spending_mid_batch_is_concurrent_consumption_and_retried(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor)
    vendor.set_balance(credits=Decimal(100))
    run = run_dag(
        "preflight_gate_fail", GATES, {"need": "60", "costs": ["30", "30"], "outside_spend": "50"}
    )

    # dag.test() runs mapped tasks in no set order: the second job to run is the one short.
    assert run.states("preflight_check") == ["success"]
    assert sorted(zip(run.states("pay"), run.tries("pay"), strict=True)) == [
        ("failed", 2),  # its 402 was retried (retries=1), and failed again
        ("success", 1),
    ]
    assert run.xcom["preflight_finish"]["quota_failures"] == {"concurrent_consumption": 2}
    with pf.ledger() as ledger:
        failures = ledger.show(run.batch_id).quota_failures
    failed_job = failures[0].job_id
    assert failed_job in {"pay[0]", "pay[1]"}
    assert [(f.job_id, f.attempt, f.tag) for f in failures] == [
        (failed_job, 1, "concurrent_consumption"),
        (failed_job, 2, "concurrent_consumption"),
    ]


def test_a_batch_that_started_short_is_pre_existing_low_balance_and_fails_without_retry(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor)
    vendor.set_balance(credits=Decimal(100))
    # The DAG declared a need of 10 for two jobs of 60: the check said go, the money was short.
    run = run_dag("preflight_gate_fail", GATES, {"need": "10", "costs": ["60", "60"]})

    # retries=1, but the policy failed the second job to run at once.
    assert sorted(zip(run.states("pay"), run.tries("pay"), strict=True)) == [
        ("failed", 1),
        ("success", 1),
    ]
    assert run.xcom["preflight_finish"]["quota_failures"] == {"pre_existing_low_balance": 1}
    with pf.ledger() as ledger:
        (failure,) = ledger.show(run.batch_id).quota_failures
    assert (failure.attempt, failure.http_status) == (1, 402)
    assert failure.job_id in {"pay[0]", "pay[1]"}
    assert failure.tag == "pre_existing_low_balance"
    assert "balance at the check 100 could not cover" in failure.reason


def test_a_revoked_vendor_token_fails_the_check_and_the_jobs_never_start(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor, vendor_token="revoked-token")
    run = run_dag("preflight_gate_fail", GATES, {"need": "10", "costs": ["10", "10"]})

    assert run.states("preflight_check") == ["failed"]
    assert run.tries("preflight_check") == [1]
    assert run.states("plan") == ["upstream_failed"]
    assert set(run.states("pay")) <= {"upstream_failed"}
    assert vendor.spent["credits"] == Decimal(0)
    with pf.ledger() as ledger:
        assert ledger.show(run.batch_id).batch.verdict == "auth_failed"
