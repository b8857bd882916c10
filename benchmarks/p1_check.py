"""P1: a warm, in-process ``Preflight.check(batch, need=…)``, each check a new open batch.

Floor: the same profile GET with a bare ``httpx.Client`` (JSON decoded), then one INSERT of the
reading and a commit through the bare driver (sqlite3 in WAL with synchronous=NORMAL, as
preflight runs it; psycopg on PostgreSQL).

Flatness: every check leaves one more open batch with a need, so check number N runs with N
open batches on the account; the checks around number ``window`` are compared with the last
``window`` checks. Those run half a minute apart on a shared machine, so each check is taken
over the floor call run right beside it, and the medians of those paired ratios are compared.
Then the same question without the time between: checks on that account (N open batches)
alternate with checks on a fresh one (``window`` open batches).
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from typing import Any

from benchmarks.common import (
    TOKEN,
    Database,
    Report,
    Row,
    Size,
    median,
    paired,
    scratch_database,
    upgrade,
)


class Floor:
    def __init__(self, db: Database, vendor_url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=vendor_url, headers={"Authorization": f"Bearer {TOKEN}"})
        self.conn = db.connect()
        self.sqlite = db.dialect == "sqlite"
        self.conn.execute(
            "CREATE TABLE floor_snapshots (id INTEGER PRIMARY KEY, batch_id TEXT NOT NULL,"
            " credits TEXT, raw TEXT NOT NULL, taken_at TEXT NOT NULL)"
            if self.sqlite
            else "CREATE TABLE floor_snapshots (id SERIAL PRIMARY KEY, batch_id TEXT NOT NULL,"
            " credits NUMERIC, raw TEXT NOT NULL, taken_at TIMESTAMPTZ NOT NULL)"
        )
        if not self.sqlite:
            self.conn.commit()
        self.sql = (
            "INSERT INTO floor_snapshots (batch_id, credits, raw, taken_at) VALUES (?, ?, ?, ?)"
            if self.sqlite
            else "INSERT INTO floor_snapshots (batch_id, credits, raw, taken_at)"
            " VALUES (%s, %s, %s, %s)"
        )

    def __call__(self, i: int) -> None:
        from datetime import UTC, datetime

        response = self.http.get("/api/open/v1/profile")
        body = response.json()
        credits = str(body["credits"]) if self.sqlite else Decimal(str(body["credits"]))
        now = datetime.now(UTC)
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(self.sql, (f"floor-{i}", credits, response.text, now.isoformat()))
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(self.sql, (f"floor-{i}", credits, response.text, now))
            self.conn.commit()

    def close(self) -> None:
        self.http.close()
        self.conn.close()


def run(report: Report, size: Size, dialect: str, vendor_url: str, tmp: str) -> None:
    from preflight.api import Preflight
    from preflight.logs import configure_logging
    from preflight.settings import load_settings

    # As an application would (the CLI does it from PREFLIGHT_LOG_LEVEL): structlog's
    # unconfigured default prints every info event to stdout.
    configure_logging("warning")

    with scratch_database(dialect, tmp, "p1") as db:
        if dialect == "postgresql":
            upgrade(db.url)
        settings = load_settings(
            {
                "PREFLIGHT_DATABASE_URL": db.url,
                "PREFLIGHT_VENDOR_URL": vendor_url,
                "PREFLIGHT_API_TOKEN": TOKEN,
            }
        )
        floor = Floor(db, vendor_url)
        app: Any = Preflight(settings)
        need = Decimal(1)

        def check(i: int) -> None:
            app.check(f"p1-batch-{i:06d}", need=need)

        try:
            _ = app.database  # the schema checked (SQLite: created) before timing
            warm = 20
            paired(warm, floor, lambda i: check(10_000_000 + i))  # warm both up
            a, b = paired(size.checks, floor, check)
            few, many = _alternated(size, dialect, tmp, settings, app)
        finally:
            app.close()
            floor.close()
    w = size.window
    floor_med, pf_med = median(a), median(b)
    ratio = pf_med / floor_med
    report.add(
        Row(
            "P1",
            dialect,
            f"warm check, median of {size.checks}",
            floor_med,
            pf_med,
            target="≤ 2.0×",
            ok=ratio <= 2.0,
        )
    )
    early = median(b[w // 2 : w // 2 + w])  # checks around number `window`
    late = median(b[-w:])
    drift = median(a[-w:]) / median(a[w // 2 : w // 2 + w])  # the floor's, same moments
    beside = [mine / theirs for theirs, mine in zip(a, b, strict=True)]
    flat = median(beside[-w:]) / median(beside[w // 2 : w // 2 + w])
    report.add(
        Row(
            "P1",
            dialect,
            f"check #{size.checks} vs #{w} ({size.checks} open batches)",
            early,
            late,
            target="≤ 1.2×",
            ok=flat <= 1.2,
            note=f"{flat:.2f}× taken over the floor call beside each (the floor drifted "
            f"{drift:.2f}×)",
        )
    )
    side_by_side = median([m / f for f, m in zip(few, many, strict=True)])
    report.add(
        Row(
            "P1",
            dialect,
            f"check with {size.checks} vs {w} open batches, alternated",
            median(few),
            median(many),
            target="≤ 1.2×",
            ok=side_by_side <= 1.2,
            note=f"{side_by_side:.2f}× check by check",
        )
    )


def _alternated(
    size: Size, dialect: str, tmp: str, settings: Any, many: Any
) -> tuple[list[float], list[float]]:
    """Checks on ``many`` (the account with every open batch of the run) alternating with
    checks on a fresh account with ``window`` open batches: the same moments, so whatever
    differs is what the open batches cost. Each goes first every other time."""
    from preflight.api import Preflight

    need = Decimal(1)
    with scratch_database(dialect, tmp, "p1few") as db:
        if dialect == "postgresql":
            upgrade(db.url)
        few = Preflight(dataclasses.replace(settings, database_url=db.url))
        try:
            for i in range(size.window):
                few.check(f"p1-few-{i:06d}", need=need)
            times: tuple[list[float], list[float]] = ([], [])
            apps: list[tuple[Any, list[float]]] = [(few, times[0]), (many, times[1])]
            for i in range(2 * size.window):
                for app, spent in apps if i % 2 else apps[::-1]:
                    started = time.perf_counter()
                    app.check(f"p1-both-{i:06d}", need=need)
                    spent.append(time.perf_counter() - started)
        finally:
            few.close()
    return times
