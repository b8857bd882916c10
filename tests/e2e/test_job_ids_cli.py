"""Job ids an orchestrator makes: an Airflow mapped task's ``task_id[map_index]`` (a task id
is up to 250 characters) and any 500-character id are recorded, one by one and in JSON
Lines, on both dialects, and listed back whole; one more character is a usage error, one
line, exit 2 (issue 20: job ids)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.e2e.test_record_cli import as_json, jsonl, one_error_line, outcomes_of

pytestmark = pytest.mark.slow

MAPPED_TASK = "t" * 250 + "[1023]"
LONGEST = "job/" + "é" * 246 + "[0]" + "j" * 247  # 500 characters, not all ASCII


def test_a_500_character_job_id_is_recorded_one_by_one_and_in_json_lines(
    cli_any_db: Cli, tmp_path: Path
) -> None:
    assert len(LONGEST) == 500
    assert cli_any_db("check", "B", "--need", "10").code == 0
    for job_id in (LONGEST, MAPPED_TASK):
        recorded = as_json(
            cli_any_db(
                "record", "B", job_id, "--status", "succeeded", "--cost", "1", "--format", "json"
            )
        )
        assert (recorded["created"], recorded["job_id"]) == (True, job_id)
    # Again: the same (batch, job, attempt), so nothing new.
    again = cli_any_db("record", "B", LONGEST, "--status", "succeeded", "--cost", "1")
    assert again.code == 0, again.err

    path = tmp_path / "outcomes.jsonl"
    lines = [{"job_id": f"{n}" + "x" * 499, "status": "succeeded", "cost": "0.5"} for n in range(4)]
    lines.append({"job_id": LONGEST, "status": "failed", "attempt": 2, "http_status": 402})
    path.write_text(jsonl(lines), encoding="utf-8")
    bulk = as_json(cli_any_db("record", "B", "--from", str(path), "--format", "json"))
    assert (bulk["lines"], bulk["inserted"], bulk["duplicates"]) == (5, 5, 0)

    totals = outcomes_of(cli_any_db, "B")
    assert (totals["total"], Decimal(totals["cost"])) == (7, Decimal(4))
    failures = as_json(cli_any_db("failures", "--format", "json"))
    assert [(f["job_id"], f["attempt"]) for f in failures] == [(LONGEST, 2)]


def test_a_501_character_job_id_is_one_usage_error_line(cli_any_db: Cli, tmp_path: Path) -> None:
    single = one_error_line(cli_any_db("record", "B", "j" * 501, "--status", "succeeded"))
    assert "job_id: must be 1-500 printable characters" in single
    assert len(single) < 200  # the id is previewed, not echoed

    path = tmp_path / "outcomes.jsonl"
    lines = [{"job_id": "j" * 500, "status": "succeeded", "cost": "1"}]
    lines.append({"job_id": "j" * 501, "status": "succeeded", "cost": "2"})
    path.write_text(jsonl(lines))
    bulk = one_error_line(cli_any_db("record", "B", "--from", str(path)))
    assert "line 2" in bulk
    assert "job_id: must be 1-500 printable characters" in bulk
    # The line before the bad one is kept, as with any bad line.
    totals = outcomes_of(cli_any_db, "B")
    assert (totals["total"], totals["cost"]) == (1, "1")
