"""Failures outside the happy path are still one line on stderr, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

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
