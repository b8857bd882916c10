"""End to end: a real uvicorn on loopback, on SQLite and PostgreSQL, the sandbox as vendor."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from preflight.logs import configure_logging
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.services.tokens import revoke_token
from tests.e2e.conftest import Cli
from tests.http.conftest import api_settings
from tests.http_support import LiveServer, live_server
from tests.support import upgrade_schema


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(60.0),
    )


# ---------------------------------------------------------------- the demo's story


@pytest.fixture
def sandbox_options() -> dict[str, Any]:
    return {"credits": Decimal(100), "quota": None}


def _story_over_http(api: httpx.Client, sandbox: SandboxServer) -> list[dict[str, Any]]:
    """preflight/demo.py's scenario, every verb through the HTTP API."""
    vendor = httpx.Client(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=5
    )

    def job(batch_id: str, number: int) -> bool:
        response = vendor.post("/api/open/v1/jobs", json={"cost": "10"})
        ok = response.status_code == 200
        outcome = {
            "job_id": f"job-{number:02d}",
            "status": "succeeded" if ok else "failed",
            "http_status": response.status_code,
            "expected_cost": "10",
            **({"cost": "10"} if ok else {}),
        }
        answer = api.post(f"/v1/batches/{batch_id}/outcomes", json=outcome)
        assert answer.status_code == 200, answer.text
        return ok

    with vendor:
        assert api.post("/v1/batches/demo-voiceover/check", json={"need": "150"}).json()[
            "verdict"
        ] == ("insufficient")
        assert api.post("/v1/batches/demo-subtitles/check", json={"need": "30"}).json()[
            "verdict"
        ] == ("go")
        spent = 0
        while job("demo-voiceover", spent + 1):
            spent += 1
        job("demo-subtitles", 1)
        for batch_id in ("demo-voiceover", "demo-subtitles"):
            assert api.post(f"/v1/batches/{batch_id}/finish").status_code == 200
    return [api.get(f"/v1/batches/{b}").json() for b in ("demo-voiceover", "demo-subtitles")]


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """What a post-mortem says, without ids and times."""
    evidence_keys = ("b0", "ba", "own", "expected_cost", "foreign")
    return {
        "batch": {k: report[k] for k in ("batch_id", "status", "verdict", "meter", "need")},
        "outcomes": report["outcomes"],
        "balances": [(s["kind"], s["balance"]) for s in report["snapshots"]],
        "failures": [
            {
                "job": (f["job_id"], f["attempt"], f["http_status"]),
                "tag": f["tag"],
                "evidence": {k: f["evidence"].get(k) for k in evidence_keys},
                "attribution": f["attribution"],
                "unattributed": f["unattributed"],
            }
            for f in report["quota_failures"]
        ],
        "overlapping": report["overlapping_batches"],
    }


def test_the_demo_story_over_http_tells_what_the_cli_demo_tells(
    server: LiveServer, sandbox: SandboxServer, cli: Cli
) -> None:
    with client(server, server.token("story")) as api:
        over_http = _story_over_http(api, sandbox)
    demo = cli("demo", "--format", "json")
    assert demo.code == 0, demo.err
    through_cli = json.loads(demo.out)["batches"]
    assert [_numbers(r) for r in over_http] == [_numbers(r) for r in through_cli]
    tags = [f["tag"] for r in over_http for f in r["quota_failures"]]
    assert tags == ["pre_existing_low_balance", "concurrent_consumption"]


# ---------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_sixteen_clients_post_a_thousand_outcomes_each_to_one_batch(server: LiveServer) -> None:
    token = server.token("writers", "check,record,read")
    statuses: list[int] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        lines = [
            {"job_id": f"w{number:02d}-{job:04d}", "status": "succeeded", "cost": "0.01"}
            for job in range(1000)
        ]
        with client(server, token) as api:
            for start in range(0, 1000, 250):
                body = "".join(json.dumps(line) + "\n" for line in lines[start : start + 250])
                answer = api.post(
                    "/v1/batches/shared/outcomes",
                    content=body.encode(),
                    headers={"Content-Type": "application/x-ndjson"},
                )
                with lock:
                    statuses.append(answer.status_code)
            # 5% sent again, as a JSON array: duplicates, not new rows.
            again = api.post("/v1/batches/shared/outcomes", json=lines[::20])
            with lock:
                statuses.append(again.status_code)
            assert again.json()["duplicates"] == 50

    with client(server, token) as api:
        assert api.post("/v1/batches/shared/check", json={"need": "1"}).status_code == 200
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(writer, range(16)))
    assert len(statuses) == 16 * 5
    assert set(statuses) == {200}
    with client(server, token) as api:
        report = api.get("/v1/batches/shared").json()
    assert report["outcomes"]["total"] == 16_000
    assert report["outcomes"]["cost"] == "160.00"


# ---------------------------------------------------------------- tokens


def test_a_token_without_the_record_scope_gets_403_and_stores_nothing(server: LiveServer) -> None:
    admin = server.token("admin")
    reader = server.token("reader", "check,read")
    with client(server, admin) as api:
        assert api.post("/v1/batches/B/check", json={"need": "1"}).status_code == 200
    with client(server, reader) as api:
        one = api.post("/v1/batches/B/outcomes", json={"job_id": "j", "status": "succeeded"})
        bulk = api.post(
            "/v1/batches/B/outcomes",
            content=b'{"job_id":"k","status":"succeeded"}\n',
            headers={"Content-Type": "application/x-ndjson"},
        )
        for answer in (one, bulk):
            assert answer.status_code == 403
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"] == "/problems/forbidden"
        assert api.get("/v1/batches/B").json()["outcomes"]["total"] == 0


def test_a_revoked_token_gets_401(server: LiveServer) -> None:
    token = server.token("soon-revoked", "read")
    with client(server, token) as api:
        assert api.get("/v1/batches").status_code == 200
        revoke_token(server.runtime, "soon-revoked")
        answer = api.get("/v1/batches")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["type"] == "/problems/unauthorized"
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/v1/batches").status_code == 401
        assert anonymous.get("/healthz").json() == {"status": "ok"}


# ---------------------------------------------------------------- secrets


VENDOR_SECRET = "vendor-secret-Qx7Lm2Zp9"


@pytest.mark.parametrize("sandbox_options", [{"token": VENDOR_SECRET}])
def test_no_token_in_any_response_log_line_or_column(
    database_url: str, sandbox: SandboxServer
) -> None:
    upgrade_schema(database_url)
    logs = io.StringIO()
    configure_logging("debug", "json", stream=logs)
    settings = api_settings(database_url, sandbox, PREFLIGHT_API_TOKEN=VENDOR_SECRET)
    seen: list[str] = []
    with live_server(settings) as server:
        token, weak = server.token("all"), server.token("weak", "read")
        with client(server, token) as api, client(server, weak) as weak_api:
            answers = [
                api.post("/v1/batches/S/check", json={"need": "5", "labels": {"k": "v"}}),
                api.post(
                    "/v1/batches/S/outcomes",
                    json={"job_id": "q", "status": "failed", "http_status": 402},
                ),
                api.post(
                    "/v1/batches/S/outcomes",
                    content=b'{"job_id":"r","status":"succeeded"}\nnot json\n',
                    headers={"Content-Type": "application/x-ndjson"},
                ),
                api.post("/v1/batches/S/finish"),
                api.get("/v1/batches/S"),
                api.get("/v1/failures"),
                api.get("/v1/accounts/default/profile"),
                api.post("/v1/audit", json={"force": True}),
                api.get("/v1/findings"),
                api.get("/readyz"),
                api.get("/metrics"),
                weak_api.post("/v1/batches/S/finish"),
                api.get("/v1/batches/S", headers={"Authorization": f"Bearer {token}x"}),
            ]
            seen += [a.text for a in answers] + [json.dumps(dict(a.headers)) for a in answers]
            assert [a.status_code for a in answers][-3:] == [200, 403, 401]
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            for table in sa.inspect(engine).get_table_names():
                rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).all()
                seen.append(f"{table}: {rows!r}")
    finally:
        engine.dispose()
    seen.append(logs.getvalue())
    everything = "\n".join(seen)
    assert "api_tokens" in everything
    assert "outcome_recorded" in everything
    for secret in (VENDOR_SECRET, token, weak):
        assert secret not in everything
