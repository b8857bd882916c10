"""DAGs of the Airflow tests: a preflight gate per ``on_insufficient``, paid mapped jobs, finish.

The jobs pay the vendor named by ``PREFLIGHT_VENDOR_URL`` in the task's environment (the
sandbox); the run's ``conf`` says what each job costs and, for the test of another
consumer, what the vendor loses to it right after the first job.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

import httpx
from airflow.sdk import DAG, get_current_context, task

from preflight.airflow import (
    PreflightCheckOperator,
    PreflightFinishOperator,
    PreflightQuotaRetryPolicy,
    preflight_job,
)


def _vendor() -> tuple[str, dict[str, str]]:
    token = os.environ.get("SANDBOX_TOKEN", "")
    return os.environ["SANDBOX_URL"], {"Authorization": f"Bearer {token}"}


@task
def plan() -> list[str]:
    """One job per cost in the run's conf."""
    costs: list[str] = get_current_context()["dag_run"].conf["costs"]
    return costs


@task(retries=1, retry_delay=timedelta(0), retry_policy=PreflightQuotaRetryPolicy(timedelta(0)))
@preflight_job(expected_cost=lambda cost: cost)
def pay(cost: str) -> dict[str, Any]:
    """A paid job: charged by the vendor, or its 402 raised as httpx.HTTPStatusError."""
    url, headers = _vendor()
    answer = httpx.post(f"{url}/api/open/v1/jobs", json={"cost": cost}, headers=headers)
    answer.raise_for_status()
    outside = get_current_context()["dag_run"].conf.get("outside_spend")
    first = httpx.get(f"{url}/_sandbox/state").json()["spent"]["credits"] == cost
    if outside and first:
        # Another consumer of the same account spends right after the first job paid
        # (whichever dag.test() ran first: it runs mapped tasks in no set order).
        spent = httpx.post(f"{url}/_sandbox/consume", json={"amount": outside})
        spent.raise_for_status()
    return {"cost": cost}


for _mode in ("fail", "skip", "wait"):
    with DAG(
        dag_id=f"preflight_gate_{_mode}",
        schedule=None,
        start_date=datetime(2026, 12, 1),
        catchup=False,
        tags=["preflight-tests"],
    ) as _dag:
        _check = PreflightCheckOperator(
            task_id="preflight_check",
            need="{{ dag_run.conf['need'] }}",
            on_insufficient=_mode,
            poll_interval=timedelta(seconds=1),
            wait_timeout=timedelta(minutes=2),
            deferrable=True,
        )
        _costs = plan()
        _check >> _costs
        pay.expand(cost=_costs) >> PreflightFinishOperator(task_id="preflight_finish")
    globals()[_dag.dag_id] = _dag
