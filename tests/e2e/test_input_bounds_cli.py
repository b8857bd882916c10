"""Absurd input on the command line and in JSON Lines: one usage-error line (exit 2), never an
internal error, and in bulk every good line before the bad one kept (issue 10, items 5-7)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.e2e.test_record_cli import as_json, one_error_line, outcomes_of

pytestmark = pytest.mark.slow

RECORD = ("record", "b-bounds", "j1", "--no-snapshot")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            (*RECORD, "--status", "succeeded", "--cost", "1e999999999"),
            "cost: more than 40 digits before the point: '1e999999999'",
            id="cost-exponent",
        ),
        pytest.param(
            (*RECORD, "--status", "succeeded", "--cost", "1e100000"),
            "cost: more than 40 digits before the point",
            id="cost-1e100000",
        ),
        pytest.param(
            (*RECORD, "--status", "succeeded", "--expected-cost", "1" * 10_000),
            "expected_cost: not an amount of at most 40 digits",
            id="expected-cost-digits",
        ),
        pytest.param(
            ("check", "b-bounds", "--need", "1e999999999"),
            "need: more than 40 digits before the point: '1e999999999'",
            id="need",
        ),
        pytest.param(
            ("check", "b-bounds", "--need", "1", "--reserve", "1e-999999999"),
            "reserve: more than 20 digits after the point",
            id="reserve",
        ),
        pytest.param(
            (*RECORD, "--status", "failed", "--at", "0001-01-01T00:00:00+14:00"),
            "at: must be between 1970-01-01 and 9000-01-01 UTC",
            id="at-overflow",
        ),
        pytest.param(("failures", "--since", "9" * 30 + "d"), "--since", id="failures-since"),
        pytest.param(("batches", "--since", "99999999999999d"), "--since", id="batches-since"),
    ],
)
def test_absurd_arguments_are_one_usage_error_line(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    line = one_error_line(cli(*args))

    assert message in line
    assert "internal error" not in line
    # Messages name fields, never the command-line flags.
    assert "--cost" not in line
    assert "--need" not in line


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            '{"job_id": "j3", "status": "failed", "attempt": ' + "9" * 4301 + "}", id="int"
        ),
        pytest.param("[" * 30_000 + "]" * 30_000, id="nested"),
        pytest.param('{"job_id": "j3", "status": "succeeded", "cost": 1e999999999}', id="exp"),
    ],
)
def test_a_hostile_bulk_line_keeps_every_earlier_line(cli: Cli, bad: str) -> None:
    good = [{"job_id": f"j{n}", "status": "succeeded", "cost": "1"} for n in (1, 2)]
    after = {"job_id": "j4", "status": "succeeded", "cost": "1"}
    stdin = "".join(json.dumps(r) + "\n" for r in good) + bad + "\n" + json.dumps(after) + "\n"

    line = one_error_line(cli("record", "b-bulk", "--from", "-", stdin=stdin))

    assert line.startswith("preflight: error: line 3: ")
    totals = outcomes_of(cli, "b-bulk")
    assert (totals["total"], totals["cost"]) == (2, "2")


def test_a_negative_zero_cost_is_stored_as_zero(cli: Cli, cli_env: dict[str, str]) -> None:
    as_json(cli(*RECORD, "--status", "succeeded", "--cost", "-0", "--format", "json"))

    database = Path(cli_env["XDG_DATA_HOME"]) / "preflight" / "preflight.db"
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT cost FROM outcomes").fetchall() == [("0",)]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("tök-secret-1", id="non-ascii"),
        pytest.param("secret-1\nsecret-2", id="newline"),
        pytest.param("secret-1\r\n X-Injected: 1", id="header-injection"),
    ],
)
def test_a_malformed_token_is_a_settings_error_even_with_fail_open(cli: Cli, token: str) -> None:
    run = cli("check", "b-token", "--need", "1", "--fail-open", env={"PREFLIGHT_API_TOKEN": token})

    line = one_error_line(run)
    assert line.startswith("preflight: error: PREFLIGHT_API_TOKEN: a token must be printable ASCII")
    assert "secret" not in run.err + run.out
    assert "Injected" not in run.err + run.out
