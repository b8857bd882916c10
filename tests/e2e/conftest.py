"""End-to-end: the real CLI in a subprocess against the real sandbox vendor over loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer


@dataclass
class Run:
    code: int
    out: str
    err: str


Cli = Callable[..., Run]


@pytest.fixture
def cli_env(sandbox: SandboxServer, tmp_path: Path) -> dict[str, str]:
    """Environment of a fresh user: the sandbox as vendor, SQLite under tmp XDG_DATA_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            # Keep retries fast: three attempts, tiny backoff, short deadline.
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
            "PREFLIGHT_DEADLINE": "5",
        }
    )
    return env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Cli:
    """Run ``preflight ARGS...``; keyword ``env`` adds variables, ``stdin`` feeds input.

    ``timeout`` bounds the run (``subprocess.TimeoutExpired`` fails the test): tests bound
    durations this way, never by asserting on a wall clock.
    """

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 60,
    ) -> Run:
        completed = subprocess.run(
            [sys.executable, "-m", "preflight", *args],
            env={**cli_env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)

    return run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cli_any_db(request: pytest.FixtureRequest, cli: Cli, cli_env: dict[str, str]) -> Cli:
    """The same CLI, once on the default SQLite file and once on a fresh PostgreSQL schema."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        cli_env["PREFLIGHT_DATABASE_URL"] = url
        upgraded = cli("db", "upgrade")
        assert upgraded.code == 0, upgraded.err
    return cli


def paid_job(sandbox: SandboxServer, cost: str) -> int:
    """Run one paid job on the sandbox vendor; its HTTP status (200, or 402 when short)."""
    response = httpx.post(
        f"{sandbox.url}/api/open/v1/jobs",
        json={"cost": cost},
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        timeout=5,
    )
    return response.status_code
