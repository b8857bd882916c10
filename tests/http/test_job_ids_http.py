"""Orchestrators' job ids over the HTTP API, on SQLite and PostgreSQL: an Airflow mapped
task's ``task_id[map_index]`` and a 500-character id are recorded (one outcome, a JSON array,
JSON Lines, remote mode) and listed back whole; one more character is a problem+json 400
naming ``job_id``, as any bad outcome is; the OpenAPI document says the same bound (issue 20:
job ids)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from preflight.api import Preflight
from preflight.domain.outcome import JOB_ID_SCHEMA_PATTERN
from preflight.errors import UsageError
from tests.http_support import LiveServer

MAPPED_TASK = "t" * 250 + "[1023]"
LONGEST = "job/" + "é" * 246 + "[0]" + "j" * 247  # 500 characters, not all ASCII


def _http(server: LiveServer, name: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.token(name)}"}
    return httpx.Client(base_url=server.url, headers=headers)


def test_remote_mode_records_500_character_job_ids(server: LiveServer) -> None:
    assert len(LONGEST) == 500
    with Preflight.remote(server.url, server.token("orchestrator")) as pf:
        pf.check("B", need="10")
        recorded = pf.record("B", {"job_id": LONGEST, "status": "succeeded", "cost": "1"})
        assert (recorded.created, recorded.outcome.job_id) == (True, LONGEST)
        lines = [
            json.dumps({"job_id": MAPPED_TASK, "status": "succeeded", "cost": "1"}),
            json.dumps({"job_id": LONGEST, "attempt": 2, "status": "failed", "http_status": 402}),
        ]
        imported = pf.record_many("B", lines)
        assert (imported.inserted, imported.duplicates) == (2, 0)
        report = pf.show("B")
        failures = pf.failures()
    assert (report.outcomes.total, report.outcomes.cost) == (3, 2)
    assert [(f.job_id, f.attempt) for f in failures] == [(LONGEST, 2)]


def test_a_raw_body_takes_500_characters_and_refuses_501_naming_job_id(
    server: LiveServer,
) -> None:
    with _http(server, "raw") as http:
        assert http.post("/v1/batches/B/check", json={"need": "5"}).status_code == 200
        one = http.post("/v1/batches/B/outcomes", json={"job_id": LONGEST, "status": "failed"})
        assert one.status_code == 200, one.text
        assert one.json()["job_id"] == LONGEST
        array = http.post(
            "/v1/batches/B/outcomes", json=[{"job_id": MAPPED_TASK, "status": "succeeded"}]
        )
        assert (array.status_code, array.json()["inserted"]) == (200, 1)

        too_long = {"job_id": "j" * 501, "status": "succeeded"}
        refused = [
            http.post("/v1/batches/B/outcomes", json=too_long),
            http.post("/v1/batches/B/outcomes", json=[{**too_long, "job_id": "k"}, too_long]),
            http.post(
                "/v1/batches/B/outcomes",
                content=(json.dumps({"job_id": "k2", "status": "succeeded"}) + "\n")
                + json.dumps(too_long)
                + "\n",
                headers={"Content-Type": "application/x-ndjson"},
            ),
        ]
        for answer in refused:
            assert answer.status_code == 400, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            detail = answer.json()["detail"]
            assert "job_id: must be 1-500 printable characters" in detail
            assert "\n" not in detail
            assert "j" * 100 not in detail  # previewed, not echoed
        assert [a.json()["detail"].startswith("line 2: ") for a in refused[1:]] == [True, True]
        # The lines before the bad one are kept, as with any bad line.
        assert http.get("/v1/batches/B").json()["outcomes"]["total"] == 4


def test_remote_mode_refuses_501_characters_as_a_usage_error(server: LiveServer) -> None:
    with Preflight.remote(server.url, server.token("long")) as pf:
        pf.check("B", need="5")
        with pytest.raises(UsageError, match="job_id: must be 1-500 printable characters"):
            pf.record("B", {"job_id": "j" * 501, "status": "succeeded"})


def test_the_openapi_document_bounds_a_job_id_at_500(server: LiveServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    job_id = document["components"]["schemas"]["OutcomeIn"]["properties"]["job_id"]
    assert job_id["pattern"] == JOB_ID_SCHEMA_PATTERN
    assert re.fullmatch(job_id["pattern"], "j" * 500)
    assert not re.fullmatch(job_id["pattern"], "j" * 501)
