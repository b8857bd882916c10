"""``preflight guard`` and ``check --estimate-from`` as a user runs them: the real CLI in a
subprocess against the sandbox vendor over loopback, on SQLite and PostgreSQL. Times are the
machine's here, so the exact minute figures are held by tests/integration/test_guard.py
(injected clock); this holds the decisions, amounts, exit codes and one-line errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, paid_job
from tests.e2e.test_postmortem_cli import ok, succeeded

pytestmark = pytest.mark.slow

FIELDS = [
    "batch_id",
    "decision",
    "reason",
    "balance",
    "remaining_need",
    "outstanding_other",
    "affordable_jobs",
    "own_burn_per_minute",
    "foreign_burn_per_minute",
    "minutes_to_empty",
    "minutes_to_finish",
    "runs_out_first",
    "snapshot_id",
    "snapshot_age_seconds",
]


def test_guard_stops_a_batch_that_others_drained(cli_any_db: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal(200))
    ok(cli_any_db("check", "B", "--need", "100"))
    assert [paid_job(sandbox, "10") for _ in range(4)] == [200] * 4
    ok(
        cli_any_db(
            "record", "B", "--from", "-", stdin=succeeded(*((f"j{n}", "10") for n in range(4)))
        )
    )
    sandbox.consume(Decimal(120), "credits")  # a consumer nobody recorded

    run = cli_any_db("guard", "B", "--max-age", "0s", "--format", "json")
    assert run.code == 15, run.err
    data = json.loads(run.out)
    assert list(data) == FIELDS
    assert (data["decision"], data["balance"], data["remaining_need"]) == ("stop", "40", "60")
    assert (data["affordable_jobs"], data["runs_out_first"]) == (4, True)
    assert data["snapshot_age_seconds"] == 0
    # Burns over the seconds since the check: foreign three times own, exactly.
    own, foreign = Decimal(data["own_burn_per_minute"]), Decimal(data["foreign_burn_per_minute"])
    assert own > 0
    assert abs(foreign - 3 * own) <= Decimal("0.000003")

    fresh = cli_any_db("guard", "B", "--format", "json", "--next-cost", "1")
    assert (fresh.code, json.loads(fresh.out)["snapshot_id"]) == (15, data["snapshot_id"])  # reused

    sandbox.set_balance(credits=Decimal(1000))
    resumed = cli_any_db("guard", "B", "--max-age", "0s")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("continue: balance 1000 covers the remaining need 60")


def test_guard_usage_errors_are_one_line(cli_any_db: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal(100))
    ok(cli_any_db("check", "no-need"))
    for args, words in [
        (("guard", "no-need"), "next_cost"),
        (("guard", "missing", "--next-cost", "1"), "missing"),
        (("guard", "no-need", "--next-cost", "-3"), "next_cost"),
        (("guard", "no-need", "--next-cost", "1", "--max-age", "later"), "--max-age"),
        (("check", "x", "--jobs", "3", "--estimate-from", "kind=none"), "0 succeeded job(s)"),
        (("check", "x", "--jobs", "3", "--need", "5", "--estimate-from", "k=v"), "need"),
    ]:
        run = cli_any_db(*args)
        assert run.code == 2, (args, run.err)
        assert words in run.err, (args, run.err)
        assert "Traceback" not in run.err
        assert len(run.err.strip().splitlines()) == 1, run.err
    assert cli_any_db("guard", "no-need", "--next-cost", "100").code == 0
    assert cli_any_db("guard", "no-need", "--next-cost", "100.01").code == 15
