"""`preflight audit` and `preflight findings` as a user runs them, against the sandbox vendor."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from preflight.db.session import build_engine
from preflight.sandbox import SandboxServer
from preflight.settings import load_settings
from tests.e2e.conftest import Cli

FINDING_FIELDS = {"kind", "account", "amount", "window_start", "window_end", "batches"}


def test_a_second_audit_in_the_period_says_so_and_exits_0(cli: Cli) -> None:
    first = cli("audit", "--format", "json")
    assert first.code == 0, first.err
    [ran] = json.loads(first.out)
    assert {"account", "period_start", "skipped", "reason", "audit_run_id", "snapshot_id"} <= set(
        ran
    )
    assert ran["account"] == "default"
    assert not ran["skipped"]
    assert ran["findings"] == []

    again = cli("audit")
    assert again.code == 0, again.err
    assert "already audited in this period" in again.out


def test_unrecorded_spend_becomes_a_finding_listed_by_findings(
    cli: Cli, sandbox: SandboxServer
) -> None:
    assert cli("audit").code == 0
    sandbox.consume(Decimal("12.5"), "credits")
    forced = cli("audit", "--force", "--format", "json")
    assert forced.code == 0, forced.err
    [outcome] = json.loads(forced.out)
    [finding] = [f for f in outcome["findings"] if f["kind"] == "unexplained_consumption"]
    assert finding["amount"] == "12.5"
    assert "audit_finding" in forced.err  # the structured event

    listed = cli(
        "findings", "--kind", "unexplained_consumption", "--since", "1h", "--format", "json"
    )
    assert listed.code == 0, listed.err
    [row] = json.loads(listed.out)
    assert FINDING_FIELDS | {"audit_run_id"} <= set(row)
    assert row["amount"] == "12.5"
    assert row["audit_run_id"] == outcome["audit_run_id"]
    assert row["window_end"] == finding["window_end"]

    text = cli("findings")
    assert text.code == 0
    assert "unexplained_consumption" in text.out


def test_the_audit_reclassifies_a_failure_recorded_late(cli: Cli, sandbox: SandboxServer) -> None:
    assert cli("check", "late-batch", "--need", "100").code == 0
    sandbox.consume(Decimal("1150"), "credits")  # someone else spends the balance
    failed_at = datetime.now(UTC).isoformat()
    line = {"job_id": "j1", "status": "failed", "http_status": 402, "at": failed_at}
    recorded = cli(
        "record", "late-batch", "--from", "-", "--format", "json", stdin=json.dumps(line)
    )
    assert recorded.code == 0, recorded.err
    assert json.loads(recorded.out)["tags"] == {"inconclusive": 1}

    assert cli("audit").code == 0
    [failure] = json.loads(cli("failures", "--format", "json").out)
    assert failure["tag"] == "concurrent_consumption"
    # Neither batch work nor the audit ever touches the profile (no POST).
    assert sandbox.request_counts["POST /api/open/v1/profile"] == 0


def test_four_audits_at_once_take_one_snapshot_per_account(
    cli_any_db: Cli, cli_env: dict[str, str], sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = tmp_path / "preflight.toml"
    config.write_text('[accounts.team-b]\ntoken_env = "TEAM_B_TOKEN"\n')
    cli_env.update(
        {
            "PREFLIGHT_CONFIG": str(config),
            "TEAM_B_TOKEN": cli_env["PREFLIGHT_API_TOKEN"],
            # One period for the whole test (a boundary only at midnight UTC).
            "PREFLIGHT_AUDIT_INTERVAL": "1d",
        }
    )
    assert cli_any_db("db", "upgrade").code == 0
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "preflight", "audit", "--format", "json"],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], results
    outcomes = [item for out, _err in results for item in json.loads(out)]
    for account in ("default", "team-b"):
        mine = [o for o in outcomes if o["account"] == account]
        assert len(mine) == 4
        assert sum(not o["skipped"] for o in mine) == 1
        assert len({o["period_start"] for o in mine}) == 1

    engine = build_engine(load_settings(cli_env).database_url)
    try:
        with engine.connect() as connection:
            counts: dict[str, int] = dict(
                connection.execute(
                    sa.text(
                        "SELECT a.name, count(*) FROM snapshots s JOIN accounts a "
                        "ON a.id = s.account_id WHERE s.kind = 'audit' GROUP BY a.name"
                    )
                ).all()
            )
            runs = connection.execute(sa.text("SELECT count(*) FROM audit_runs")).scalar()
    finally:
        engine.dispose()
    assert counts == {"default": 1, "team-b": 1}
    assert runs == 2
    assert sandbox.request_counts["GET /api/open/v1/profile"] == 2
