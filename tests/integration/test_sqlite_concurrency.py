"""Eight `preflight check` processes at once on one database: no "database is locked", no lost row.

On SQLite the file is fresh, so the processes also race on its self-upgrade (first use).
PostgreSQL is upgraded first (`preflight db upgrade` semantics), as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.support import upgrade_schema

PROCESSES = 8


def _count(url: str, sql: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_eight_processes_check_different_batches_at_once(
    database_url: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    if database_url.startswith("sqlite"):
        assert not Path(database_url.removeprefix("sqlite:///")).exists()
    else:
        upgrade_schema(database_url)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_DEADLINE": "20",
        }
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "preflight", "check", f"batch-{n}", "--need", "1"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=90)
        results.append((process.returncode, out, err))
    requests = sandbox.request_counts["GET /api/open/v1/profile"]

    for n, (code, out, err) in enumerate(results):
        assert "database is locked" not in err, f"batch-{n}: {err}"
        assert code == 0, f"batch-{n} exited {code}: {err}"
        assert out.startswith("go: "), f"batch-{n}: {out}"
    assert requests == PROCESSES
    assert _count(database_url, "SELECT count(*) FROM batches") == PROCESSES
    assert (
        _count(
            database_url, "SELECT count(DISTINCT batch_pk) FROM snapshots WHERE kind = 'preflight'"
        )
        == PROCESSES
    )
    assert _count(database_url, "SELECT count(*) FROM snapshots") == PROCESSES
    assert _count(database_url, "SELECT count(*) FROM accounts") == 1
