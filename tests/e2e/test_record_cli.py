"""Recording outcomes with the real CLI: idempotence, conflicts, bulk JSON Lines (including a
bad line in the middle), finish, and the post-mortem listings (failures, batches, classify)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, Run, paid_job

pytestmark = pytest.mark.slow


def as_json(run: Run) -> Any:
    assert run.code == 0, run.err
    return json.loads(run.out)


def one_error_line(run: Run) -> str:
    """A usage error: exit 2 and exactly one line on stderr, without a traceback."""
    assert run.code == 2, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("preflight: error: ")
    line: str = lines[0]
    return line


def outcomes_of(cli: Cli, batch: str) -> dict[str, Any]:
    totals: dict[str, Any] = as_json(cli("show", batch, "--format", "json"))["outcomes"]
    return totals


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


# ---------------------------------------------------------------- one outcome


def test_recording_the_same_outcome_again_changes_nothing(cli_any_db: Cli) -> None:
    args = ("record", "B", "J", "--status", "succeeded", "--cost", "5", "--format", "json")
    created = [as_json(cli_any_db(*args))["created"] for _ in range(3)]
    assert created == [True, False, False]
    totals = outcomes_of(cli_any_db, "B")
    assert (totals["total"], totals["succeeded"], totals["cost"]) == (1, 1, "5")


def test_a_conflicting_outcome_is_refused_and_the_stored_one_kept(cli_any_db: Cli) -> None:
    assert cli_any_db("record", "B", "J", "--status", "succeeded", "--cost", "5").code == 0
    other_cost = one_error_line(
        cli_any_db("record", "B", "J", "--status", "succeeded", "--cost", "6")
    )
    assert "cost" in other_cost
    other_status = one_error_line(
        cli_any_db("record", "B", "J", "--status", "failed", "--http-status", "500")
    )
    assert "status" in other_status
    totals = outcomes_of(cli_any_db, "B")
    assert (totals["total"], totals["succeeded"], totals["failed"], totals["cost"]) == (
        1,
        1,
        0,
        "5",
    )


def test_record_needs_a_job_and_status_or_from_but_not_both(cli: Cli) -> None:
    line = jsonl([{"job_id": "K", "status": "succeeded", "cost": "1"}])
    for args in [
        ("B",),
        ("B", "J"),  # no --status
        ("B", "--status", "succeeded"),  # no JOB_ID
        ("B", "J", "--from", "-"),
        ("B", "J", "--status", "succeeded", "--from", "-"),
    ]:
        one_error_line(cli("record", *args, stdin=line))
    assert as_json(cli("batches", "--format", "json")) == []  # nothing was stored


# ---------------------------------------------------------------- bulk


def test_bulk_import_then_the_same_file_again(cli_any_db: Cli, tmp_path: Path) -> None:
    count = 2500  # more than one 1000-line transaction
    path = tmp_path / "outcomes.jsonl"
    path.write_text(
        jsonl([{"job_id": f"j{n}", "status": "succeeded", "cost": "0.01"} for n in range(count)])
    )
    first = as_json(cli_any_db("record", "B", "--from", str(path), "--format", "json"))
    assert (first["lines"], first["inserted"], first["duplicates"]) == (count, count, 0)
    again = as_json(cli_any_db("record", "B", "--from", str(path), "--format", "json"))
    assert (again["lines"], again["inserted"], again["duplicates"]) == (count, 0, count)
    totals = outcomes_of(cli_any_db, "B")
    assert (totals["total"], Decimal(totals["cost"])) == (count, Decimal("25"))


BAD_LINES = {
    # batch: (lines in the file, the bad line's number, the bad line)
    "bad-json": (5, 3, '{"job_id": "j3", "status": "succeeded", "cost": '),
    "bad-status": (1600, 1502, json.dumps({"job_id": "j1502", "status": "done", "cost": "1"})),
    "negative-cost": (6, 4, json.dumps({"job_id": "j4", "status": "succeeded", "cost": "-1"})),
}


def test_a_bad_line_stops_the_import_and_keeps_the_lines_before_it(
    cli_any_db: Cli, tmp_path: Path
) -> None:
    help_text = " ".join(cli_any_db("record", "--help").out.split())
    assert "every line BEFORE it is kept" in help_text

    files: dict[str, Path] = {}
    for batch, (size, bad, bad_line) in BAD_LINES.items():
        # Line n costs n: the stored total says exactly which lines were kept.
        lines = [
            json.dumps({"job_id": f"j{n}", "status": "succeeded", "cost": str(n)})
            for n in range(1, size + 1)
        ]
        lines[bad - 1] = bad_line
        files[batch] = tmp_path / f"{batch}.jsonl"
        files[batch].write_text("\n".join(lines) + "\n")
        error = one_error_line(cli_any_db("record", batch, "--from", str(files[batch])))
        assert f"line {bad}" in error, error

    stored = {
        b["batch_id"]: b["outcomes"] for b in as_json(cli_any_db("batches", "--format", "json"))
    }
    assert set(stored) == set(BAD_LINES)
    for batch, (_size, bad, _line) in BAD_LINES.items():
        kept = bad - 1
        assert stored[batch]["total"] == kept, batch
        assert Decimal(stored[batch]["cost"]) == kept * (kept + 1) // 2, batch

    # Fix the line, run the same file again: the kept lines are duplicates, the rest recorded.
    size, bad, _ = BAD_LINES["bad-status"]
    fixed = files["bad-status"].read_text().replace('"done"', '"succeeded"')
    files["bad-status"].write_text(fixed)
    rerun = as_json(
        cli_any_db("record", "bad-status", "--from", str(files["bad-status"]), "--format", "json")
    )
    assert (rerun["inserted"], rerun["duplicates"]) == (size - (bad - 1), bad - 1)


# ---------------------------------------------------------------- finish and listings


def test_finish_reports_what_an_unrecorded_process_spent(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    assert cli("check", "F", "--need", "20").code == 0
    assert [paid_job(sandbox, "5"), paid_job(sandbox, "5")] == [200, 200]
    jobs = [{"job_id": f"j{n}", "status": "succeeded", "cost": "5"} for n in range(2)]
    assert cli("record", "F", "--from", "-", stdin=jsonl(jobs)).code == 0
    sandbox.consume(Decimal("12.5"), meter="credits")

    finished = as_json(cli("finish", "F", "--format", "json"))
    assert finished["status"] == "finished"
    assert (finished["own_cost"], finished["preflight_balance"], finished["finish_balance"]) == (
        "10",
        "100",
        "77.5",
    )
    assert finished["balance_drop"] == "22.5"
    assert finished["foreign_consumption"] == "12.5"
    assert finished["foreign_is_lower_bound"] is False


def _tags(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["batch_id"],
            r["job_id"],
            r["attempt"],
            r["tag"],
            r["reason"],
            r["evidence"],
            r["attribution"],
            r["unattributed"],
            r["classifier_version"],
        )
        for r in rows
    ]


def test_failures_and_batches_filters_and_classify_all(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    # C: checked, then an unrecorded process spends 98 and the next job fails.
    assert cli("check", "C", "--need", "10").code == 0
    sandbox.consume(Decimal("98"), meter="credits")
    assert paid_job(sandbox, "5") == 402
    failed = ("--status", "failed", "--http-status", "402")
    assert cli("record", "C", "c1", *failed).code == 0
    # L: never checked (inconclusive), recorded live now.
    assert cli("record", "L", "l1", *failed).code == 0
    # O: never checked, imported with a failure three hours old.
    old = datetime.now(UTC) - timedelta(hours=3)
    line = {"job_id": "o1", "status": "failed", "http_status": 402, "at": old.isoformat()}
    assert cli("record", "O", "--from", "-", stdin=jsonl([line])).code == 0
    assert cli("finish", "C").code == 0

    every = as_json(cli("failures", "--format", "json"))
    assert [(r["batch_id"], r["tag"]) for r in every] == [
        ("O", "inconclusive"),
        ("C", "concurrent_consumption"),
        ("L", "inconclusive"),
    ]
    concurrent = as_json(cli("failures", "--tag", "concurrent_consumption", "--format", "json"))
    assert [(r["batch_id"], r["job_id"]) for r in concurrent] == [("C", "c1")]
    assert concurrent[0]["evidence"]["foreign"] == "98"
    assert concurrent[0]["unattributed"] == "98"
    recent = as_json(cli("failures", "--since", "1h", "--format", "json"))
    assert [r["batch_id"] for r in recent] == ["C", "L"]

    finished = as_json(cli("batches", "--status", "finished", "--format", "json"))
    assert [(b["batch_id"], b["status"]) for b in finished] == [("C", "finished")]

    counts = {"concurrent_consumption": 1, "inconclusive": 2}
    assert as_json(cli("classify", "--all", "--format", "json")) == {
        "classified": 3,
        "tags": counts,
    }
    once = as_json(cli("failures", "--format", "json"))
    assert as_json(cli("classify", "--all", "--format", "json"))["tags"] == counts
    twice = as_json(cli("failures", "--format", "json"))
    assert _tags(once) == _tags(twice) == _tags(every)


# ---------------------------------------------------------------- text output


def test_text_listings_with_no_rows_print_an_empty_table(cli: Cli) -> None:
    # A batch with an outcome but no snapshot, no quota failure, and nothing finished.
    assert cli("record", "B", "J", "--status", "succeeded", "--cost", "1").code == 0
    runs = {
        " ".join(args): cli(*args)
        for args in [("failures",), ("batches", "--status", "finished"), ("show", "B")]
    }
    assert {name: (run.code, run.err) for name, run in runs.items()} == dict.fromkeys(runs, (0, ""))


def test_a_file_that_is_not_utf8_is_a_usage_error_naming_the_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = jsonl([{"job_id": "j1", "status": "succeeded", "cost": "1"}])
    path.write_bytes(good.encode() + '{"job_id": "j\xe9", "status": "failed"}\n'.encode("latin-1"))
    error = one_error_line(cli("record", "B", "--from", str(path)))
    assert "line 2" in error
    assert "UTF-8" in error
    assert outcomes_of(cli, "B")["total"] == 1


def test_a_live_quota_failure_without_a_token_is_stored_with_a_warning(cli: Cli) -> None:
    # No token: the failure snapshot cannot be taken, but the outcome must not be lost
    # or reported as an error; the audit reclassifies it once a snapshot exists.
    run = cli(
        "record",
        "B",
        "J",
        "--status",
        "failed",
        "--http-status",
        "402",
        "--format",
        "json",
        env={"PREFLIGHT_API_TOKEN": ""},
    )
    stored = as_json(run)
    assert stored["created"] is True
    assert stored["tag"] == "inconclusive"
    assert "no vendor token" in stored["snapshot_error"]
    assert "preflight: warning: no failure snapshot" in run.err
    assert outcomes_of(cli, "B")["failed"] == 1


def test_an_overlong_line_is_refused_without_reading_it_whole(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    good = jsonl([{"job_id": "j1", "status": "succeeded", "cost": "1"}])
    huge = json.dumps({"job_id": "j2", "status": "failed", "error": "x" * 200_000})
    path.write_text(good + huge + "\n" + good.replace("j1", "j3"))
    error = one_error_line(cli("record", "B", "--from", str(path)))
    assert "line 2: longer than 65536 bytes" in error
    assert outcomes_of(cli, "B")["total"] == 1
