"""A cold ``preflight check`` loads only what it uses (docs/performance.md, P2): on the
embedded SQLite file at the schema's head no SQLAlchemy, on PostgreSQL no ORM, never
prometheus_client (a one-shot command records no metrics), and at the default log level,
where a normal check logs nothing, no structlog."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import Cli

PROGRAM = (
    "import atexit, sys\n"
    "heavy = ('sqlalchemy', 'sqlalchemy.orm', 'structlog', 'alembic', 'prometheus_client')\n"
    "atexit.register(lambda: print('loaded:', *[m for m in heavy if m in sys.modules],"
    " file=sys.stderr))\n"
    "from preflight.cli import main\n"
    "main(sys.argv[1:])\n"
)


def _check(cli_env: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, "check", *args],
        env={**cli_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_cold_check_on_embedded_sqlite_loads_no_sqlalchemy_and_no_structlog(
    cli: Cli, cli_env: dict[str, str]
) -> None:
    assert cli("db", "upgrade").code == 0
    run = _check(cli_env, "cold", "--need", "1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("go: ")
    assert run.stderr == "loaded:\n"


def test_a_check_that_logs_at_its_level_sets_logging_up_then(
    cli: Cli, cli_env: dict[str, str]
) -> None:
    assert cli("db", "upgrade").code == 0
    run = _check(cli_env, "cold", "--need", "1", "--format", "json", PREFLIGHT_LOG_LEVEL="info")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert '"event": "check_completed"' in lines[0]
    assert lines[-1] == "loaded: structlog"


def test_a_check_of_a_database_to_upgrade_goes_through_the_engine(cli_env: dict[str, str]) -> None:
    # A new SQLite file upgrades itself through Alembic: the engine's path, as before.
    run = _check(cli_env, "fresh", "--need", "1")
    assert run.returncode == 0, run.stderr
    assert run.stderr == "loaded: sqlalchemy sqlalchemy.orm alembic\n"


def test_a_cold_check_on_postgresql_loads_no_sqlalchemy(
    cli: Cli, cli_env: dict[str, str], postgres_url: str
) -> None:
    cli_env["PREFLIGHT_DATABASE_URL"] = postgres_url
    assert cli("db", "upgrade").code == 0
    for batch_id in ("new", "new"):  # a new batch, then a recheck of it
        run = _check(cli_env, batch_id, "--need", "1")
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("go: ")
        assert run.stderr == "loaded:\n"


def test_a_cold_check_on_postgresql_not_at_head_goes_through_the_engine(
    cli_env: dict[str, str], postgres_url: str
) -> None:
    # A schema never upgraded: the engine's path says so, in its own words, as before.
    cli_env["PREFLIGHT_DATABASE_URL"] = postgres_url
    run = _check(cli_env, "new", "--need", "1")
    assert run.returncode == 3, run.stderr
    assert "preflight db upgrade" in run.stderr
    assert run.stderr.splitlines()[-1] == "loaded: sqlalchemy"


# ---------------------------------------------------------------- declared cold paths

_HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "structlog", "prometheus_client")
#: Modules a remote caller never needs: the database layer and the services that run verbs.
_LOCAL_ONLY = (
    "preflight.db",
    "preflight.services.runtime",
    "preflight.services.checks",
    "preflight.services.outcomes",
    "preflight.services.batches",
)
_UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers

#: Each entry point and what it may not load. (`preflight check` itself: the tests above,
#: on an SQLite file and on PostgreSQL.)
COLD_PATHS = {
    "import preflight": ("import preflight", (*_HEAVY, "httpx", "preflight.api")),
    # --help costs what click costs (docs/performance.md, P2): not even the settings.
    "preflight --help": (
        "from preflight.cli.main import cli\ncli.main(['--help'], standalone_mode=False)",
        (*_HEAVY, "httpx", "preflight.api", "preflight.settings", "preflight.contract", "json"),
    ),
    "import preflight.remote": ("import preflight.remote", (*_HEAVY, *_LOCAL_ONLY)),
    "Preflight.remote(...).check(...)": (
        "from preflight import Preflight\n"
        f"result = Preflight.remote({_UNREACHABLE!r}, 'pft_x').check('b', need='1')\n"
        "assert result.verdict == 'unavailable', result",
        (*_HEAVY, "preflight.db", "preflight.services.checks", "preflight.services.outcomes"),
    ),
    "AsyncPreflight.remote(...)": (
        "import asyncio\n"
        "from preflight import AsyncPreflight\n"
        "async def main():\n"
        f"    async with AsyncPreflight.remote({_UNREACHABLE!r}, 'pft_x') as pf:\n"
        "        return await pf.check('b', need='1')\n"
        "assert asyncio.run(main()).verdict == 'unavailable'",
        (*_HEAVY, *_LOCAL_ONLY),
    ),
}


@pytest.mark.parametrize("entry_point", list(COLD_PATHS))
def test_each_entry_point_loads_only_what_it_uses(
    entry_point: str, cli_env: dict[str, str]
) -> None:
    program, forbidden = COLD_PATHS[entry_point]
    probe = (
        "import atexit, sys\n"
        f"forbidden = {forbidden!r}\n"
        "atexit.register(lambda: print('loaded:', *[m for m in forbidden if m in sys.modules],"
        " file=sys.stderr))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe + program],
        env={**cli_env, "PREFLIGHT_CONNECT_TIMEOUT": "2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[-1] == "loaded:", run.stderr
