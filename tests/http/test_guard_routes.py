"""``POST /v1/batches/{batch_id}/guard`` (scope ``check``) and remote mode's ``guard``, on
SQLite and PostgreSQL: the same answers as the Python API and the CLI on the same rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from preflight import AsyncPreflight
from preflight.api import Preflight
from preflight.domain.forecast import Decision
from preflight.errors import UsageError
from preflight.sandbox import SandboxServer
from preflight.settings import Settings
from tests.http.conftest import api_settings
from tests.http_support import LiveServer, live_server
from tests.integration.test_guard import EXAMPLE, run_cli, the_issues_example
from tests.support import Clock, upgrade_schema


@pytest.fixture
def settings(database_url: str, sandbox: SandboxServer) -> Settings:
    upgrade_schema(database_url)
    return api_settings(database_url, sandbox)


@pytest.fixture
def clocked_server(settings: Settings, clock: Clock) -> Iterator[LiveServer]:
    with live_server(settings, clock=clock) as running:
        yield running


def post_guard(server: LiveServer, token: str, batch: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/batches/{batch}/guard",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_http_remote_python_and_cli_agree(
    clocked_server: LiveServer,
    settings: Settings,
    sandbox: SandboxServer,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = clocked_server.token("orchestrator", "check")
    with Preflight(settings, clock=clock) as local:
        the_issues_example(local, sandbox, clock)
        with Preflight.remote(clocked_server.url, token, settings=settings) as remote:
            # The remote call takes the recheck; every call after reads it, 0 s old.
            answer = remote.guard("B")
            assert answer.decision is Decision.STOP
            assert answer.exit_code() == 15
            remote_data = answer.to_dict()
            assert {key: remote_data[key] for key in EXAMPLE} == EXAMPLE
            assert local.guard("B").to_dict() == remote_data
            assert remote.guard("B", max_age=timedelta(minutes=5)).to_dict() == remote_data
            with pytest.raises(UsageError, match="next_cost"):
                remote.guard("B", next_cost="-1")

    # The async client: the same answer (the recheck stored by then, 0 s old).
    async def guarded() -> dict[str, Any]:
        async with AsyncPreflight.remote(clocked_server.url, token, settings=settings) as pf:
            return (await pf.guard("B")).to_dict()

    assert asyncio.run(guarded()) == remote_data
    response = post_guard(clocked_server, token, "B", strict=True)
    assert response.status_code == 200
    assert response.json() == {**remote_data, "exit_code": 15}
    code, out, _ = run_cli(monkeypatch, capsys, settings, clock, "guard", "B", "--format", "json")
    assert (code, json.loads(out)) == (15, remote_data)
    # show's forecast over HTTP and remote mode: the guard's fields on the same snapshot.
    reader = clocked_server.token("reader", "read")
    shown = httpx.get(
        f"{clocked_server.url}/v1/batches/B",
        headers={"Authorization": f"Bearer {reader}"},
        timeout=10,
    ).json()["forecast"]
    assert {"batch_id": "B", **shown} == remote_data
    with Preflight.remote(clocked_server.url, reader, settings=settings) as remote:
        forecast = remote.show("B").forecast
        assert forecast is not None
        assert forecast.to_dict() == shown


def test_at_risk_strict_and_errors_over_http(
    clocked_server: LiveServer, settings: Settings, sandbox: SandboxServer, clock: Clock
) -> None:
    token = clocked_server.token("orchestrator", "check")
    sandbox.set_balance(credits=Decimal(150))
    with Preflight(settings, clock=clock) as local:
        local.check("O", need="100")
        local.check("B", need="100")
        local.check("N")
    at_risk = post_guard(clocked_server, token, "B")
    assert (at_risk.json()["decision"], at_risk.json()["exit_code"]) == ("at_risk", 0)
    assert post_guard(clocked_server, token, "B", strict=True).json()["exit_code"] == 14
    assert post_guard(clocked_server, token, "B", next_cost="151").json()["decision"] == "stop"
    assert post_guard(clocked_server, token, "B", max_age="0s").json()["decision"] == "at_risk"

    no_need = post_guard(clocked_server, token, "N")
    assert no_need.status_code == 400
    assert "next_cost" in no_need.json()["detail"]
    assert post_guard(clocked_server, token, "missing", next_cost="1").status_code == 404
    assert post_guard(clocked_server, token, "B", max_age="soon").status_code in (400, 422)
    reader = clocked_server.token("reader", "read")
    assert post_guard(clocked_server, reader, "B").status_code == 403


def test_need_from_history_over_http_and_remote(
    clocked_server: LiveServer, settings: Settings, sandbox: SandboxServer, clock: Clock
) -> None:
    from tests.integration.test_need_estimate import NIGHTLY, past_batch

    token = clocked_server.token("orchestrator", "check")
    sandbox.set_balance(credits=Decimal(10_000))
    with Preflight(settings, clock=clock) as local:
        past_batch(local, clock, "h1", NIGHTLY, ["1", "2", "2"])
        past_batch(local, clock, "h2", NIGHTLY, ["2", "3", "9"])
        expected = local.check(
            "local", jobs=10, estimate_from="kind=nightly", estimate="p50", min_history=6
        ).need_basis
    with Preflight.remote(clocked_server.url, token, settings=settings) as remote:
        result = remote.check(
            "remote", jobs=10, estimate_from="kind=nightly", estimate="p50", min_history=6
        )
        assert (result.need, result.need_basis) == (Decimal(20), expected)
        assert result.labels == {"kind": "nightly"}
        with pytest.raises(UsageError, match="6 succeeded job"):
            remote.check("too-little", jobs=10, estimate_from="kind=nightly")
    response = httpx.post(
        f"{clocked_server.url}/v1/batches/raw/check",
        json={"jobs": 10, "estimate_from": "kind=nightly", "estimate": "max", "min_history": 6},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert (response.status_code, response.json()["need"]) == (200, "90")
    assert response.json()["need_basis"]["sample_batches"] == 2
