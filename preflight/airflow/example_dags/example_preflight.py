"""A paid batch behind a preflight gate (docs/airflow.md).

Check the balance before dispatch, waiting (deferred, no worker held) for a top-up while
it is short; run one paid job per document, each attempt recorded with preflight and a
402 retried only when others spent the money; finish the batch whatever became of the jobs.

The jobs call the vendor's job endpoint at the ``vendor_url`` param (the bundled sandbox
speaks that API: ``preflight simulate``); a real DAG calls its own paid API there.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

import httpx
from airflow.sdk import DAG, Param, get_current_context, task

from preflight.airflow import (
    PreflightCheckOperator,
    PreflightFinishOperator,
    PreflightQuotaRetryPolicy,
    preflight_job,
)

COST_PER_DOCUMENT = "40"

with DAG(
    dag_id="example_preflight",
    schedule=None,
    start_date=datetime(2026, 12, 1),
    catchup=False,
    tags=["preflight", "example"],
    params={
        "documents": Param(["a.pdf", "b.pdf", "c.pdf"], type="array"),
        "vendor_url": Param("http://127.0.0.1:8900", type="string"),
    },
) as dag:
    # Enough for every document: {{ params.documents | length }} jobs at 40 credits each.
    check = PreflightCheckOperator(
        task_id="preflight_check",
        need="{{ params.documents | length * 40 }}",
        on_insufficient="wait",
        wait_timeout=timedelta(hours=6),
        poll_interval=timedelta(minutes=5),
        deferrable=True,
    )

    @task
    def documents() -> list[str]:
        found: list[str] = get_current_context()["params"]["documents"]
        return found

    @task(
        retries=3,
        retry_delay=timedelta(minutes=1),
        retry_policy=PreflightQuotaRetryPolicy(concurrent_delay=timedelta(minutes=10)),
    )
    @preflight_job(expected_cost=COST_PER_DOCUMENT)
    def summarise(document: str) -> dict[str, Any]:
        """One paid call; a 402 is raised as httpx.HTTPStatusError and recorded as such."""
        vendor_url = get_current_context()["params"]["vendor_url"]
        token = os.environ.get("VENDOR_API_TOKEN", "")
        answer = httpx.post(
            f"{vendor_url}/api/open/v1/jobs",
            json={"cost": COST_PER_DOCUMENT, "document": document},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return {"cost": COST_PER_DOCUMENT, "document": document}

    finish = PreflightFinishOperator(task_id="preflight_finish")

    listed = documents()
    check >> listed
    summarise.expand(document=listed) >> finish
