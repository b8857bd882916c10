"""The post-mortem numbers are exact, end to end through the CLI against the sandbox, on
SQLite and PostgreSQL: a quota failure consumed nothing (a cost declared on it is its
expected cost), the live failure snapshot measures the failure, a failure before the check
is inconclusive, and the batch lifecycle (never checked, finished, finished again) is honest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, paid_job
from tests.e2e.test_postmortem_cli import (
    as_json,
    check,
    ok,
    only_failure,
    record_quota_failure,
    show,
    succeeded,
)

pytestmark = pytest.mark.slow


def finish(cli: Cli, batch: str) -> dict[str, Any]:
    data: dict[str, Any] = as_json(cli("finish", batch, "--format", "json"))
    return data


def test_a_402_declaring_its_cost_consumed_nothing(cli_any_db: Cli, sandbox: SandboxServer) -> None:
    # Example 1: 1000 at the check; two jobs of 100; others spend 750 unrecorded; the
    # 402 is recorded with cost 100, as workers that price every outcome line do.
    sandbox.set_balance(credits=Decimal("1000"))
    assert check(cli_any_db, "B", "300")["verdict"] == "go"
    assert [paid_job(sandbox, "100") for _ in range(2)] == [200, 200]
    ok(cli_any_db("record", "B", "--from", "-", stdin=succeeded(("j1", "100"), ("j2", "100"))))
    sandbox.consume(Decimal("750"), "credits")
    assert paid_job(sandbox, "100") == 402
    live = record_quota_failure(cli_any_db, "B", "j3", "--cost", "100")
    assert live["tag"] == "concurrent_consumption"

    data = show(cli_any_db, "B")
    assert data["outcomes"]["cost"] == "200"
    failure = only_failure(data)
    evidence = failure["evidence"]
    assert (evidence["b0"], evidence["ba"], evidence["own"]) == ("1000", "50", "200")
    assert (evidence["expected_cost"], evidence["expected_cost_source"]) == ("100", "declared")
    assert evidence["foreign"] == "750"
    assert (failure["attribution"], failure["unattributed"]) == ([], "750")
    assert failure["classifier_version"] == "3"
    listed = as_json(cli_any_db("batches", "--format", "json"))
    assert [b["outcomes"]["cost"] for b in listed if b["batch_id"] == "B"] == ["200"]

    # Both given and different: a usage error, and nothing stored.
    clash = cli_any_db(
        "record", "B", "j4", "--status", "failed", "--http-status", "402",
        "--cost", "100", "--expected-cost", "90",
    )  # fmt: skip
    assert clash.code == 2
    assert "expected_cost" in clash.err
    assert "Traceback" not in clash.err
    assert show(cli_any_db, "B")["outcomes"]["total"] == 3


def test_finish_counts_consumed_cost_only(cli_any_db: Cli, sandbox: SandboxServer) -> None:
    # Example 3 (finish): own jobs 250, a 402 declaring 80, others 320: truth 250 / 320.
    sandbox.set_balance(credits=Decimal("1000"))
    check(cli_any_db, "B", "400")
    assert [paid_job(sandbox, "50") for _ in range(5)] == [200] * 5
    lines = succeeded(*((f"j{n}", "50") for n in range(5)))
    lines += json.dumps({"job_id": "j5", "status": "failed", "http_status": 402, "cost": "80"})
    ok(cli_any_db("record", "B", "--from", "-", stdin=lines + "\n"))
    sandbox.consume(Decimal("320"), "credits")

    finished = finish(cli_any_db, "B")
    assert (finished["own_cost"], finished["foreign_consumption"]) == ("250", "320")
    assert (finished["preflight_balance"], finished["finish_balance"]) == ("1000", "430")
    assert finished["balance_drop"] == "570"


def test_the_audit_counts_no_402_cost_as_recorded_spend(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    # Example 3 (audit): 700 goes unrecorded while a 402 declares 300.
    assert cli_any_db("audit").code == 0
    check(cli_any_db, "B", "100")
    sandbox.consume(Decimal("700"), "credits")
    record_quota_failure(cli_any_db, "B", "j1", "--cost", "300", "--no-snapshot")
    forced = cli_any_db("audit", "--force", "--format", "json")
    assert forced.code == 0, forced.err
    [run] = json.loads(forced.out)
    amounts = [f["amount"] for f in run["findings"] if f["kind"] == "unexplained_consumption"]
    assert amounts == ["700"]


def test_the_live_failure_snapshot_measures_the_failure(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    # Example 4: check; Y spends 58.378 (recorded); a manual snapshot; an unrecorded
    # consumer spends 266.264; the 402 is recorded live.
    sandbox.set_balance(credits=Decimal("400"))
    check(cli_any_db, "B", "100")
    check(cli_any_db, "Y", "100")
    assert paid_job(sandbox, "58.378") == 200
    ok(cli_any_db("record", "Y", "--from", "-", stdin=succeeded(("y1", "58.378"))))
    ok(cli_any_db("profile", "show"))
    sandbox.consume(Decimal("266.264"), "credits")
    assert paid_job(sandbox, "100") == 402
    record_quota_failure(cli_any_db, "B", "j1", "--expected-cost", "100")

    failure = only_failure(show(cli_any_db, "B"))
    evidence = failure["evidence"]
    assert failure["tag"] == "concurrent_consumption"
    assert (evidence["b0"], evidence["ba"], evidence["own"]) == ("400", "75.358", "0")
    assert evidence["foreign"] == "324.642"
    assert evidence["foreign_before_failure"] == "58.378"
    assert evidence["before_failure"] is False
    assert failure["attribution"] == [{"batch_id": "Y", "cost": "58.378"}]
    assert failure["unattributed"] == "266.264"


def test_a_failure_before_the_check_is_inconclusive(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    # Example 5: a 402 stamped ten minutes before the batch's check.
    check(cli_any_db, "B", "100")
    sandbox.consume(Decimal("1150"), "credits")
    before = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    recorded = record_quota_failure(cli_any_db, "B", "j1", "--at", before)
    assert recorded["tag"] == "inconclusive"
    failure = only_failure(show(cli_any_db, "B"))
    assert failure["reason"] == "the failure happened before the batch was checked"


def test_lifecycle_never_checked_late_and_finished_twice(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    # Example 7. A typo'd batch id: stored, exit 0, and a warning on stderr.
    typo = cli_any_db("record", "nightyl", "j1", "--status", "succeeded", "--cost", "1")
    assert typo.code == 0, typo.err
    assert "batch 'nightyl' was never checked" in typo.err

    sandbox.set_balance(credits=Decimal("100"))
    check(cli_any_db, "B", "10")
    assert paid_job(sandbox, "7") == 200
    ok(cli_any_db("record", "B", "j1", "--status", "succeeded", "--cost", "7"))
    first = finish(cli_any_db, "B")
    sandbox.topup(Decimal("893"))  # the account is topped up after the batch
    snapshots = len(show(cli_any_db, "B")["snapshots"])

    again = cli_any_db("finish", "B", "--format", "json")
    assert again.code == 0, again.err
    second = json.loads(again.out)
    numbers = ("finished_at", "own_cost", "preflight_balance", "finish_balance", "balance_drop")
    assert {k: second[k] for k in numbers} == {k: first[k] for k in numbers}
    assert (second["finish_balance"], second["balance_drop"]) == ("93", "7")
    assert second["already_finished"] is True
    assert len(show(cli_any_db, "B")["snapshots"]) == snapshots  # no new snapshot
    text = ok(cli_any_db("finish", "B")).out
    assert "balance 100 -> 93 (drop 7)" in text

    late = cli_any_db("record", "B", "j2", "--status", "succeeded", "--cost", "3")
    assert late.code == 0, late.err
    assert "batch 'B' is finished" in late.err
    data = show(cli_any_db, "B")
    assert data["outcomes"]["late"] == 1
    assert [(o["job_id"], o["status"]) for o in data["late_outcomes"]] == [("j2", "succeeded")]
    assert "late: job j2" in ok(cli_any_db("show", "B")).out
    # The first finish's numbers still stand: the late outcome is not counted in them.
    assert finish(cli_any_db, "B")["own_cost"] == "7"
