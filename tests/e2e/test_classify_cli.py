"""Which snapshot measures a quota failure, end to end: the real CLI against the sandbox, on
SQLite and PostgreSQL.

Two 402s of one batch an hour apart, both recorded without their live snapshot
(``--no-snapshot``), with no snapshot in either one's staleness window: each is measured by
the latest snapshot before it, F a lower bound, whatever staler snapshots came later, and
neither answer depends on the other failure. The staleness window is 0 here, so that every
snapshot taken after a failure is too stale to measure it without an hour of wall clock:
the failures' times are given with ``--at``, the snapshots' are the machine's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, paid_job
from tests.e2e.test_postmortem_cli import as_json, check, ok, record_quota_failure, show

pytestmark = pytest.mark.slow


@pytest.fixture
def no_window(cli_env: dict[str, str]) -> None:
    cli_env["PREFLIGHT_STALENESS_WINDOW"] = "0s"


def failures(cli: Cli) -> dict[str, dict[str, Any]]:
    """The batch's quota failures as ``show`` lists them, by job id."""
    return {f["job_id"]: f for f in show(cli, "B")["quota_failures"]}


def measured(failure: dict[str, Any]) -> tuple[Any, ...]:
    evidence = failure["evidence"]
    return (
        failure["tag"],
        evidence["ba"],
        evidence["own"],
        evidence["foreign"],
        evidence["foreign_is_lower_bound"],
        evidence["before_failure"],
    )


@pytest.mark.usefixtures("no_window")
def test_two_failures_an_hour_apart_are_each_measured_by_their_own_evidence(
    cli_any_db: Cli, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    assert check(cli_any_db, "B", "50")["verdict"] == "go"
    assert paid_job(sandbox, "10") == 200
    ok(cli_any_db("record", "B", "j1", "--status", "succeeded", "--cost", "10"))
    sandbox.consume(Decimal("30"), meter="credits")  # a process that records nothing
    ok(cli_any_db("profile", "show"))  # a manual snapshot: 60

    failed_at = datetime.now(UTC)  # after that snapshot
    unmeasured = ("--expected-cost", "10", "--no-snapshot")
    first = record_quota_failure(cli_any_db, "B", "f1", *unmeasured, "--at", failed_at.isoformat())
    assert first["snapshot_id"] is None
    f1 = failures(cli_any_db)["f1"]
    # Nothing in f1's window: the snapshot before it measures, and F is a lower bound.
    assert measured(f1) == ("concurrent_consumption", "60", "10", "30", True, True)
    assert "others spent at least 30 between the check and the failure" in f1["reason"]

    # Later: 20 more goes unrecorded, and a snapshot reads 40, too stale to measure f1.
    # Then f2, an hour after f1, is recorded the same way.
    sandbox.consume(Decimal("20"), meter="credits")
    ok(cli_any_db("profile", "show"))
    an_hour_later = (failed_at + timedelta(hours=1)).isoformat()
    record_quota_failure(cli_any_db, "B", "f2", *unmeasured, "--at", an_hour_later)
    f2 = failures(cli_any_db)["f2"]
    assert measured(f2) == ("concurrent_consumption", "40", "10", "50", True, True)

    # Reclassified together, each keeps the answer it had alone (not even re-stored).
    both = as_json(cli_any_db("classify", "--batch", "B", "--format", "json"))
    assert both == {"classified": 2, "tags": {"concurrent_consumption": 2}}
    assert failures(cli_any_db) == {"f1": f1, "f2": f2}

    # A later snapshot never changes f1, whose window has passed; f2 (stamped an hour on)
    # is now measured by it, as the latest snapshot before f2.
    sandbox.consume(Decimal("5"), meter="credits")
    ok(cli_any_db("profile", "show"))
    ok(cli_any_db("classify", "--batch", "B"))
    after = failures(cli_any_db)
    assert after["f1"] == f1
    assert measured(after["f2"]) == ("concurrent_consumption", "35", "10", "55", True, True)
