"""What a newcomer meets at a terminal: progress on long imports, colour for people only,
one line per finding, the commands' hints that work, and numbers said the same way twice."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def on_a_terminal(args: list[str], env: dict[str, str], stdin: bytes = b"") -> str:
    """Run preflight with stdout and stderr on one pseudo-terminal; all it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "preflight", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=60)
    os.close(leader)
    return shown.decode("utf-8", "replace")


def test_a_bulk_import_shows_progress_on_a_terminal_only(cli: Cli, cli_env: dict[str, str]) -> None:
    lines = "".join(
        json.dumps({"job_id": f"j{n}", "status": "succeeded", "cost": "1"}) + "\n"
        for n in range(3000)
    )
    shown = on_a_terminal(["record", "bulk", "--from", "-"], cli_env, lines.encode())
    assert "lines/s" in shown
    assert "3000 lines, 3000 recorded" in shown

    piped = cli("record", "bulk2", "--from", "-", stdin=lines)
    assert piped.code == 0
    assert "lines/s" not in piped.err  # a pipe or a file gets no progress line


def test_a_bad_line_says_how_many_lines_were_kept(cli: Cli) -> None:
    lines = [{"job_id": f"j{n}", "status": "succeeded"} for n in range(4)]
    text = "".join(json.dumps(line) + "\n" for line in lines) + "{broken\n"
    run = cli("record", "b", "--from", "-", stdin=text)
    assert run.code == 2
    assert "line 5: " in run.err
    assert "the 4 outcome(s) before it are kept: 4 recorded" in run.err


def test_colour_for_a_terminal_never_for_a_pipe_or_no_color(
    cli: Cli, cli_env: dict[str, str]
) -> None:
    shown = on_a_terminal(["check", "coloured", "--need", "1"], cli_env)
    assert "\x1b[32m\x1b[1mgo\x1b[0m: balance" in shown  # green, bold
    plain = on_a_terminal(["check", "plain", "--need", "1"], {**cli_env, "NO_COLOR": "1"})
    assert not ANSI.search(plain)
    piped = cli("check", "piped", "--need", "1")
    assert piped.out.startswith("go: balance")
    assert not ANSI.search(piped.out)


def test_an_audit_on_a_terminal_shows_each_finding_once(
    cli: Cli, cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    assert cli("audit").code == 0
    sandbox.consume(Decimal("12.5"), "credits")
    shown = on_a_terminal(["audit", "--force"], cli_env)
    assert shown.count("unexplained_consumption") == 1, shown


def test_batches_filters_by_account(cli: Cli, cli_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "accounts.toml"
    config.write_text('[accounts.team-b]\ntoken_env = "TEAM_B_TOKEN"\n')
    env = {"PREFLIGHT_CONFIG": str(config), "TEAM_B_TOKEN": cli_env["PREFLIGHT_API_TOKEN"]}
    assert cli("check", "mine", "--need", "1", env=env).code == 0
    assert cli("check", "theirs", "--need", "1", "--account", "team-b", env=env).code == 0
    listed = cli("batches", "--account", "team-b", "--format", "json", env=env)
    assert listed.code == 0, listed.err
    assert [b["batch_id"] for b in json.loads(listed.out)] == ["theirs"]


def test_the_need_is_said_the_same_way_in_every_line(cli: Cli) -> None:
    undeclared = cli("check", "no-need")
    assert undeclared.code == 0
    assert "covers need 0 + reserve 0" in undeclared.out
    assert "need 0 (none declared)" in undeclared.out
    assert "need -" not in undeclared.out

    big = "9" * 39
    declared = cli("check", "big-need", "--need", f"{big}")
    assert declared.code == 10
    assert declared.out.count(big) == 2  # the reason and the summary line, same digits
    assert "E+" not in declared.out


def test_the_demos_closing_hint_runs_as_printed(cli: Cli, tmp_path: Path) -> None:
    run = cli("demo", "--database-url", f"sqlite:///{tmp_path / 'demo.db'}")
    assert run.code == 0, run.err
    [hint] = [line for line in run.out.splitlines() if line.startswith("explore: ")]
    setting, program, *rest = hint.removeprefix("explore: ").split()
    assert program == "preflight" or Path(program).is_file() or program == sys.executable
    runnable = shutil.which(program) or program
    env = dict(os.environ, **dict([setting.split("=", 1)]))
    shown = subprocess.run([runnable, *rest], env=env, capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "demo-voiceover" in shown.stdout


@pytest.mark.parametrize("credits_", ["1200", "none"])
def test_simulate_says_the_balance_it_starts_with(credits_: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "preflight", "simulate", "--port", "0", "--credits", credits_],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stdout is not None
            first, second = process.stdout.readline(), process.stdout.readline()
        finally:
            process.terminate()
            process.communicate(timeout=10)
    assert first.startswith("sandbox vendor listening on http://127.0.0.1:")
    expected = "credits 1200" if credits_ == "1200" else "credits absent"
    assert second == f"starting balance: {expected}, api_quota_remaining 988000\n"
