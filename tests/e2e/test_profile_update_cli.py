"""`preflight profile update --webhook-url`: validated here, then the vendor's POST profile."""

from __future__ import annotations

import json

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli

POST_PROFILE = "POST /api/open/v1/profile"


def test_an_https_url_is_sent_to_the_vendor(cli: Cli, sandbox: SandboxServer) -> None:
    run = cli("profile", "update", "--webhook-url", "https://example.com/hook", "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["webhook_url"] == "https://example.com/hook"
    assert sandbox.request_counts[POST_PROFILE] == 1


def test_an_http_url_is_refused_before_any_request(cli: Cli, sandbox: SandboxServer) -> None:
    run = cli("profile", "update", "--webhook-url", "http://example.com/hook")
    assert run.code == 2
    assert run.err.count("\n") == 1
    assert "must be an https URL" in run.err
    assert sandbox.request_counts[POST_PROFILE] == 0


def test_the_vendors_validation_error_is_one_clear_line(cli: Cli, sandbox: SandboxServer) -> None:
    # --allow-http passes our check; the sandbox, like the vendor, wants https: 422.
    run = cli("profile", "update", "--webhook-url", "http://localhost:9/hook", "--allow-http")
    assert run.code == 2
    assert run.err.count("\n") == 1
    assert "Traceback" not in run.err
    assert "HTTP 422" in run.err
    assert "webhookUrl must be an https URL" in run.err
    assert sandbox.request_counts[POST_PROFILE] == 1


def test_a_rejected_token_exits_11(cli: Cli, sandbox: SandboxServer) -> None:
    run = cli(
        "profile",
        "update",
        "--webhook-url",
        "https://example.com/hook",
        env={"PREFLIGHT_API_TOKEN": "wrong-token-123"},
    )
    assert run.code == 11
    assert run.err.count("\n") == 1
    assert "401" in run.err
    assert "wrong-token-123" not in run.err
