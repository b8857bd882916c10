"""`preflight worker` replicas as real processes against one database (SQLite and PostgreSQL).

Five workers tick every second: each period must be audited by exactly one of them, with
one audit snapshot, and a period whose holder is killed with SIGKILL mid-run must be
completed by another replica once its lease expires. Waits are bounded polls on the
database, never assertions about timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from preflight.api import Preflight
from preflight.db import migrate
from preflight.db.session import build_engine
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings

pytestmark = pytest.mark.slow

INTERVAL = timedelta(seconds=1)
T = TypeVar("T")


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = build_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _env(database_url: str, sandbox: SandboxServer, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
            "PREFLIGHT_LOG_LEVEL": "info",
            "PREFLIGHT_LOG_FORMAT": "json",
        }
    )
    env.update({f"PREFLIGHT_{k.upper()}": v for k, v in settings.items()})
    return env


def _start(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(count):
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with (logs / f"worker-{i}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "preflight", "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    return workers


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def _rows(engine: sa.Engine, sql: str, **params: Any) -> list[sa.Row[Any]]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text(sql), params))


def _claims(engine: sa.Engine) -> list[sa.Row[Any]]:
    return _rows(
        engine,
        "SELECT id, period_start, status, holder, started_at, snapshot_id "
        "FROM audit_claims ORDER BY period_start",
    )


def _utc(value: Any) -> datetime:
    # SQLite through a text() query gives naive UTC text; PostgreSQL an aware datetime.
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stop(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    return [worker.wait(timeout=30) for worker in workers]


def test_five_workers_audit_each_tick_once_and_finish_a_killed_run(
    engine: sa.Engine, database_url: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    env = _env(database_url, sandbox, audit_interval="1s", audit_lease="2s", deadline="10")
    workers = _start(5, env, tmp_path)
    by_pid = {worker.pid: worker for worker in workers}
    victim: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(
            "two audited periods",
            lambda: sum(c.status == "done" for c in _claims(engine)) >= 2,
        )
        # The next vendor call hangs for 5 s: the replica that makes it is stuck mid-run.
        sandbox.inject({"kind": "latency", "seconds": 5})

        def slow_claim() -> sa.Row[Any] | None:
            now = datetime.now(UTC)
            return next(
                (
                    c
                    for c in _claims(engine)
                    if c.status == "running" and _utc(c.started_at) < now - timedelta(seconds=1.5)
                ),
                None,
            )

        victim_claim = _wait_for("a run stuck on the vendor", slow_claim)
        victim = by_pid[int(victim_claim.holder.split(":")[1])]
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        victim_period = _utc(victim_claim.period_start)

        def recovered_and_two_more() -> bool:
            claims = {_utc(c.period_start): c for c in _claims(engine)}
            return claims[victim_period].status == "done" and all(
                claims.get(victim_period + k * INTERVAL, victim_claim).status == "done"
                for k in (1, 2)
            )

        _wait_for("the killed run completed, and two more ticks", recovered_and_two_more)
    finally:
        codes = _stop([worker for worker in workers if worker is not victim])
    assert codes == [0, 0, 0, 0], [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]

    claims = _claims(engine)
    status = {_utc(c.period_start): c.status for c in claims}
    first = min(status)
    # No gaps: every period from the first to two after the killed one was audited
    # (all of them were done before the shutdown began).
    checked = (victim_period + 2 * INTERVAL - first) // INTERVAL + 1
    assert [status.get(first + k * INTERVAL) for k in range(checked)] == ["done"] * checked
    # The shutdown may cut the last ticks short: abandoned, never left running or failed.
    assert {c.status for c in claims} <= {"done", "abandoned"}
    done = [c for c in claims if c.status == "done"]
    assert all(c.snapshot_id is not None for c in done)

    # Exactly one run and one audit snapshot per audited period.
    runs = _rows(engine, "SELECT claim_id, snapshot_id FROM audit_runs")
    assert sorted(r.claim_id for r in runs) == sorted(c.id for c in done)
    assert {r.claim_id: r.snapshot_id for r in runs} == {c.id: c.snapshot_id for c in done}
    snapshots = _rows(engine, "SELECT id FROM snapshots WHERE kind = 'audit'")
    claimed = {c.snapshot_id for c in claims if c.snapshot_id is not None}
    assert {s.id for s in snapshots} == claimed
    assert len(claimed) == len([c for c in claims if c.snapshot_id is not None])

    # The killed replica's period was completed by another replica.
    [recovered] = [c for c in claims if c.id == victim_claim.id]
    assert recovered.status == "done"
    assert recovered.holder != victim_claim.holder


def test_sigterm_during_a_run_exits_0_and_leaves_no_partial_run(
    engine: sa.Engine, database_url: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.inject({"kind": "latency", "seconds": 2.5})  # the first vendor call is slow
    env = _env(database_url, sandbox, audit_interval="1h")
    [worker] = _start(1, env, tmp_path)
    try:
        _wait_for("the run to start", lambda: any(c.status == "running" for c in _claims(engine)))
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    log = (tmp_path / "worker-0.log").read_text()
    assert code == 0, log
    assert "worker_stopped" in log
    # Said whatever the log level: a person starting a worker sees that it runs, and stops.
    assert "preflight worker started: replica " in log
    assert "preflight worker stopped: replica " in log
    [claim] = _claims(engine)
    assert claim.status == "abandoned"
    assert _rows(engine, "SELECT id FROM audit_runs") == []
    assert _rows(engine, "SELECT id FROM findings") == []
    assert _rows(engine, "SELECT id FROM snapshots WHERE kind = 'audit'") == []

    # The abandoned period is not lost: the next replica to tick completes it.
    with Preflight(load_settings(env)) as app:
        [completed] = app.audit()
    assert completed.takeover
    assert completed.status == "ok"
    assert [c.status for c in _claims(engine)] == ["done"]
