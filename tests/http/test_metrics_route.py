"""GET /metrics: the metrics scope (or PREFLIGHT_METRICS_PUBLIC), Prometheus names."""

from __future__ import annotations

from pathlib import Path

import httpx

from preflight.sandbox import SandboxServer
from tests.http.conftest import api_settings
from tests.http_support import live_server


def test_metrics_need_the_metrics_scope_and_name_routes_not_batches(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    with live_server(api_settings(f"sqlite:///{tmp_path / 'm.db'}", sandbox)) as server:
        checker, reader = server.token("checker", "check"), server.token("reader", "read")
        scraper = server.token("scraper", "metrics")
        check = httpx.post(
            f"{server.url}/v1/batches/secret-batch-name/check",
            json={"need": "1"},
            headers={"Authorization": f"Bearer {checker}"},
        )
        assert check.status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        refused = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert refused.status_code == 403
        scraped = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {scraper}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert 'preflight_checks_total{verdict="go"}' in text
    assert 'route="/v1/batches/{batch_id:path}/check"' in text
    assert "preflight_http_request_seconds_bucket" in text
    assert "preflight_vendor_request_seconds_bucket" in text
    assert "secret-batch-name" not in text


def test_public_metrics_need_no_token(tmp_path: Path, sandbox: SandboxServer) -> None:
    settings = api_settings(
        f"sqlite:///{tmp_path / 'm.db'}", sandbox, PREFLIGHT_METRICS_PUBLIC="true"
    )
    with live_server(settings) as server:
        answer = httpx.get(f"{server.url}/metrics")
        assert answer.status_code == 200
        assert "preflight_http_requests_total" in answer.text
        assert httpx.get(f"{server.url}/v1/batches").status_code == 401
