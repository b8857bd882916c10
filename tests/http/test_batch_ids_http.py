"""Orchestrators' batch ids over the HTTP API, on SQLite and PostgreSQL: an Airflow
``dag_id/run_id`` (``+``, ``:``) and a 500-character id work through remote mode and in a
raw path (``+`` as it is, or percent-encoded); one more character is a 422."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from preflight.api import Preflight
from preflight.errors import UsageError
from tests.http_support import LiveServer

AIRFLOW_ID = "my_dag/manual__2026-12-07T00:35:27.935842+00:00"
LONGEST = "d" * 250 + "/" + "scheduled__2026-12-07T00:00:00+00:00=@" + "r" * 211


@pytest.mark.parametrize("batch_id", [AIRFLOW_ID, LONGEST], ids=["airflow-run-id", "500-chars"])
def test_remote_mode_with_an_orchestrators_batch_id(server: LiveServer, batch_id: str) -> None:
    with Preflight.remote(server.url, server.token("orchestrator")) as pf:
        assert pf.check(batch_id, need="10").batch_id == batch_id
        pf.record(batch_id, {"job_id": "j1", "status": "succeeded", "cost": "1"})
        report = pf.show(batch_id)
    assert (report.batch.batch_id, report.outcomes.total) == (batch_id, 1)


def test_a_raw_path_takes_the_plus_as_it_is_or_encoded(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {server.token('raw')}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        checked = http.post(f"/v1/batches/{AIRFLOW_ID}/check", json={"need": "5"})
        assert checked.status_code == 200, checked.text
        assert checked.json()["batch_id"] == AIRFLOW_ID
        shown = http.get(f"/v1/batches/{quote(AIRFLOW_ID, safe='')}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["batch_id"] == AIRFLOW_ID


def test_501_characters_are_refused(server: LiveServer) -> None:
    token = server.token("long")
    too_long = "x" * 501
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        answer = http.post(f"/v1/batches/{too_long}/check", json={"need": "5"})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    with Preflight.remote(server.url, token) as pf, pytest.raises(UsageError):
        pf.check(too_long, need="5")
