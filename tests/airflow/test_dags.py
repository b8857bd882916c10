"""DAGs run by ``dag.test()`` against the sandbox vendor, in local mode and through
``preflight serve``: the tasks' states, and preflight's own ledger of the batch."""

from __future__ import annotations

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
