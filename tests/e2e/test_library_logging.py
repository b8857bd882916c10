"""The Python API is a library: it never prints to stdout, logs only at the configured level,
and configures no logging output of its own (issue: info lines landed in orchestrators' output)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from preflight.sandbox import SandboxServer

SCRIPT = """
from preflight import Preflight
with Preflight() as pf:
    result = pf.check("lib-batch", need="10")
    pf.record("lib-batch", {"job_id": "j1", "status": "succeeded", "cost": "1"})
    pf.finish("lib-batch")
print("orchestrator:", result.verdict.value)
"""


def run_script(env: dict[str, str], program: str = SCRIPT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("level", ["error", "info"])
def test_the_python_api_prints_nothing_on_stdout(cli_env: dict[str, str], level: str) -> None:
    run = run_script({**cli_env, "PREFLIGHT_LOG_LEVEL": level})
    assert run.returncode == 0, run.stderr
    assert run.stdout == "orchestrator: go\n"
    if level == "error":
        assert run.stderr == ""


def test_warnings_reach_stderr_without_any_set_up(
    cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    # An audit snapshot that fails is a warning; with no logging set up by the host,
    # Python's last-resort handler shows it on stderr, never on stdout.
    sandbox.inject({"status": 500, "count": -1})
    program = (
        "from preflight import Preflight\n"
        "with Preflight() as pf:\n"
        "    pf.audit()\n"
        "print('orchestrator: audited')\n"
    )
    run = run_script(cli_env, program)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "orchestrator: audited\n"
    assert "audit_snapshot_failed" in run.stderr
    assert "check_completed" not in run.stderr  # info stays below the default level


def test_a_host_that_configures_logging_gets_the_events(cli_env: dict[str, str]) -> None:
    program = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='HOST %(message)s')\n"
        "from preflight import Preflight\n"
        "with Preflight() as pf:\n"
        "    pf.check('lib-host', need='1')\n"
    )
    run = run_script({**cli_env, "PREFLIGHT_LOG_LEVEL": "info"}, program)
    assert run.returncode == 0, run.stderr
    assert "HOST check_completed" in run.stdout  # where the host asked for it
