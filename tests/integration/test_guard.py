"""``guard`` between dispatches, on SQLite and PostgreSQL, against the sandbox vendor, with
an injected clock: the issue's exact numbers, ``continue`` / ``at_risk`` with other open
batches, the snapshot's max age, and the CLI's exit codes and JSON on the same rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from preflight.api import Preflight
from preflight.cli.exit_codes import GUARD_STOP
from preflight.domain.forecast import Decision
from preflight.errors import NotFoundError, UsageError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import Settings, load_settings
from tests.support import Clock, upgrade_schema

MakePreflight = Callable[[], Preflight]


@pytest.fixture
def settings(database_url: str, sandbox: SandboxServer) -> Settings:
    if not database_url.startswith("sqlite"):
        upgrade_schema(database_url)
    return load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
        }
    )


@pytest.fixture
def pf(settings: Settings, clock: Clock) -> Iterator[Preflight]:
    with Preflight(settings, clock=clock) as app:
        yield app


def own_jobs(pf: Preflight, batch: str, start: datetime, *costs: str) -> None:
    """Succeeded jobs of ``batch``, one a minute after ``start``."""
    for n, cost in enumerate(costs, 1):
        pf.record(
            batch,
            {
                "job_id": f"{batch}-j{n}",
                "status": "succeeded",
                "cost": cost,
                "at": (start + timedelta(minutes=n)).isoformat(),
            },
            snapshot=False,
        )


def the_issues_example(pf: Preflight, sandbox: SandboxServer, clock: Clock) -> datetime:
    """Balance 200 at the check, need 100; own jobs spend 40 over 4 minutes while an
    unrecorded consumer spends 120. The clock ends at minute 4."""
    sandbox.set_balance(credits=Decimal(200))
    start = clock.now
    assert pf.check("B", need="100").balance == Decimal(200)
    sandbox.consume(Decimal(40 + 120))
    own_jobs(pf, "B", start, "10", "10", "10", "10")
    clock.advance(minutes=4)
    return start


EXAMPLE = {
    "batch_id": "B",
    "decision": "stop",
    "balance": "40",
    "remaining_need": "60",
    "outstanding_other": "0",
    "affordable_jobs": 4,
    "own_burn_per_minute": "10.0",
    "foreign_burn_per_minute": "30.0",
    "minutes_to_empty": "1.0",
    "minutes_to_finish": "6.0",
    "runs_out_first": True,
    "snapshot_age_seconds": 0,
}


def test_the_issues_example_says_stop(pf: Preflight, sandbox: SandboxServer, clock: Clock) -> None:
    the_issues_example(pf, sandbox, clock)
    result = pf.guard("B")
    data = result.to_dict()
    assert {key: data[key] for key in EXAMPLE} == EXAMPLE
    assert data["reason"] == "balance 40 is below the remaining need 60"
    assert result.decision is Decision.STOP
    assert result.exit_code() == GUARD_STOP == 15
    # The guard took a recheck snapshot: the preflight one was 4 minutes old.
    kinds = [s.kind for s in pf.show("B").snapshots]
    assert kinds == ["preflight", "recheck"]
    assert data["snapshot_id"] == pf.show("B").snapshots[-1].id


def test_a_fresh_snapshot_is_read_not_retaken(
    pf: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    the_issues_example(pf, sandbox, clock)
    first = pf.guard("B")
    sandbox.consume(Decimal(10))  # the vendor moved on; the stored snapshot has not
    clock.advance(seconds=30)
    again = pf.guard("B", max_age=timedelta(seconds=60))
    assert (again.snapshot_id, again.snapshot_age_seconds) == (first.snapshot_id, 30)
    assert again.forecast.balance == Decimal(40)
    # Older than max_age: retaken, and the new balance read.
    retaken = pf.guard("B", max_age=timedelta(seconds=10))
    assert retaken.snapshot_id != first.snapshot_id
    assert (retaken.forecast.balance, retaken.snapshot_age_seconds) == (Decimal(30), 0)


def open_batch(pf: Preflight, batch: str, need: str) -> None:
    assert pf.check(batch, need=need).status == "open"


@pytest.mark.parametrize(
    ("balance", "decision", "strict_code"),
    [
        # B: need 100, consumed 40 → remaining 60; O: need 300, nothing consumed.
        ("960", Decision.CONTINUE, 0),  # 960 ≥ 60 + 300
        ("360", Decision.CONTINUE, 0),  # 360 = 60 + 300, exactly
        ("359.99", Decision.AT_RISK, 14),  # < 60 + 300
        ("60", Decision.AT_RISK, 14),  # = the remaining need
        ("59.99", Decision.STOP, 15),  # < the remaining need
    ],
)
def test_continue_and_at_risk_with_other_open_batches(
    pf: Preflight,
    sandbox: SandboxServer,
    clock: Clock,
    balance: str,
    decision: Decision,
    strict_code: int,
) -> None:
    sandbox.set_balance(credits=Decimal(balance) + 1040)
    open_batch(pf, "O", "300")
    start = clock.now
    open_batch(pf, "B", "100")
    sandbox.consume(Decimal(1040))
    own_jobs(pf, "B", start, "20", "20")
    clock.advance(minutes=2)
    result = pf.guard("B")
    assert result.decision is decision, result.reason
    assert result.outstanding_other == Decimal(300)
    assert result.forecast.remaining_need == Decimal(60)
    assert result.forecast.balance == Decimal(balance)
    assert result.exit_code(strict=True) == strict_code
    assert result.exit_code() == (15 if decision is Decision.STOP else 0)


def test_a_quiet_or_finished_batch_holds_nothing(
    pf: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal(300))
    open_batch(pf, "quiet", "250")
    open_batch(pf, "done", "250")
    pf.finish("done")
    clock.advance(hours=7)  # past the 6 h hold expiry: "quiet" no longer counts
    open_batch(pf, "B", "100")
    result = pf.guard("B", max_age=timedelta(0))
    assert (result.decision, result.outstanding_other) == (Decision.CONTINUE, Decimal(0))


def test_next_cost_alone_decides_without_a_need(
    pf: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal(50))
    pf.check("N")
    assert pf.guard("N", next_cost="50").decision is Decision.CONTINUE
    stop = pf.guard("N", next_cost="50.01")
    assert stop.decision is Decision.STOP
    assert stop.reason == "balance 50 is below the next job's cost 50.01"
    assert stop.forecast.remaining_need is None
    with pytest.raises(UsageError, match="next_cost"):
        pf.guard("N")


def test_next_cost_stops_before_the_need_would(
    pf: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal(100))
    pf.check("B", need="10")
    assert pf.guard("B", next_cost="100.5").decision is Decision.STOP
    with pytest.raises(UsageError, match="next_cost"):
        pf.guard("B", next_cost="-1")


def test_guard_of_an_unknown_or_finished_batch(pf: Preflight, sandbox: SandboxServer) -> None:
    with pytest.raises(NotFoundError):
        pf.guard("nope", next_cost="1")
    pf.check("F", need="1")
    pf.finish("F")
    with pytest.raises(UsageError, match="finished"):
        pf.guard("F")


def test_batch_run_guard(pf: Preflight, sandbox: SandboxServer, clock: Clock) -> None:
    sandbox.set_balance(credits=Decimal(100))
    with pf.batch("ctx", need="80") as run:
        sandbox.consume(Decimal(30))
        clock.advance(seconds=30)
        run.record("j1", "succeeded", cost="30")
        clock.advance(seconds=90)
        answer = run.guard()
    assert (answer.decision, answer.forecast.balance) == (Decision.CONTINUE, Decimal(70))
    assert answer.forecast.remaining_need == Decimal(50)
    assert answer.forecast.own_burn_per_minute == Decimal(15)  # 30 over 2 minutes


# ---------------------------------------------------------------- the CLI on the same rows


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
    clock: Clock,
    *args: str,
) -> tuple[int, str, str]:
    """``preflight ARGS`` in this process, its Preflight on the test's clock."""
    from preflight.cli import batches
    from preflight.cli.main import main

    monkeypatch.setattr(batches, "open_app", lambda: Preflight(settings, clock=clock))
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


def test_cli_guard_exit_codes_and_json(
    pf: Preflight,
    sandbox: SandboxServer,
    clock: Clock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    the_issues_example(pf, sandbox, clock)
    code, out, _ = run_cli(monkeypatch, capsys, settings, clock, "guard", "B", "--format", "json")
    data: dict[str, Any] = json.loads(out)
    assert code == 15
    assert {key: data[key] for key in EXAMPLE} == EXAMPLE
    assert list(data) == [
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
    # The Python API on the same rows (the snapshot is now fresh): the same answer.
    assert pf.guard("B").to_dict() == data

    code, out, _ = run_cli(monkeypatch, capsys, settings, clock, "guard", "B")
    assert code == 15
    assert out.startswith("stop: balance 40 is below the remaining need 60")
    assert "minutes to empty 1.0, to finish 6.0 (runs out first)" in out

    sandbox.set_balance(credits=Decimal(60))  # a top-up
    clock.advance(seconds=1)
    sandbox_check = run_cli(
        monkeypatch, capsys, settings, clock, "guard", "B", "--max-age", "0s", "--format", "json"
    )
    assert sandbox_check[0] == 0
    assert json.loads(sandbox_check[1])["decision"] == "continue"


def test_cli_guard_strict_and_usage_errors(
    pf: Preflight,
    sandbox: SandboxServer,
    clock: Clock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox.set_balance(credits=Decimal(150))
    open_batch(pf, "O", "100")
    open_batch(pf, "B", "100")  # 100 ≤ 150 < 200: at_risk
    code, out, _ = run_cli(monkeypatch, capsys, settings, clock, "guard", "B")
    assert (code, out.split(":")[0]) == (0, "at_risk")
    code, _, _ = run_cli(monkeypatch, capsys, settings, clock, "guard", "B", "--strict")
    assert code == 14
    pf.check("N")
    code, _, err = run_cli(monkeypatch, capsys, settings, clock, "guard", "N")
    assert code == 2
    assert "next_cost" in err
    assert "Traceback" not in err
    code, _, err = run_cli(monkeypatch, capsys, settings, clock, "guard", "B", "--max-age", "soon")
    assert (code, "--max-age" in err) == (2, True)


# ---------------------------------------------------------------- the forecast in show


def test_show_forecasts_the_guards_numbers_from_stored_snapshots(
    pf: Preflight,
    sandbox: SandboxServer,
    clock: Clock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    the_issues_example(pf, sandbox, clock)
    guarded = pf.guard("B").to_dict()
    sandbox.consume(Decimal(5))  # the vendor moved on: show never asks it
    shown = pf.show("B")
    assert shown.forecast is not None
    assert {"batch_id": "B", **shown.forecast.to_dict()} == guarded
    assert len(shown.snapshots) == 2  # no snapshot taken by show

    clock.advance(seconds=42)
    later = pf.show("B").to_dict()["forecast"]
    assert (later["minutes_to_empty"], later["snapshot_age_seconds"]) == ("1.0", 42)

    code, out, _ = run_cli(monkeypatch, capsys, settings, clock, "show", "B", "--format", "json")
    assert (code, json.loads(out)["forecast"]) == (0, later)
    code, out, _ = run_cli(monkeypatch, capsys, settings, clock, "show", "B")
    assert "forecast (snapshot" in out
    assert "minutes to empty 1.0, to finish 6.0 (runs out first)" in out


def test_show_forecasts_only_open_checked_batches(
    pf: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal(100))
    pf.check("no-need")
    no_need = pf.show("no-need").forecast
    assert no_need is not None
    assert (no_need.decision, no_need.reason, no_need.forecast.remaining_need) == (None, None, None)
    assert no_need.forecast.balance == Decimal(100)
    pf.record("never-checked", {"job_id": "j", "status": "succeeded", "cost": "1"})
    assert pf.show("never-checked").forecast is None
    pf.check("done", need="10")
    pf.finish("done")
    assert pf.show("done").forecast is None


def test_two_guards_at_once_each_answer_from_a_stored_snapshot(
    settings: Settings, sandbox: SandboxServer, clock: Clock
) -> None:
    """Two workers guard the same batch at the same instant on a stale snapshot: each takes
    its recheck (two vendor reads, no lock held across them) and both answer ``stop`` from
    a snapshot that is stored, with the same numbers."""
    import threading

    with Preflight(settings, clock=clock) as first, Preflight(settings, clock=clock) as second:
        the_issues_example(first, sandbox, clock)
        barrier = threading.Barrier(2)
        answers: dict[str, dict[str, Any]] = {}
        errors: list[BaseException] = []

        def run(name: str, app: Preflight) -> None:
            try:
                barrier.wait(timeout=10)
                answers[name] = app.guard("B").to_dict()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(name, app))
            for name, app in (("a", first), ("b", second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        stored = {s.id for s in first.show("B").snapshots}
    assert {answers["a"]["snapshot_id"], answers["b"]["snapshot_id"]} <= stored
    for answer in answers.values():
        assert {key: answer[key] for key in EXAMPLE} == EXAMPLE


def test_affordable_jobs_counts_succeeded_consumed_costs_only(
    pf: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    sandbox.set_balance(credits=Decimal(100))
    pf.check("A", need="500")
    pf.record("A", {"job_id": "ok1", "status": "succeeded", "cost": "10"})
    pf.record("A", {"job_id": "ok2", "status": "succeeded", "cost": "20"})
    pf.record("A", {"job_id": "no-cost", "status": "succeeded"})  # unknown: not in the mean
    pf.record("A", {"job_id": "broken", "status": "failed", "cost": "25"})  # consumed, failed
    pf.record(
        "A", {"job_id": "quota", "status": "failed", "http_status": 402, "cost": "40"},
        snapshot=False,
    )  # fmt: skip
    result = pf.guard("A", max_age=timedelta(hours=1))
    # Mean of the succeeded jobs' consumed cost: 15; floor(100 / 15) = 6.
    assert result.forecast.affordable_jobs == 6
    # Remaining need: 500 less everything consumed (10 + 20 + 25; the 402 consumed nothing).
    assert result.forecast.remaining_need == Decimal(445)
