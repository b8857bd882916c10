"""Remote mode: the CLI against `preflight serve` gives local mode's output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, Run
from tests.http.conftest import api_settings
from tests.http_support import LiveServer, free_port, live_server

_VOLATILE = {"id", "snapshot_id", "snapshot_ids", "audit_run_id", "period_start"}

BULK = (
    '{"job_id": "j1", "status": "succeeded", "cost": "10"}\n'
    '{"job_id": "j2", "status": "failed", "http_status": 402, "cost": "10"}\n'
    '{"job_id": "j3", "status": "succeeded", "cost": 1e999}\n'
    '{"job_id": "j4", "status": "succeeded", "cost": "10"}\n'
)


def _stable(data: Any) -> Any:
    """JSON output without what differs between two databases: ids and times."""
    if isinstance(data, dict):
        return {
            key: "*" if key in _VOLATILE or key.endswith("_at") else _stable(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_stable(item) for item in data]
    return data


@pytest.fixture
def remote_server(tmp_path: Path, sandbox: SandboxServer) -> Iterator[LiveServer]:
    with live_server(api_settings(f"sqlite:///{tmp_path / 'server.db'}", sandbox)) as server:
        yield server


def _story(cli: Cli, env: dict[str, str]) -> list[tuple[str, int, Any]]:
    """The same commands in either mode: (what, exit code, stable JSON or stderr)."""

    def run(*args: str, stdin: str | None = None) -> Run:
        return cli(*args, env=env, stdin=stdin)

    steps: list[tuple[str, Run]] = [
        ("go", run("check", "go-1", "--need", "60", "--label", "team=a", "--format", "json")),
        ("insufficient", run("check", "big", "--need", "5000", "--format", "json")),
        ("first", run("check", "a1", "--need", "700", "--format", "json")),
        ("at_risk strict", run("check", "a2", "--need", "700", "--strict", "--format", "json")),
        ("bulk, bad line 3", run("record", "a1", "--from", "-", "--format", "json", stdin=BULK)),
        ("one", run("record", "a1", "j5", "--status", "succeeded", "--cost", "5")),
        ("conflict", run("record", "a1", "j5", "--status", "failed")),
        ("finish", run("finish", "a1", "--format", "json")),
        ("show", run("show", "a1", "--format", "json")),
        ("show text", run("show", "a1")),
        ("unknown batch", run("show", "nope", "--format", "json")),
        ("batches", run("batches", "--format", "json")),
        ("failures", run("failures", "--since", "1h", "--format", "json")),
        ("findings", run("findings", "--format", "json")),
    ]
    story: list[tuple[str, int, Any]] = []
    for what, result in steps:
        if result.code == 0 and result.out.startswith(("{", "[")):
            story.append((what, result.code, _stable(json.loads(result.out))))
        elif result.code == 0:
            story.append((what, result.code, len(result.out.splitlines())))
        else:
            story.append((what, result.code, result.err.strip()))
    return story


def test_remote_mode_prints_and_exits_as_local_mode(cli: Cli, remote_server: LiveServer) -> None:
    local = _story(cli, {})
    remote = _story(
        cli,
        {
            "PREFLIGHT_SERVER_URL": remote_server.url,
            "PREFLIGHT_SERVER_TOKEN": remote_server.token("cli"),
        },
    )
    codes = {what: code for what, code, _ in local}
    assert codes["go"] == 0
    assert codes["insufficient"] == 10
    assert codes["at_risk strict"] == 14
    assert codes["bulk, bad line 3"] == 2
    assert codes["conflict"] == 2
    assert codes["unknown batch"] == 2
    assert remote == local
    bulk = next(detail for what, _, detail in local if what == "bulk, bad line 3")
    assert "line 3" in bulk
    show = next(detail for what, _, detail in remote if what == "show")
    assert show["outcomes"]["total"] == 3  # j1, j2 before the bad line, then j5


def test_remote_mode_when_the_server_is_down(cli: Cli) -> None:
    env = {
        "PREFLIGHT_SERVER_URL": f"http://127.0.0.1:{free_port()}",
        "PREFLIGHT_SERVER_TOKEN": "pft_not-a-real-token",
        "PREFLIGHT_CONNECT_TIMEOUT": "2",
    }
    down = cli("check", "B", "--need", "1", "--format", "json", env=env)
    assert down.code == 13, down.err
    assert json.loads(down.out)["verdict"] == "unavailable"
    fail_open = cli("check", "B", "--need", "1", "--fail-open", "--format", "json", env=env)
    assert fail_open.code == 0, fail_open.err
    assert json.loads(fail_open.out)["fail_open"] is True
    for args in (("show", "B"), ("finish", "B"), ("batches",)):
        result = cli(*args, env=env)
        assert result.code == 3, (args, result.err)
        assert "unreachable" in result.err
        assert "pft_not-a-real-token" not in result.err
    bulk = cli("record", "B", "--from", "-", env=env, stdin=BULK)
    assert bulk.code == 3


def test_a_bad_server_token_is_a_settings_error(cli: Cli, remote_server: LiveServer) -> None:
    env = {"PREFLIGHT_SERVER_URL": remote_server.url, "PREFLIGHT_SERVER_TOKEN": "pft_wrong"}
    result = cli("batches", env=env)
    assert result.code == 2
    assert "PREFLIGHT_SERVER_TOKEN" in result.err
    missing = cli("batches", env={"PREFLIGHT_SERVER_URL": remote_server.url})
    assert missing.code == 2
    assert "PREFLIGHT_SERVER_TOKEN" in missing.err
