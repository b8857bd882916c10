"""A DAG whose paid mapped task has the longest task id Airflow allows (250 characters):
``preflight_job`` records each of its jobs as ``task_id[map_index]``, which preflight's job
ids hold (up to 500 characters)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Final

import httpx
from airflow.sdk import DAG, get_current_context, task

from preflight.airflow import PreflightCheckOperator, PreflightFinishOperator, preflight_job

#: Airflow's longest task id (its task ids are at most 250 characters).
LONG_TASK_ID: Final = "pay_" + "x" * 246


@task
def plan() -> list[str]:
    """One job per cost in the run's conf."""
    costs: list[str] = get_current_context()["dag_run"].conf["costs"]
    return costs


@task(task_id=LONG_TASK_ID)
@preflight_job
def pay(cost: str) -> dict[str, Any]:
    """A paid job, charged by the sandbox vendor."""
    headers = {"Authorization": f"Bearer {os.environ.get('SANDBOX_TOKEN', '')}"}
    answer = httpx.post(
        f"{os.environ['SANDBOX_URL']}/api/open/v1/jobs", json={"cost": cost}, headers=headers
    )
    answer.raise_for_status()
    return {"cost": cost}


with DAG(
    dag_id="preflight_long_task_ids",
    schedule=None,
    start_date=datetime(2026, 12, 1),
    catchup=False,
    tags=["preflight-tests"],
) as dag:
    _check = PreflightCheckOperator(task_id="preflight_check", need="{{ dag_run.conf['need'] }}")
    _costs = plan()
    _check >> _costs
    pay.expand(cost=_costs) >> PreflightFinishOperator(task_id="preflight_finish")
