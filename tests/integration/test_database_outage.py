"""A PostgreSQL outage is ridden out: writers retry transient connection errors with backoff
for up to PREFLIGHT_DATABASE_OUTAGE_WINDOW, an acknowledged outcome is always stored, and a
bulk import resumes where it was. The outage is a loopback proxy the test cuts and restores
(the shared server is never stopped)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from preflight.db.session import Database, build_engine
from preflight.errors import StorageError
from tests.support import TcpProxy, upgrade_schema

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WRITERS = 4
CUT_SECONDS = 10

WRITER = """
import sys, time
from preflight import Preflight, StorageError
writer, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
with Preflight() as pf:
    n = 0
    while time.monotonic() < until:
        job = f"{writer}-{n}"
        try:
            pf.record("outage", {"job_id": job, "status": "succeeded", "cost": "1"})
        except StorageError as error:
            print("storage error:", error, file=sys.stderr)
            sys.exit(3)
        print(job, flush=True)  # acknowledged: it must be stored
        n += 1
        time.sleep(0.05)
"""


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    upgrade_schema(postgres_url)
    url = sa.make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
    finally:
        proxy.close()


def _count(postgres_url: str, sql: str) -> list[tuple[object, ...]]:
    engine = build_engine(postgres_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_writers_ride_out_a_ten_second_cut(
    proxied: tuple[str, TcpProxy], postgres_url: str, tmp_path: Path
) -> None:
    url, proxy = proxied
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "PREFLIGHT_DATABASE_URL": url,
            "PREFLIGHT_API_TOKEN": "outage-token-1234",
            "PREFLIGHT_VENDOR_URL": "http://127.0.0.1:9",  # never called: no 402 here
            "PREFLIGHT_DATABASE_OUTAGE_WINDOW": "30s",
        }
    )
    lines = "".join(
        f'{{"job_id": "bulk-{n}", "status": "succeeded", "cost": "0.5"}}\n' for n in range(3000)
    )
    (tmp_path / "bulk.jsonl").write_text(lines)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"w{n}", str(CUT_SECONDS + 4)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    time.sleep(1.5)  # the writers are recording
    proxy.cut()
    # A bulk import that starts during the outage waits for the database, then resumes.
    bulk = subprocess.Popen(
        [sys.executable, "-m", "preflight", "record", "outage-bulk", "--from", "bulk.jsonl"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(CUT_SECONDS)
    proxy.restore()
    results = [writer.communicate(timeout=90) for writer in writers]
    bulk_out, bulk_err = bulk.communicate(timeout=90)

    assert [w.returncode for w in writers] == [0] * WRITERS, [err for _, err in results]
    assert bulk.returncode == 0, bulk_err
    assert "3000 recorded" in bulk_out
    acknowledged = {line for out, _ in results for line in out.split()}
    assert len(acknowledged) > WRITERS * 10  # they recorded before, during and after
    stored = _count(
        postgres_url,
        "SELECT o.job_id FROM outcomes o JOIN batches b ON b.id = o.batch_pk "
        "WHERE b.batch_id = 'outage'",
    )
    stored_jobs = [job for (job,) in stored]
    assert len(stored_jobs) == len(set(stored_jobs))  # none duplicated
    assert acknowledged <= set(stored_jobs)  # every exit-0 acknowledgement is stored
    assert _count(
        postgres_url,
        "SELECT count(*) FROM outcomes o JOIN batches b ON b.id = o.batch_pk "
        "WHERE b.batch_id = 'outage-bulk'",
    ) == [(3000,)]


def test_an_outage_longer_than_the_window_is_a_storage_error(
    proxied: tuple[str, TcpProxy],
) -> None:
    url, proxy = proxied
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:  # the injected clock moves; no real waiting
        slept.append(seconds)
        now[0] += seconds

    database = Database(build_engine(url), outage_window=5, sleep=sleep, monotonic=lambda: now[0])
    try:
        proxy.cut()
        with pytest.raises(StorageError, match="database error"), database.write():
            pass
        assert sum(slept) >= 5  # retried with backoff through the window, then gave up
        assert slept[:3] == [0.1, 0.2, 0.4]
        proxy.restore()
        with database.write() as session:  # and works again once the database is back
            assert session.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()


# ---------------------------------------------------------------- the window, on time


WINDOW = 30.0


class FakeClock:
    """The database's clock and sleep: time moves only when it sleeps (or a test says)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.when_past: tuple[float, Callable[[], None]] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.when_past is not None and self.now >= self.when_past[0]:
            self.when_past[1]()
            self.when_past = None


@pytest.fixture
def clocked(proxied: tuple[str, TcpProxy]) -> Iterator[tuple[Database, FakeClock, TcpProxy]]:
    url, proxy = proxied
    clock = FakeClock()
    database = Database(
        build_engine(url), outage_window=WINDOW, sleep=clock.sleep, monotonic=clock.monotonic
    )
    try:
        yield database, clock, proxy
    finally:
        proxy.restore()
        database.dispose()


def test_a_call_in_flight_gives_up_when_the_window_closes(
    clocked: tuple[Database, FakeClock, TcpProxy],
) -> None:
    database, clock, proxy = clocked
    with database.write() as session:  # a pooled connection, as on a busy server
        session.execute(sa.text("SELECT 1"))
    cut_at: list[float] = []

    def work(store: Any) -> None:
        clock.now += 10  # a long unit of work: the outage starts in the middle of it
        if not cut_at:
            proxy.cut()
            cut_at.append(clock.now)
        store.has_preflight_snapshot(0)  # one statement through the write port

    with pytest.raises(StorageError, match="database error"):
        database.run_write(work)
    # The window opened when the call met the outage, and no backoff went past its end:
    # the call neither gave up early nor rode a second window for the re-run's transaction.
    assert cut_at[0] + WINDOW - 1 <= clock.now <= cut_at[0] + WINDOW + 1
    assert clock.slept[:3] == [0.1, 0.2, 0.4]


@pytest.mark.parametrize("call", ["write", "read", "run_write"])
def test_a_call_that_starts_in_an_outage_gives_up_when_the_window_closes(
    clocked: tuple[Database, FakeClock, TcpProxy], call: str
) -> None:
    database, clock, proxy = clocked
    proxy.cut()
    cut_at = clock.now

    def attempt() -> None:
        if call == "run_write":
            database.run_write(lambda store: store.has_preflight_snapshot(0))
            return
        with getattr(database, call)() as session:
            session.execute(sa.text("SELECT 1"))

    with pytest.raises(StorageError, match="database error"):
        attempt()
    assert cut_at + WINDOW - 1 <= clock.now <= cut_at + WINDOW + 1


def test_an_outage_shorter_than_the_window_is_ridden_out(
    clocked: tuple[Database, FakeClock, TcpProxy],
) -> None:
    database, clock, proxy = clocked
    with database.write() as session:
        session.execute(sa.text("SELECT 1"))
    runs: list[float] = []

    def work(store: Any) -> int:
        if not runs:
            proxy.cut()
            clock.when_past = (clock.now + WINDOW - 2, proxy.restore)  # back 2 s before the end
        runs.append(clock.now)
        return 0 if store.has_preflight_snapshot(0) else 1

    assert database.run_write(work) == 1
    assert len(runs) == 2  # re-run once the database was back
    assert runs[1] - runs[0] < WINDOW
