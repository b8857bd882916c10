"""Acceptance of `preflight check` (and `profile show`): the real CLI in a subprocess against
the real sandbox vendor over loopback.

Every verdict with its exit code, bounded retries (counted on the vendor's side), Retry-After,
the total deadline against a dripping body, schema drift, rechecks, usage errors in one line,
and the token that never reaches an output, a log line or the database.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest

from preflight.sandbox import SandboxServer

Cli = Callable[..., Any]

GET_PROFILE = "GET /api/open/v1/profile"


@dataclass
class Result:
    code: int
    out: str
    err: str


# ---------------------------------------------------------------- helpers


def _data(run: Any) -> dict[str, Any]:
    """The JSON document a command printed on stdout (exactly one)."""
    assert run.out.strip(), f"no output (exit {run.code}): {run.err}"
    data: dict[str, Any] = json.loads(run.out)
    return data


def _gets(sandbox: SandboxServer) -> int:
    return sandbox.request_counts[GET_PROFILE]


def _assert_one_line_error(run: Any) -> None:
    assert run.code == 2, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("preflight: error: "), run.err
    assert run.out == ""


def _events(stderr: str) -> list[dict[str, Any]]:
    """The structlog JSON events among the log lines on stderr."""
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def _sqlite_file(cli_env: dict[str, str]) -> Path:
    return Path(cli_env["XDG_DATA_HOME"]) / "preflight" / "preflight.db"


def _query(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    assert database.is_file(), f"no database at {database}"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return connection.execute(sql, params).fetchall()


def _run_parallel(
    env: dict[str, str], cases: Sequence[tuple[Sequence[str], dict[str, str]]]
) -> list[Result]:
    """Run several independent `preflight` commands at once (they cost ~0.5 s each)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "preflight", *args],
            env={**env, **extra},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, extra in cases
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        results.append(Result(process.returncode, out, err))
    return results


def _timed(cli: Cli, *args: str, env: dict[str, str] | None = None) -> tuple[Any, float]:
    started = time.monotonic()
    run = cli(*args, env=env)
    return run, time.monotonic() - started


# ---------------------------------------------------------------- verdicts (both databases)


def test_go_then_at_risk_exits_0_and_14_with_strict(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    first = cli_any_db("check", "other-batch", "--need", "1000", "--format", "json")

    assert first.code == 0, first.err
    data = _data(first)
    assert data["batch_id"] == "other-batch"
    assert data["verdict"] == "go"
    assert data["meter"] == "credits"
    assert data["balance"] == "1200"
    assert data["need"] == "1000"
    assert data["outstanding_other"] == "0"
    assert isinstance(data["snapshot_id"], int)
    assert data["snapshot_kind"] == "preflight"
    assert datetime.fromisoformat(data["checked_at"]).utcoffset() is not None
    assert data["status"] == "open"
    assert data["verified"] is True

    # 1200 covers 300, but not once other-batch takes the 1000 it still declares.
    run = cli_any_db("check", "mine", "--need", "300", "--format", "json")
    assert run.code == 0, run.err
    data = _data(run)
    assert data["verdict"] == "at_risk"
    assert data["balance"] == "1200"
    assert data["outstanding_other"] == "1000"
    assert data["status"] == "open"

    strict = cli_any_db("check", "mine", "--need", "300", "--strict", "--format", "json")
    assert strict.code == 14, strict.err
    data = _data(strict)
    assert data["verdict"] == "at_risk"
    assert data["snapshot_kind"] == "recheck"
    assert _gets(sandbox) == 3


def test_insufficient_auth_failed_and_billing_blocked(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    low = cli_any_db("check", "too-big", "--need", "5000", "--format", "json")
    assert low.code == 10, low.err
    data = _data(low)
    assert data["verdict"] == "insufficient"
    assert data["status"] == "blocked"
    assert (data["balance"], data["need"]) == ("1200", "5000")
    assert data["verified"] is True
    assert _gets(sandbox) == 1

    wrong = cli_any_db(
        "check", "b-auth", "--need", "1", "--format", "json", env={"PREFLIGHT_API_TOKEN": "wrong"}
    )
    assert wrong.code == 11, wrong.err
    data = _data(wrong)
    assert data["verdict"] == "auth_failed"
    assert data["status"] == "blocked"
    assert _gets(sandbox) == 2  # exactly one request: a 401 is never retried

    sandbox.inject({"status": 402})
    billing = cli_any_db("check", "b-402", "--need", "1", "--format", "json")
    assert billing.code == 12, billing.err
    data = _data(billing)
    assert data["verdict"] == "billing_blocked"
    assert data["status"] == "blocked"
    assert _gets(sandbox) == 3


def test_unavailable_after_the_configured_attempts_and_fail_open(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.inject({"status": 500, "count": -1})
    env = {"PREFLIGHT_ATTEMPTS": "3"}

    run = cli_any_db("check", "b-down", "--need", "1", "--format", "json", env=env)
    assert run.code == 13, run.err
    data = _data(run)
    assert data["verdict"] == "unavailable"
    assert data["status"] == "blocked"
    assert _gets(sandbox) == 3

    opened = cli_any_db(
        "check", "b-open", "--need", "1", "--fail-open", "--format", "json", env=env
    )
    assert opened.code == 0, opened.err
    data = _data(opened)
    assert data["verdict"] == "unavailable"
    assert data["verified"] is False
    assert data["status"] == "open"
    assert data["snapshot_id"] is None
    assert _gets(sandbox) == 6


# ---------------------------------------------------------------- retries and time


def test_two_500s_then_success_is_go_after_three_requests(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.inject({"status": 500, "count": 2})

    run = cli("check", "b-flaky", "--need", "1", "--format", "json")

    assert run.code == 0, run.err
    assert _data(run)["verdict"] == "go"
    assert _gets(sandbox) == 3


def test_retry_after_is_honoured(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.inject({"status": 503, "headers": {"Retry-After": "1"}})
    env = {"PREFLIGHT_LOG_LEVEL": "info", "PREFLIGHT_LOG_FORMAT": "json"}

    run, elapsed = _timed(cli, "check", "b-later", "--need", "1", "--format", "json", env=env)

    assert run.code == 0, run.err
    assert _data(run)["verdict"] == "go"
    assert _gets(sandbox) == 2
    assert elapsed >= 1.0
    # The wait happened between the retry decision and the answer, not in start-up time.
    events = {e["event"]: e for e in _events(run.err)}
    assert events["vendor_request_retry"]["delay"] == pytest.approx(1.0)
    waited = datetime.fromisoformat(events["check_completed"]["timestamp"]) - (
        datetime.fromisoformat(events["vendor_request_retry"]["timestamp"])
    )
    assert waited.total_seconds() >= 0.95


def test_retry_after_is_capped(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.inject({"status": 503, "headers": {"Retry-After": "3600"}})
    env = {
        "PREFLIGHT_RETRY_AFTER_MAX": "0.5",
        "PREFLIGHT_LOG_LEVEL": "info",
        "PREFLIGHT_LOG_FORMAT": "json",
    }

    run = cli("check", "b-capped", "--need", "1", "--format", "json", env=env)

    # Uncapped, the hour would pass the 5 s deadline and the check would give up at once.
    assert run.code == 0, run.err
    assert _data(run)["verdict"] == "go"
    assert _gets(sandbox) == 2
    # The wait the client chose, from its own log: no wall clock is asserted.
    events = {e["event"]: e for e in _events(run.err)}
    assert events["vendor_request_retry"]["delay"] == pytest.approx(0.5)


def test_a_dripping_body_is_cut_off_at_the_deadline(cli: Cli, sandbox: SandboxServer) -> None:
    # ~90 bytes at 0.5 s each would take 45 s; the per-read timeout never fires. The
    # process is killed (TimeoutExpired) if it outlives the 2 s deadline by more than 2.5 s.
    sandbox.inject({"kind": "drip", "interval": 0.5, "count": -1})

    run = cli(
        "check",
        "b-drip",
        "--need",
        "1",
        "--format",
        "json",
        env={"PREFLIGHT_DEADLINE": "2"},
        timeout=2 + 2.5,
    )

    assert run.code == 13, run.err
    assert _data(run)["verdict"] == "unavailable"
    assert "deadline of 2s exceeded" in _data(run)["reason"]


# ---------------------------------------------------------------- schema drift


def test_numeric_strings_keep_the_exact_balance(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal("1200.50"))
    sandbox.set_shape({"as_strings": True})

    run = cli("check", "b-strings", "--need", "10", "--format", "json")

    assert run.code == 0, run.err
    data = _data(run)
    assert data["verdict"] == "go"
    assert data["balance"] == "1200.50"


def test_auto_meter_falls_back_to_api_quota_remaining(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_shape({"drop": ["credits"]})

    run = cli("check", "b-legacy", "--need", "10", "--format", "json")

    assert run.code == 0, run.err
    data = _data(run)
    assert data["verdict"] == "go"
    assert data["meter"] == "api_quota_remaining"
    assert data["balance"] == "988000"


def test_a_requested_meter_that_is_absent_is_unavailable(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_shape({"drop": ["credits"]})

    run = cli("check", "b-nocredits", "--need", "10", "--meter", "credits", "--format", "json")

    assert run.code == 13, run.err
    assert _data(run)["verdict"] == "unavailable"


def test_unknown_nested_fields_are_kept_in_the_raw_snapshot(
    cli: Cli, cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    plan = {"name": "growth", "limits": {"rpm": 60, "burst": [1, 2]}}
    sandbox.set_shape({"extra": {"plan": plan}})

    run = cli("check", "b-drift", "--need", "10", "--format", "json")

    assert run.code == 0, run.err
    snapshot_id = _data(run)["snapshot_id"]
    [(raw,)] = _query(_sqlite_file(cli_env), "SELECT raw FROM snapshots WHERE id = ?", snapshot_id)
    stored = json.loads(raw)
    assert stored["plan"] == plan
    assert stored["credits"] == 1200


def test_an_html_body_is_unavailable(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.inject(
        {
            "kind": "malformed",
            "body": "<html><body>502 Bad Gateway</body></html>",
            "content_type": "text/html",
            "count": -1,
        }
    )

    run = cli("check", "b-html", "--need", "1", "--format", "json")

    assert run.code == 13, run.err
    assert _data(run)["verdict"] == "unavailable"
    assert "Traceback" not in run.err
    assert _gets(sandbox) == 3  # an unusable body is retried like a 5xx


# ---------------------------------------------------------------- rechecks


def test_a_recheck_keeps_the_first_snapshot_as_the_preflight_one(
    cli: Cli, cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    first = cli("check", "b-twice", "--need", "10", "--format", "json")
    assert first.code == 0, first.err
    sandbox.consume(Decimal("100"))
    second = cli("check", "b-twice", "--need", "10", "--format", "json")
    assert second.code == 0, second.err

    first_data, second_data = _data(first), _data(second)
    assert first_data["snapshot_kind"] == "preflight"
    assert second_data["snapshot_kind"] == "recheck"
    assert second_data["snapshot_id"] != first_data["snapshot_id"]
    assert second_data["balance"] == "1100"
    rows = _query(
        _sqlite_file(cli_env),
        "SELECT s.id, s.kind, s.credits FROM snapshots s JOIN batches b ON b.id = s.batch_pk "
        "WHERE b.batch_id = ? ORDER BY s.id",
        "b-twice",
    )
    assert rows == [
        (first_data["snapshot_id"], "preflight", "1200"),
        (second_data["snapshot_id"], "recheck", "1100"),
    ]


# ---------------------------------------------------------------- usage errors


# (name, arguments, extra environment): each must exit 2 with one line on stderr.
BAD_ARGUMENTS: list[tuple[str, list[str], dict[str, str]]] = [
    ("empty id", ["check", ""], {}),
    ("space in id", ["check", "has space"], {}),
    ("id of 501 chars", ["check", "x" * 501], {}),
    ("semicolon in id", ["check", "semi;colon"], {}),
    ("negative need", ["check", "ok", "--need", "-1"], {}),
    ("need not a number", ["check", "ok", "--need", "abc"], {}),
    ("need NaN", ["check", "ok", "--need", "NaN"], {}),
    ("negative reserve", ["check", "ok", "--need", "1", "--reserve", "-2"], {}),
    ("unknown meter", ["check", "ok", "--meter", "dollars"], {}),
    ("bad label", ["check", "ok", "--label", "novalue"], {}),
    ("attempts=zero", ["check", "ok", "--need", "1"], {"PREFLIGHT_ATTEMPTS": "zero"}),
    ("deadline=-1", ["check", "ok", "--need", "1"], {"PREFLIGHT_DEADLINE": "-1"}),
    ("fail_open=perhaps", ["check", "ok", "--need", "1"], {"PREFLIGHT_FAIL_OPEN": "perhaps"}),
    ("reserve env", ["check", "ok", "--need", "1"], {"PREFLIGHT_RESERVE": "-5"}),
    ("profile show, attempts", ["profile", "show"], {"PREFLIGHT_ATTEMPTS": "zero"}),
]


@pytest.mark.parametrize(
    ("arguments", "environ"),
    [pytest.param(args, env, id=name) for name, args, env in BAD_ARGUMENTS],
)
def test_bad_arguments_exit_2_with_one_line(
    arguments: list[str],
    environ: dict[str, str],
    cli_env: dict[str, str],
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In process (a subprocess each would cost 0.6 s): the same entry point as the script."""
    from preflight.cli import main

    for name, value in {**cli_env, **environ}.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        main(arguments)

    captured = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int), code
    _assert_one_line_error(Result(code, captured.out, captured.err))
    assert _gets(sandbox) == 0  # refused before spending a vendor call
    assert not _sqlite_file(cli_env).exists()  # ... and before storing anything


def test_bad_arguments_exit_2_with_one_line_from_a_real_process(
    cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    cases = [
        (["check", "semi;colon", "--need", "1"], {}),
        (["check", "ok", "--need", "NaN"], {}),
        (["check", "ok", "--need", "1"], {"PREFLIGHT_ATTEMPTS": "zero"}),
    ]

    for run in _run_parallel(cli_env, cases):
        _assert_one_line_error(run)
    assert _gets(sandbox) == 0


# ---------------------------------------------------------------- the token


def test_the_token_reaches_no_output_log_or_database(
    cli: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    token = f"tok-SECRET-{uuid.uuid4().hex}"
    with SandboxServer(token=token) as vendor:
        env = {
            "PREFLIGHT_VENDOR_URL": vendor.url,
            "PREFLIGHT_API_TOKEN": token,
            "PREFLIGHT_LOG_LEVEL": "debug",
            "PREFLIGHT_LOG_FORMAT": "json",
        }
        runs = {"go": cli("check", "t-go", "--need", "10", "--format", "json", env=env)}
        runs["profile"] = cli("profile", "show", "--format", "json", env=env)
        vendor.inject({"status": 401, "body": f'{{"error": "bad token {token}"}}'})
        runs["401"] = cli("check", "t-401", "--need", "1", "--format", "json", env=env)
        vendor.inject(
            {"status": 500, "count": -1, "body": f'{{"error": "boom", "echo": "Bearer {token}"}}'}
        )
        runs["500"] = cli("check", "t-500", "--need", "1", "--format", "json", env=env)

    codes = {name: run.code for name, run in runs.items()}
    assert codes == {"go": 0, "profile": 0, "401": 11, "500": 13}, runs
    for name, run in runs.items():
        assert token not in run.out, name
        assert token not in run.err, name
    # Debug logging was really on, so the absence above means something.
    events = [e["event"] for run in runs.values() for e in _events(run.err)]
    assert "check_completed" in events
    assert "vendor_request_retry" in events

    files = [path for path in Path(cli_env["XDG_DATA_HOME"]).rglob("*") if path.is_file()]
    assert _sqlite_file(cli_env) in files
    for path in files:  # preflight.db, and -wal / -shm when they are still there
        assert token.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------- profile show and --help


def test_profile_show_prints_the_meters_and_stores_a_manual_snapshot(
    cli: Cli, cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    run = cli("profile", "show", "--format", "json")

    assert run.code == 0, run.err
    data = _data(run)
    assert data["credits"] == "1200"
    assert data["api_quota_remaining"] == "988000"
    assert data["user_id"] == "user_123"
    assert json.loads(data["raw"])["credits"] == 1200
    rows = _query(
        _sqlite_file(cli_env),
        "SELECT id, kind, batch_pk, credits, api_quota_remaining FROM snapshots",
    )
    assert rows == [(data["snapshot_id"], "manual", None, "1200", "988000")]


@pytest.mark.parametrize(
    "sandbox_options", [{"vendor": "deepseek", "meters": {"usd": Decimal(500)}}]
)
def test_profile_show_of_an_account_blocked_in_a_200_is_exit_12_as_the_check(
    cli: Cli, cli_env: dict[str, str], sandbox: SandboxServer
) -> None:
    sandbox.set_shape({"extra": {"is_available": False}})  # whatever the balance
    deepseek = {"PREFLIGHT_VENDOR": "deepseek"}

    shown = cli("profile", "show", env=deepseek)
    checked = cli("check", "B", "--need", "10", "--format", "json", env=deepseek)

    assert (shown.code, checked.code) == (12, 12)
    assert _data(checked)["verdict"] == "billing_blocked"
    assert len(shown.err.strip().splitlines()) == 1
    assert "is_available: false" in shown.err
    assert "Traceback" not in shown.err
    # Both readings are kept, as the check keeps its own.
    kinds = _query(_sqlite_file(cli_env), "SELECT kind, batch_pk FROM snapshots ORDER BY id")
    assert [kind for kind, _ in kinds] == ["manual", "preflight"]


def _command_paths() -> list[list[str]]:
    from preflight.cli import cli as group

    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(group, [])
    return paths


def test_every_command_has_help(cli_env: dict[str, str]) -> None:
    paths = _command_paths()
    assert ["check"] in paths
    assert ["profile", "show"] in paths
    assert ["db", "upgrade"] in paths

    runs = _run_parallel(cli_env, [([*path, "--help"], {}) for path in paths])

    for path, run in zip(paths, runs, strict=True):
        shown = " ".join(["preflight", *path])
        assert run.code == 0, f"{shown} --help: {run.err}"
        assert run.out.startswith(f"Usage: {shown}"), f"{shown} --help: {run.out[:200]}"
        assert run.err == "", f"{shown} --help: {run.err}"
