"""The HTTP API's tests: an app on a fresh database with the sandbox as the vendor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import Settings, load_settings
from tests.e2e.conftest import cli, cli_env  # noqa: F401 - the CLI, for comparisons
from tests.http_support import LiveServer, live_server


def api_settings(database_url: str, sandbox: SandboxServer, **extra: str) -> Settings:
    return load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
            "PREFLIGHT_DEADLINE": "5",
            **extra,
        }
    )


@pytest.fixture
def server(database_url: str, sandbox: SandboxServer) -> Iterator[LiveServer]:
    """A real uvicorn serving the API on loopback, on SQLite and on PostgreSQL."""
    from tests.support import upgrade_schema

    upgrade_schema(database_url)
    with live_server(api_settings(database_url, sandbox)) as running:
        yield running
