"""A check on an embedded SQLite file runs on sqlite3 without SQLAlchemy
(:mod:`preflight.db.embedded`): it must store exactly what the session path stores, and
answer exactly what it answers.

The same story (new account and batches, holds taken and expired, rechecks, a blocked
batch, an unavailable vendor with fail-open, a billing block, labels, outcomes recorded
and a batch finished in between) runs twice against the sandbox with the same clock: once
through the embedded path, once through the engine's sessions. Every answer and every
stored row must be the same (but a snapshot's measured latency).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from preflight.api import Preflight
from preflight.db.embedded import EmbeddedSQLite
from preflight.db.session import Database
from preflight.errors import UsageError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.support import Clock, upgrade_schema

Story = list[object]


def _story(pf: Preflight, sandbox: SandboxServer, clock: Clock) -> Story:
    answers: Story = []

    def check(batch_id: str, **options: Any) -> None:
        answers.append(pf.check(batch_id, **options).to_dict())

    sandbox.set_balance(credits=Decimal("1000"), quota=Decimal("70"))
    check("z")  # a new account, as created: no need, no hold
    check("a", need="100")
    check("b", need="850.5", labels={"team": "x"})  # at risk: a's hold counts
    check("a", need="120")  # a recheck: its own hold changes
    check("c", need="5000")  # insufficient: blocked, holds nothing
    check("q", meter="api_quota_remaining", need="7")
    clock.advance(hours=7)  # past the hold expiry: a, b and q let go
    check("d", need="10")
    check("a")  # active again: takes its hold back
    sandbox.inject({"status": 503, "count": -1})
    check("e", need="3", fail_open=True)  # unavailable, dispatched unverified
    check("f", need="3")  # unavailable: blocked
    sandbox.reset()
    sandbox.inject({"status": 402, "count": 1})
    check("g", need="1")  # billing blocked
    answers.append(pf.record("a", {"job_id": "j1", "status": "succeeded", "cost": "30"}).to_dict())
    check("a", need="120")  # its hold is now what is left of its need
    answers.append(pf.finish("b").to_dict())
    check("b", need="1")  # a finished batch stays finished
    clock.advance(minutes=1)
    check("h", need="0.00000000000000000001")
    try:
        pf.check("a", account="other")
    except UsageError as error:  # refused before the vendor is asked
        answers.append(str(error))
    return answers


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(path)) as connection:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for table in ("accounts", "batches", "snapshots", "outcomes", "failure_tags"):
            cursor = connection.execute(f"SELECT * FROM {table} ORDER BY id")
            names = [column[0] for column in cursor.description]
            tables[table] = [
                tuple(v for n, v in zip(names, row, strict=True) if n != "latency_ms")
                for row in cursor.fetchall()
            ]
        return tables


@pytest.fixture
def make(sandbox: SandboxServer, tmp_path: Path) -> Callable[[str, bool], tuple[Preflight, Path]]:
    def make(name: str, embedded: bool) -> tuple[Preflight, Path]:
        path = tmp_path / f"{name}.db"
        url = f"sqlite:///{path}"
        upgrade_schema(url)
        settings = load_settings(
            {
                "PREFLIGHT_DATABASE_URL": url,
                "PREFLIGHT_VENDOR_URL": sandbox.url,
                "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
                "PREFLIGHT_BACKOFF_BASE": "0.01",
                "PREFLIGHT_BACKOFF_MAX": "0.02",
            }
        )
        database = None if embedded else Database.from_url(url)
        return Preflight(settings, database=database, clock=clock), path

    clock = Clock()
    return make


def test_the_embedded_check_answers_and_stores_what_the_session_path_does(
    make: Callable[[str, bool], tuple[Preflight, Path]], sandbox: SandboxServer
) -> None:
    results = {}
    for embedded in (True, False):
        sandbox.reset()
        pf, path = make("embedded" if embedded else "sessions", embedded)
        clock = pf.runtime.clock
        assert isinstance(clock, Clock)
        clock.now = Clock().now
        with pf:
            first = pf.runtime.plain_database
            assert isinstance(first, EmbeddedSQLite) is embedded
            answers = _story(pf, sandbox, clock)
            # Recording built the engine; the checks kept to the path they started on.
            assert pf.runtime.plain_database is first
        results[embedded] = (answers, _rows(path))
    embedded_answers, embedded_rows = results[True]
    session_answers, session_rows = results[False]
    assert embedded_answers == session_answers
    for table, rows in session_rows.items():
        assert embedded_rows[table] == rows, table
    verdicts = [a["verdict"] for a in session_answers if isinstance(a, dict) and "verdict" in a]
    assert {"go", "at_risk", "insufficient", "unavailable", "billing_blocked"} <= set(verdicts)
    assert len(session_rows["snapshots"]) == 12


def test_a_file_not_at_head_is_upgraded_by_the_engine_and_the_next_process_runs_embedded(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'preflight.db'}"
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        }
    )
    with Preflight(settings) as first:
        assert first.check("x", need="1").verdict.value == "go"
        assert isinstance(first.runtime.plain_database, Database)  # it upgraded the file
    with Preflight(settings) as second:
        assert second.check("x", need="2").snapshot_kind == "recheck"
        assert isinstance(second.runtime.plain_database, EmbeddedSQLite)


def test_an_account_created_by_a_check_is_the_row_the_models_make(tmp_path: Path) -> None:
    # On SQLite a check creates its account with plain SQL: the same row as the ORM's.
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from preflight.db import repositories
    from preflight.db.models import Account
    from preflight.db.store import AccountState
    from preflight.domain.vocabulary import SnapshotKind

    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    upgrade_schema(url)
    database = Database.from_url(url)
    now = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)

    def profile(user_id: str) -> Any:
        return SimpleNamespace(
            raw="{}",
            user_id=user_id,
            tier=None,
            credits=None,
            api_quota_remaining=None,
            extra_meters={},
            http_status=200,
            latency_ms=1,
        )

    try:
        with database.write() as session:
            repositories.insert_if_absent(
                session, Account, {"name": "by-the-models", "created_at": now}
            )
            writes = database.store(session)
            state = writes.account("by-a-check", now=now)
            for user_id in ("user-1", "user-2"):  # only the first is kept
                writes.store_snapshot(state.id, profile(user_id), now=now, kind=SnapshotKind.AUDIT)
    finally:
        database.dispose()
    with closing(sqlite3.connect(tmp_path / "accounts.db")) as connection:
        rows = connection.execute(
            "SELECT name, user_id, created_at, held_need FROM accounts ORDER BY id"
        ).fetchall()
    assert rows == [
        ("by-the-models", None, "2026-11-24 12:00:00.123456", "0"),
        ("by-a-check", "user-1", "2026-11-24 12:00:00.123456", "0"),
    ]
    assert state == AccountState(state.id, "by-a-check", None, Decimal(0))
