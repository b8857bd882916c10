"""Fixtures of the orchestrator integrations' tests (Celery, Prefect, the recipes).

They run in their own virtual environment (``.ci/runners.sh``), where the orchestrators are
installed: ``tests/conftest.py`` leaves this directory out unless PREFLIGHT_TEST_RUNNERS is
set, and here a missing orchestrator is an import error, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from preflight.api import Preflight
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import Settings, load_settings
from tests.http_support import LiveServer, live_server
from tests.support import upgrade_schema


def preflight_settings(database_url: str, sandbox: SandboxServer) -> Settings:
    """Local mode against the sandbox vendor, with short vendor retries."""
    return load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
            "PREFLIGHT_DEADLINE": "5",
        }
    )


@pytest.fixture
def ledger(database_url: str, sandbox: SandboxServer) -> Iterator[Preflight]:
    """preflight in local mode on a fresh database (both dialects): what the tests read the
    ledger with, and the local mode's client."""
    upgrade_schema(database_url)
    with Preflight(preflight_settings(database_url, sandbox)) as client:
        yield client


@pytest.fixture
def server(ledger: Preflight, database_url: str, sandbox: SandboxServer) -> Iterator[LiveServer]:
    """``preflight serve`` on loopback, on the test's database, for remote mode."""
    with live_server(preflight_settings(database_url, sandbox)) as running:
        yield running


@pytest.fixture
def remote(server: LiveServer) -> Iterator[Preflight]:
    """The facade of ``server`` (remote mode), with a token that may check, record and read."""
    with Preflight.remote(server.url, server.token("runner", "check,record,read")) as client:
        yield client
