"""Post-mortems end to end: the real CLI against the sandbox vendor over loopback, on SQLite
and PostgreSQL. Each case runs real paid jobs (or an unrecorded spender) on the sandbox,
records outcomes, and reads the tag and its evidence back from ``show --format json``.

design.md, "Classifying a quota failure": b0 at the check, ba at the evidence snapshot,
own(t0, tf], c the failed job's expected cost, F = foreign consumption, attributed to other
recorded batches with the unattributed rest.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, Run, paid_job

pytestmark = pytest.mark.slow

JOBS = "/api/open/v1/jobs"


def ok(run: Run) -> Run:
    assert run.code == 0, run.err
    return run


def as_json(run: Run) -> Any:
    return json.loads(ok(run).out)


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def succeeded(*jobs: tuple[str, str]) -> str:
    return jsonl(*({"job_id": job, "status": "succeeded", "cost": cost} for job, cost in jobs))


def check(cli: Cli, batch: str, need: str, *, code: int = 0) -> dict[str, Any]:
    run = cli("check", batch, "--need", need, "--format", "json")
    assert run.code == code, run.err
    data: dict[str, Any] = json.loads(run.out)
    return data


def record_quota_failure(cli: Cli, batch: str, job: str, *extra: str) -> dict[str, Any]:
    """A 402 recorded live (as a worker would, right after the vendor refused the job)."""
    data: dict[str, Any] = as_json(
        cli(
            "record",
            batch,
            job,
            "--status",
            "failed",
            "--http-status",
            "402",
            *extra,
            "--format",
            "json",
        )
    )
    assert data["created"] is True
    assert data["quota_failure"] is True
    return data


def show(cli: Cli, batch: str) -> dict[str, Any]:
    data: dict[str, Any] = as_json(cli("show", batch, "--format", "json"))
    return data


def only_failure(data: dict[str, Any]) -> dict[str, Any]:
    assert len(data["quota_failures"]) == 1, data["quota_failures"]
    failure: dict[str, Any] = data["quota_failures"][0]
    return failure


def snapshot_ids(data: dict[str, Any], kind: str) -> list[int]:
    return [s["id"] for s in data["snapshots"] if s["kind"] == kind]


def test_own_jobs_alone_exhaust_the_balance(cli_any_db: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal("20"))
    checked = check(cli_any_db, "B", "50", code=10)
    assert checked["verdict"] == "insufficient"
    assert [paid_job(sandbox, "5") for _ in range(4)] == [200] * 4
    ok(
        cli_any_db(
            "record", "B", "--from", "-", stdin=succeeded(*((f"j{n}", "5") for n in range(4)))
        )
    )
    assert paid_job(sandbox, "5") == 402

    live = record_quota_failure(cli_any_db, "B", "j4")
    assert live["tag"] == "pre_existing_low_balance"

    data = show(cli_any_db, "B")
    assert (data["status"], data["verdict"], data["meter"], data["need"]) == (
        "blocked",
        "insufficient",
        "credits",
        "50",
    )
    assert [(s["kind"], s["balance"]) for s in data["snapshots"]] == [
        ("preflight", "20"),
        ("failure", "0"),
    ]
    assert {k: data["outcomes"][k] for k in ("total", "succeeded", "failed", "cost")} == {
        "total": 5,
        "succeeded": 4,
        "failed": 1,
        "cost": "20",
    }
    failure = only_failure(data)
    assert (failure["job_id"], failure["attempt"], failure["tag"]) == (
        "j4",
        1,
        "pre_existing_low_balance",
    )
    evidence = failure["evidence"]
    # b0 = 20 < own 20 + c 5 (the mean cost of the batch's succeeded jobs).
    assert (evidence["b0"], evidence["own"], evidence["expected_cost"]) == ("20", "20", "5")
    assert (evidence["ba"], evidence["foreign"]) == ("0", "0")
    assert evidence["snapshot_ids"] == [
        *snapshot_ids(data, "preflight"),
        *snapshot_ids(data, "failure"),
    ]
    assert failure["attribution"] == []
    assert failure["unattributed"] == "0"
    t0 = datetime.fromisoformat(evidence["t0"])
    assert (
        t0 < datetime.fromisoformat(failure["failed_at"]) <= datetime.fromisoformat(evidence["ta"])
    )


def test_an_unrecorded_spender_is_concurrent_consumption(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    assert check(cli_any_db, "B", "20")["verdict"] == "go"
    assert paid_job(sandbox, "5") == 200
    ok(cli_any_db("record", "B", "j1", "--status", "succeeded", "--cost", "5"))
    sandbox.consume(Decimal("92.5"), meter="credits")  # a process that records nothing
    assert paid_job(sandbox, "5") == 402
    record_quota_failure(cli_any_db, "B", "j2")

    data = show(cli_any_db, "B")
    failure = only_failure(data)
    assert failure["tag"] == "concurrent_consumption"
    evidence = failure["evidence"]
    assert (evidence["b0"], evidence["ba"], evidence["own"], evidence["expected_cost"]) == (
        "100",
        "2.5",
        "5",
        "5",
    )
    assert evidence["foreign"] == "92.5"  # exact: 100 - 2.5 - 5
    assert evidence["topup"] is False
    assert failure["attribution"] == []
    assert failure["unattributed"] == "92.5"
    assert data["overlapping_batches"] == []


def test_another_recorded_batch_is_named_in_the_attribution(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    check(cli_any_db, "B", "20")
    check(cli_any_db, "A", "80")
    assert paid_job(sandbox, "93.5") == 200
    ok(cli_any_db("record", "A", "a1", "--status", "succeeded", "--cost", "93.5"))
    assert paid_job(sandbox, "7") == 402
    record_quota_failure(cli_any_db, "B", "b1", "--expected-cost", "7")

    data = show(cli_any_db, "B")
    failure = only_failure(data)
    assert failure["tag"] == "concurrent_consumption"
    evidence = failure["evidence"]
    assert (evidence["b0"], evidence["ba"], evidence["own"], evidence["expected_cost"]) == (
        "100",
        "6.5",
        "0",
        "7",
    )
    assert evidence["foreign"] == "93.5"
    assert failure["attribution"] == [{"batch_id": "A", "cost": "93.5"}]
    # 93.5 - 93.5: zero (the string keeps the operands' scale, "0.0").
    assert Decimal(failure["unattributed"]) == 0
    assert data["overlapping_batches"] == ["A"]


def test_low_balance_wins_and_the_foreign_spend_is_still_reported(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal("28"))
    check(cli_any_db, "B", "50", code=10)
    assert [paid_job(sandbox, "5") for _ in range(5)] == [200] * 5
    ok(
        cli_any_db(
            "record", "B", "--from", "-", stdin=succeeded(*((f"j{n}", "5") for n in range(5)))
        )
    )
    sandbox.consume(Decimal("1.5"), meter="credits")
    assert paid_job(sandbox, "5") == 402
    record_quota_failure(cli_any_db, "B", "j5")

    failure = only_failure(show(cli_any_db, "B"))
    assert failure["tag"] == "pre_existing_low_balance"  # b0 28 < own 25 + c 5
    evidence = failure["evidence"]
    assert (evidence["b0"], evidence["own"], evidence["expected_cost"]) == ("28", "25", "5")
    assert (evidence["ba"], evidence["foreign"]) == ("1.5", "1.5")
    assert failure["unattributed"] == "1.5"


def test_a_batch_that_was_never_checked_is_inconclusive(cli_any_db: Cli) -> None:
    live = record_quota_failure(cli_any_db, "never-checked", "j1")
    assert live["tag"] == "inconclusive"

    data = show(cli_any_db, "never-checked")
    assert data["status"] == "open"
    assert data["verified"] is False
    assert data["verdict"] is None
    failure = only_failure(data)
    assert failure["tag"] == "inconclusive"
    assert "preflight snapshot" in failure["reason"]
    assert failure["attribution"] == []
    assert failure["unattributed"] is None


def test_a_late_bulk_failure_is_classified_from_a_later_snapshot(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    preflight_id = check(cli_any_db, "B", "10")["snapshot_id"]
    sandbox.consume(Decimal("95"), meter="credits")
    failed_at = datetime.now(UTC)
    time.sleep(0.01)
    # Nothing was recorded live; the operator later reads the profile (a manual snapshot)...
    manual = as_json(cli_any_db("profile", "show", "--format", "json"))
    assert datetime.fromisoformat(manual["taken_at"]) > failed_at
    # ... and then the worker's log is imported, with the failure's real time.
    line = {
        "job_id": "j1",
        "status": "failed",
        "http_status": 402,
        "expected_cost": "5",
        "at": failed_at.isoformat(),
    }
    imported = as_json(
        cli_any_db("record", "B", "--from", "-", "--format", "json", stdin=jsonl(line))
    )
    assert (imported["inserted"], imported["tags"]) == (1, {"concurrent_consumption": 1})

    data = show(cli_any_db, "B")
    assert [s["kind"] for s in data["snapshots"]] == ["preflight"]  # no live snapshot in bulk
    failure = only_failure(data)
    assert datetime.fromisoformat(failure["failed_at"]) == failed_at
    assert failure["tag"] == "concurrent_consumption"
    evidence = failure["evidence"]
    assert evidence["snapshot_ids"] == [preflight_id, manual["snapshot_id"]]
    assert (evidence["b0"], evidence["ba"], evidence["own"], evidence["foreign"]) == (
        "100",
        "5",
        "0",
        "95",
    )
    assert evidence["before_failure"] is False
    assert failure["unattributed"] == "95"


def test_a_topup_is_never_read_as_negative_consumption(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    preflight_id = check(cli_any_db, "B", "20")["snapshot_id"]
    sandbox.topup(Decimal("200"))
    after_topup = as_json(cli_any_db("profile", "show", "--format", "json"))
    assert after_topup["credits"] == "300"
    sandbox.consume(Decimal("10"), meter="credits")
    assert paid_job(sandbox, "295") == 402
    record_quota_failure(cli_any_db, "B", "big")

    data = show(cli_any_db, "B")
    failure = only_failure(data)
    evidence = failure["evidence"]
    # b0 - ba - own would be 100 - 290 - 0 = -190: the rise splits the timeline instead.
    assert (evidence["b0"], evidence["ba"]) == ("100", "290")
    assert evidence["topup"] is True
    assert evidence["foreign_is_lower_bound"] is True
    assert evidence["topups"] == [[preflight_id, after_topup["snapshot_id"]]]
    assert evidence["foreign"] == "10"
    assert Decimal(failure["unattributed"]) >= 0
    assert failure["tag"] == "concurrent_consumption"
