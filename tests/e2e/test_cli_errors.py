"""Failures outside the happy path are still one line on stderr, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli


def test_simulate_on_a_busy_port_is_one_line_exit_2(cli: Cli) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = cli("simulate", "--port", str(port))
    assert run.code == 2
    assert run.err.strip().splitlines() == [
        f"preflight: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(see `preflight simulate --help`)"
    ]


def test_a_bug_before_settings_are_read_is_one_line_exit_1(cli_env: dict[str, str]) -> None:
    # A command that raises before configuring logging: structlog's defaults would print
    # the debug event with its traceback.
    program = (
        "import preflight.cli as c\n"
        "@c.cli.command()\n"
        "def boom():\n"
        "    raise RuntimeError('a bug')\n"
        "c.main(['boom'])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], env=cli_env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    # Nothing on stdout either: that is where orchestrators parse --format json.
    assert run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "preflight: error: internal error: RuntimeError: a bug "
        "(run with PREFLIGHT_LOG_LEVEL=debug for details)"
    ]


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        # SQLite alone says "unable to open database file": the path and the cause are ours.
        ("sqlite:////sys/x.db", 3, "cannot open the database file /sys/x.db: Permission denied"),
        (
            "sqlite:////etc/hostname/x.db",
            3,
            "cannot create the database directory /etc/hostname: File exists",
        ),
        # A bad URL is a bad setting: exit 2, as for every other setting.
        ("garbage", 2, "database_url: not a database URL"),
        ("mysql://db/x", 2, "database_url: unsupported database 'mysql'"),
    ],
)
def test_an_unusable_database_url_names_the_path_and_the_cause(
    cli: Cli, url: str, code: int, message: str
) -> None:
    run = cli("batches", env={"PREFLIGHT_DATABASE_URL": url})
    assert run.code == code
    assert run.err.startswith("preflight: error: ")
    assert message in run.err
    assert run.err.count("\n") == 1


def test_db_upgrade_needs_no_vendor_token(cli: Cli, tmp_path: Path) -> None:
    # The migration one-shot of docker-compose.yml mounts no token secret.
    missing = tmp_path / "no-such-secret"
    run = cli(
        "db", "upgrade", env={"PREFLIGHT_API_TOKEN": "", "PREFLIGHT_API_TOKEN_FILE": str(missing)}
    )
    assert run.code == 0, run.err
    assert "database schema at revision" in run.out
    # Commands that call the vendor still say what is wrong with the token file.
    check = cli(
        "check", "b", env={"PREFLIGHT_API_TOKEN": "", "PREFLIGHT_API_TOKEN_FILE": str(missing)}
    )
    assert check.code == 2
    assert "PREFLIGHT_API_TOKEN_FILE" in check.err
