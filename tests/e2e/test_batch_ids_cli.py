"""Batch ids an orchestrator makes: an Airflow ``dag_id/run_id`` (with ``+``) and a
500-character id go through check, record and show on both dialects; one more character
is a usage error; the report's default file name for them is safe (issue 20, item 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.e2e.test_record_cli import as_json, one_error_line

pytestmark = pytest.mark.slow

AIRFLOW_ID = "my_dag/manual__2026-12-07T00:35:27.935842+00:00"
LONGEST = "d" * 250 + "/" + "scheduled__2026-12-07T00:00:00+00:00=@" + "r" * 211


@pytest.mark.parametrize("batch_id", [AIRFLOW_ID, LONGEST], ids=["airflow-run-id", "500-chars"])
def test_check_record_show_with_an_orchestrators_batch_id(cli_any_db: Cli, batch_id: str) -> None:
    assert len(LONGEST) == 500
    checked = as_json(cli_any_db("check", batch_id, "--need", "10", "--format", "json"))
    assert (checked["verdict"], checked["batch_id"]) == ("go", batch_id)
    recorded = as_json(
        cli_any_db(
            "record", batch_id, "j1", "--status", "succeeded", "--cost", "2.5", "--format", "json"
        )
    )
    assert recorded["created"] is True
    shown = as_json(cli_any_db("show", batch_id, "--format", "json"))
    assert shown["batch_id"] == batch_id
    assert (shown["outcomes"]["total"], shown["outcomes"]["cost"]) == (1, "2.5")
    listed = as_json(cli_any_db("batches", "--format", "json"))
    assert [b["batch_id"] for b in listed] == [batch_id]


@pytest.mark.parametrize(
    "args",
    [
        ("check", "x" * 501, "--need", "1"),
        ("record", "x" * 501, "j1", "--status", "succeeded"),
        ("show", "x" * 501),
        ("check", "my dag/run", "--need", "1"),
    ],
    ids=["check-501", "record-501", "show-501", "space"],
)
def test_a_batch_id_outside_the_grammar_is_one_usage_error_line(
    cli: Cli, args: tuple[str, ...]
) -> None:
    line = one_error_line(cli(*args))
    assert "invalid batch id" in line
    assert "1-500 characters of letters, digits and ._:+=@/-" in line


def test_the_reports_default_file_name_for_such_ids_is_one_safe_file(
    cli: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for batch_id in (AIRFLOW_ID, LONGEST):
        assert cli("check", batch_id, "--need", "1").code == 0
        written = subprocess.run(
            [sys.executable, "-m", "preflight", "report", batch_id],
            env=cli_env,
            cwd=out,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert written.returncode == 0, written.stderr
    names = sorted(path.name for path in out.iterdir())
    assert len(names) == 2
    assert "report-my_dag_manual__2026-12-07T00_35_27.935842_00_00.html" in names
    assert all(len(name) <= 180 and "/" not in name for name in names)
