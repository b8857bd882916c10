"""The Python API's batch context manager: check on enter, record inside, finish on exit."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from preflight.api import Preflight
from preflight.cli.exit_codes import exit_code_of
from preflight.errors import NoGoError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.support import upgrade_schema


@pytest.fixture
def sandbox_options() -> dict[str, Any]:
    return {"credits": Decimal(100), "quota": None}


@pytest.fixture
def app(database_url: str, sandbox: SandboxServer) -> Iterator[tuple[Preflight, SandboxServer]]:
    if database_url.startswith("postgresql"):
        upgrade_schema(database_url)
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        }
    )
    with Preflight(settings) as preflight:
        yield preflight, sandbox


def test_a_go_batch_runs_records_and_is_finished(app: tuple[Preflight, SandboxServer]) -> None:
    preflight, sandbox = app
    with preflight.batch("ctx-go", need="30") as run:
        assert run.check.verdict == "go"
        run.record("job-1", "succeeded", cost="10")
        sandbox.consume(Decimal(25), "credits")  # someone else spends
    shown = preflight.show("ctx-go").to_dict()
    assert shown["status"] == "finished"
    assert shown["outcomes"]["total"] == 1
    assert [s["kind"] for s in shown["snapshots"]] == ["preflight", "finish"]


def test_the_batch_is_finished_even_when_the_block_raises(
    app: tuple[Preflight, SandboxServer],
) -> None:
    preflight, _ = app
    with pytest.raises(RuntimeError, match="worker crashed"), preflight.batch("ctx-crash"):
        raise RuntimeError("worker crashed")
    assert preflight.show("ctx-crash").to_dict()["status"] == "finished"


def test_a_no_go_refuses_to_start_with_the_verdicts_exit_code(
    app: tuple[Preflight, SandboxServer],
) -> None:
    preflight, _ = app
    entered = False
    with pytest.raises(NoGoError) as refused, preflight.batch("ctx-short", need="500"):
        entered = True
    assert not entered
    assert refused.value.verdict == "insufficient"
    assert exit_code_of(refused.value) == 10
    assert preflight.show("ctx-short").to_dict()["status"] == "blocked"


def test_strict_refuses_at_risk(app: tuple[Preflight, SandboxServer]) -> None:
    preflight, _ = app
    preflight.check("ctx-other", need="80")
    with pytest.raises(NoGoError) as refused, preflight.batch("ctx-risky", need="50", strict=True):
        pass
    assert refused.value.verdict == "at_risk"
    assert exit_code_of(refused.value) == 14
