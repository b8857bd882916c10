"""`GET /v1/batches/{id}/report` and `GET /v1/accounts/{account}/report` serve the same
self-contained HTML as `preflight report`."""

from __future__ import annotations

import httpx

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import paid_job
from tests.http_support import LiveServer


def client(server: LiveServer) -> httpx.Client:
    token = server.token("reader", "read,check,record")
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_the_batch_and_account_reports_over_http(
    server: LiveServer, sandbox: SandboxServer
) -> None:
    with client(server) as http:
        assert http.post("/v1/batches/team/nightly-1/check", json={"need": "10"}).status_code == 200
        assert paid_job(sandbox, "4") == 200
        outcome = {"job_id": "j1", "status": "succeeded", "cost": "4"}
        assert http.post("/v1/batches/team/nightly-1/outcomes", json=outcome).status_code == 200

        batch = http.get("/v1/batches/team/nightly-1/report")
        assert batch.status_code == 200, batch.text
        assert batch.headers["content-type"].startswith("text/html")
        assert "team/nightly-1" in batch.text
        assert "<svg" in batch.text
        assert "<script" not in batch.text  # self-contained, nothing to run or fetch

        account = http.get("/v1/accounts/default/report", params={"since": "1d"})
        assert account.status_code == 200, account.text
        assert "<svg" in account.text

        missing = http.get("/v1/batches/no-such-batch/report")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        unknown = http.get("/v1/accounts/nobody/report")
        assert unknown.status_code == 404
