"""P3: bulk ``preflight record BATCH --from FILE`` (JSON Lines), and in-process ``record()``.

Each import runs in a fresh child process on a fresh database, so that its peak RSS is its
own; the child times the import only (its imports and the schema come first: P2 measures
start-up). Floor, in the same kind of child: read the file, ``json.loads`` each line, and
insert the rows into the same ``outcomes`` table (same schema, same indexes) — on SQLite
with one ``executemany`` in one transaction, on PostgreSQL with one ``COPY``. The floor
validates nothing and keeps no totals; preflight checks every field of every line (exact
decimals, bounds, times), commits every 1,000 lines and keeps the batch's totals.

In-process ``Preflight.record()``: one outcome per call, each its own transaction, next to
a floor that does one INSERT and a commit per outcome through the bare driver.

    python -m benchmarks.p3_ingest floor|preflight DIALECT URL_OR_PATH FILE   (a child)
"""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    TOKEN,
    Report,
    Row,
    Size,
    child_main,
    median,
    paired,
    preflight_env,
    run_child,
    scratch_database,
    upgrade,
)

_FLOOR_TABLE_SQLITE = (
    "CREATE TABLE floor_outcomes (id INTEGER PRIMARY KEY, batch_pk INTEGER NOT NULL,"
    " job_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, http_status INTEGER,"
    " cost TEXT, occurred_at TEXT NOT NULL, recorded_at TEXT NOT NULL,"
    " UNIQUE (batch_pk, job_id, attempt))"
)
_FLOOR_TABLE_PG = (
    "CREATE TABLE floor_outcomes (id SERIAL PRIMARY KEY, batch_pk INTEGER NOT NULL,"
    " job_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, http_status INTEGER,"
    " cost NUMERIC, occurred_at TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,"
    " UNIQUE (batch_pk, job_id, attempt))"
)


def write_lines(path: Path, count: int) -> None:
    """``count`` outcomes of one batch: 1 in 50 failed (HTTP 500), the rest cost 0.25."""
    with path.open("w", encoding="utf-8") as fh:
        for n in range(count):
            failed = n % 50 == 49
            fh.write(
                json.dumps(
                    {
                        "job_id": f"job-{n:07d}",
                        "status": "failed" if failed else "succeeded",
                        "cost": None if failed else "0.25",
                        "http_status": 500 if failed else 200,
                        "at": f"2026-11-24T10:{n // 6000 % 60:02d}:{n // 100 % 60:02d}+00:00",
                    }
                )
                + "\n"
            )


# ---------------------------------------------------------------- children


_OUTCOME_COLUMNS = (
    "batch_pk, job_id, attempt, status, http_status, cost, expected_cost, error, quota_failure,"
    " occurred_at, recorded_at"
)


def _floor(dialect: str, target: str, path: str) -> dict[str, Any]:
    """The same rows into the same ``outcomes`` table (its indexes included), as directly as
    the driver allows: parsed with json.loads, nothing validated, one transaction."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    if dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        stamp = now.replace(tzinfo=None).isoformat(" ", "microseconds")
        conn.execute("INSERT INTO accounts (id, name, created_at) VALUES (1, 'floor', ?)", (stamp,))
        conn.execute(
            "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified, labels,"
            " created_at, last_activity_at) VALUES (1, 'floor', 1, '0', 'open', 0, '{}', ?, ?)",
            (stamp, stamp),
        )
        started = time.perf_counter()
        with open(path, encoding="utf-8") as lines:
            rows = (
                (
                    1,
                    d["job_id"],
                    d.get("attempt", 1),
                    d["status"],
                    d.get("http_status"),
                    d.get("cost"),
                    None,
                    None,
                    0,
                    d.get("at") or stamp,
                    stamp,
                )
                for d in map(json.loads, lines)
            )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO outcomes ({_OUTCOME_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return {"seconds": elapsed}
    import psycopg

    dsn, schema = target.split("|", 1)
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn:
        conn.execute("INSERT INTO accounts (id, name, created_at) VALUES (1, 'floor', %s)", (now,))
        conn.execute(
            "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified, labels,"
            " created_at, last_activity_at) VALUES (1, 'floor', 1, 0, 'open', false, '{}', %s, %s)",
            (now, now),
        )
        conn.commit()
        started = time.perf_counter()
        with (
            open(path, encoding="utf-8") as lines,
            conn.cursor() as cur,
            cur.copy(f"COPY outcomes ({_OUTCOME_COLUMNS}) FROM STDIN") as copy,
        ):
            for d in map(json.loads, lines):
                copy.write_row(
                    (
                        1,
                        d["job_id"],
                        d.get("attempt", 1),
                        d["status"],
                        d.get("http_status"),
                        d.get("cost"),
                        None,
                        None,
                        False,
                        d.get("at") or now,
                        now,
                    )
                )
        conn.commit()
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed}


def _preflight(dialect: str, url: str, path: str) -> dict[str, Any]:
    import contextlib
    import io

    # Everything the import needs, imported before the clock starts (P2 measures start-up).
    import preflight.api
    import preflight.db.store_postgresql
    import preflight.db.store_sqlite
    import preflight.services.outcomes  # noqa: F401
    from preflight.cli import cli
    from preflight.db.migrate import ensure_schema
    from preflight.db.session import build_engine

    engine = build_engine(url)
    ensure_schema(engine)
    engine.dispose()
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        cli.main(
            ["record", "bench-batch", "--from", path, "--format", "json"],
            prog_name="preflight",
            standalone_mode=False,
        )
    elapsed = time.perf_counter() - started
    result = json.loads(out.getvalue())
    return {"seconds": elapsed, "inserted": result["inserted"]}


def _child(kind: str, dialect: str, target: str, path: str) -> dict[str, Any]:
    return _floor(dialect, target, path) if kind == "floor" else _preflight(dialect, target, path)


# ---------------------------------------------------------------- in-process record()


class _RecordFloor:
    def __init__(self, db: Any) -> None:
        self.conn = db.connect()
        self.sqlite = db.dialect == "sqlite"
        self.conn.execute(_FLOOR_TABLE_SQLITE if self.sqlite else _FLOOR_TABLE_PG)
        if not self.sqlite:
            self.conn.commit()

    def __call__(self, i: int) -> None:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO floor_outcomes (batch_pk, job_id, attempt, status, http_status,"
                " cost, occurred_at, recorded_at) VALUES (1, ?, 1, 'succeeded', 200, '0.25', ?, ?)"
                " ON CONFLICT DO NOTHING",
                (f"job-{i}", now.isoformat(), now.isoformat()),
            )
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(
                "INSERT INTO floor_outcomes (batch_pk, job_id, attempt, status, http_status,"
                " cost, occurred_at, recorded_at)"
                " VALUES (1, %s, 1, 'succeeded', 200, 0.25, %s, %s) ON CONFLICT DO NOTHING",
                (f"job-{i}", now, now),
            )
            self.conn.commit()


def _record_in_process(report: Report, size: Size, dialect: str, tmp: str) -> None:
    from preflight.api import Preflight
    from preflight.logs import configure_logging
    from preflight.settings import load_settings

    configure_logging("warning")
    with scratch_database(dialect, tmp, "p3rec") as db:
        if dialect == "postgresql":
            upgrade(db.url)
        app = Preflight(
            load_settings(
                {
                    "PREFLIGHT_DATABASE_URL": db.url,
                    "PREFLIGHT_VENDOR_URL": "http://127.0.0.1:9",
                    "PREFLIGHT_API_TOKEN": TOKEN,
                }
            )
        )
        floor = _RecordFloor(db)
        cost = Decimal("0.25")

        def record(i: int) -> None:
            app.record("p3-record", {"job_id": f"job-{i}", "status": "succeeded", "cost": cost})

        try:
            _ = app.database
            paired(50, floor, lambda i: record(10_000_000 + i))
            a, b = paired(size.records, floor, record)
        finally:
            app.close()
            floor.conn.close()
    floor_rate, rate = 1 / median(a), 1 / median(b)
    target = "≥ 3,000/s" if dialect == "sqlite" else ""
    report.add(
        Row(
            "P3",
            dialect,
            "in-process Preflight.record(), one outcome a call",
            floor_rate,
            rate,
            unit="/s",
            target=target,
            ok=(rate >= 3000) if dialect == "sqlite" else None,
        )
    )


# ---------------------------------------------------------------- the path


def run(report: Report, size: Size, dialect: str, vendor_url: str, tmp: str) -> None:
    del vendor_url  # bulk import never calls the vendor
    rss: dict[int, float] = {}
    need = 0.6 if dialect == "sqlite" else 0.4
    for lines in size.ingest:
        data = Path(tmp) / f"outcomes-{lines}.jsonl"
        if not data.exists():
            write_lines(data, lines)
        floors: list[float] = []
        ours: list[float] = []
        peaks: list[float] = []
        for _ in range(size.ingest_repeats):
            with scratch_database(dialect, tmp, "p3floor") as db:
                upgrade(db.url)  # the floor writes into preflight's own outcomes table
                target = db.sqlite_path if dialect == "sqlite" else f"{db.pg_dsn}|{db.pg_schema}"
                assert target is not None
                floors.append(_run("floor", dialect, target, data).output["seconds"])
            with scratch_database(dialect, tmp, "p3") as db:
                if dialect == "postgresql":
                    upgrade(db.url)
                result = _run("preflight", dialect, db.url, data)
                assert result.output["inserted"] == lines, result.output
                ours.append(result.output["seconds"])
                peaks.append(result.peak_rss_mib)
        rss[lines] = max(peaks)
        floor_rate, rate = lines / median(floors), lines / median(ours)
        share = rate / floor_rate
        report.add(
            Row(
                "P3",
                dialect,
                f"bulk record --from, {lines:,} lines (lines/s)",
                floor_rate,
                rate,
                unit="/s",
                target=f"≥ {need}× floor",
                ok=share >= need if lines >= 100_000 else None,
                note=f"peak RSS {rss[lines]:.0f} MiB",
            )
        )
    if len(rss) > 1:
        small, large = min(rss), max(rss)
        report.add(
            Row(
                "P3",
                dialect,
                f"peak RSS at {large:,} vs {small:,} lines",
                rss[small],
                rss[large],
                unit="MiB",
                target="≤ 1.2×",
                ok=rss[large] <= 1.2 * rss[small],
            )
        )
    _record_in_process(report, size, dialect, tmp)


def _run(kind: str, dialect: str, target: str, data: Path) -> Any:
    env = preflight_env(target if kind == "preflight" else "sqlite://")
    return run_child(
        [sys.executable, "-m", "benchmarks.p3_ingest", kind, dialect, target, str(data)], env
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    child_main(_child)
