"""`preflight demo` is the README's first command: it must tell the whole story."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import Cli


def test_demo_shows_both_tags_with_attribution(cli: Cli, tmp_path: Path) -> None:
    run = cli("demo", "--format", "json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    voiceover, subtitles = report["batches"]

    assert voiceover["verdict"] == "insufficient"
    [own_failure] = voiceover["quota_failures"]
    assert own_failure["tag"] == "pre_existing_low_balance"
    assert own_failure["evidence"]["b0"] == "100"
    assert own_failure["evidence"]["own"] == "100"

    assert subtitles["verdict"] == "go"
    [outspent] = subtitles["quota_failures"]
    assert outspent["tag"] == "concurrent_consumption"
    assert outspent["attribution"] == [{"batch_id": "demo-voiceover", "cost": "100"}]
    assert outspent["unattributed"] == "0"


def test_demo_keeps_its_rows_out_of_the_default_database(cli: Cli, tmp_path: Path) -> None:
    run = cli("demo")
    assert run.code == 0, run.err
    assert "pre_existing_low_balance" in run.out
    assert "concurrent_consumption" in run.out
    demo_db = tmp_path / "data" / "preflight" / "demo.db"
    with sqlite3.connect(demo_db) as connection:
        assert connection.execute("SELECT count(*) FROM batches").fetchone() == (2,)
    assert not (tmp_path / "data" / "preflight" / "preflight.db").exists()
    # A second run starts from scratch rather than piling onto the first one's rows.
    again = cli("demo", "--format", "json")
    assert again.code == 0, again.err
    with sqlite3.connect(demo_db) as connection:
        assert connection.execute("SELECT count(*) FROM batches").fetchone() == (2,)
