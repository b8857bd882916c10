"""Large histories written straight through the driver (sqlite3 executemany, psycopg COPY):
millions of rows in seconds, where going through preflight would take the benchmark's time.

The rows are what preflight itself would have stored (amounts and times in each dialect's
stored form, the totals each batch keeps). A schema without those totals (an older
revision) gets the rows without them, so the same benchmark runs against older code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from benchmarks.common import Database

COST = Decimal("0.25")
NOW = datetime.now(UTC).replace(microsecond=0)


def _stored_time(dialect: str, moment: datetime) -> Any:
    if dialect == "sqlite":
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return moment


def _stored_amount(dialect: str, amount: Decimal | None) -> Any:
    if amount is None or dialect != "sqlite":
        return amount
    return format(amount, "f")


def _columns(db: Database, conn: Any, table: str) -> set[str]:
    if db.dialect == "sqlite":
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        (db.pg_schema, table),
    ).fetchall()
    return {row[0] for row in rows}


def _insert(
    db: Database, conn: Any, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    names = ", ".join(columns)
    if db.dialect == "sqlite":
        marks = ", ".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        return
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _begin(db: Database, conn: Any) -> None:
    if db.dialect == "sqlite":
        conn.execute("BEGIN IMMEDIATE")


def _commit(db: Database, conn: Any) -> None:
    if db.dialect == "sqlite":
        conn.execute("COMMIT")
    else:
        conn.commit()


def _account(db: Database, conn: Any) -> None:
    _insert(
        db,
        conn,
        "accounts",
        ["id", "name", "created_at"],
        [(1, "default", _stored_time(db.dialect, NOW - timedelta(days=800)))],
    )


def _batches(
    db: Database, conn: Any, count: int, per_batch: int, start: datetime, *, quota: int
) -> None:
    """``count`` finished batches of ``per_batch`` outcomes each (``quota`` of them 402s)."""
    d = db.dialect
    kept = "outcome_count" in _columns(db, conn, "batches")
    columns = [
        "id",
        "batch_id",
        "account_id",
        "meter",
        "need",
        "reserve",
        "status",
        "verdict",
        "verified",
        "labels",
        "created_at",
        "checked_at",
        "finished_at",
        "last_activity_at",
    ]
    if kept:
        columns += [
            "outcome_count",
            "failed_count",
            "quota_failure_count",
            "late_count",
            "consumed_cost",
        ]

    def rows() -> Iterator[tuple[Any, ...]]:
        for b in range(1, count + 1):
            created = start + timedelta(minutes=b)
            finished = created + timedelta(hours=1)
            row: tuple[Any, ...] = (
                b,
                f"batch-{b:05d}",
                1,
                "credits",
                _stored_amount(d, Decimal(per_batch)),
                _stored_amount(d, Decimal(0)),
                "finished",
                "go",
                True if d != "sqlite" else 1,
                "{}",
                _stored_time(d, created),
                _stored_time(d, created),
                _stored_time(d, finished),
                _stored_time(d, finished),
            )
            if kept:
                row += (per_batch, quota, quota, 0, _stored_amount(d, COST * (per_batch - quota)))
            yield row

    _insert(db, conn, "batches", columns, rows())


def listing_history(db: Database, outcomes: int, batches: int = 1_000) -> None:
    """``outcomes`` outcomes over ``batches`` finished batches: one quota failure (tagged) per
    batch, two snapshots per batch; the rest succeeded at 0.25."""
    from preflight.domain.classify import CLASSIFIER_VERSION

    d = db.dialect
    per_batch = max(outcomes // batches, 1)
    start = NOW - timedelta(days=30)
    conn = db.connect()
    try:
        _begin(db, conn)
        _account(db, conn)
        _batches(db, conn, batches, per_batch, start, quota=1)

        def outcome_rows() -> Iterator[tuple[Any, ...]]:
            pk = 0
            for b in range(1, batches + 1):
                created = start + timedelta(minutes=b)
                for j in range(per_batch):
                    pk += 1
                    at = _stored_time(d, created + timedelta(seconds=j % 3600))
                    failed = j == per_batch // 2
                    yield (
                        pk,
                        b,
                        f"job-{j:07d}",
                        1,
                        "failed" if failed else "succeeded",
                        402 if failed else 200,
                        _stored_amount(d, None if failed else COST),
                        None,
                        None,
                        (1 if failed else 0) if d == "sqlite" else failed,
                        at,
                        at,
                    )

        _insert(
            db,
            conn,
            "outcomes",
            [
                "id",
                "batch_pk",
                "job_id",
                "attempt",
                "status",
                "http_status",
                "cost",
                "expected_cost",
                "error",
                "quota_failure",
                "occurred_at",
                "recorded_at",
            ],
            outcome_rows(),
        )
        _commit(db, conn)
        _begin(db, conn)
        _insert(
            db,
            conn,
            "snapshots",
            [
                "id",
                "account_id",
                "batch_pk",
                "kind",
                "taken_at",
                "credits",
                "raw",
                "http_status",
                "latency_ms",
            ],
            (
                (
                    2 * b - 1 + k,
                    1,
                    b,
                    kind,
                    _stored_time(d, start + timedelta(minutes=b, hours=k)),
                    _stored_amount(d, Decimal(1_000_000 - b)),
                    '{"credits": 1}',
                    200,
                    1,
                )
                for b in range(1, batches + 1)
                for k, kind in enumerate(("preflight", "finish"))
            ),
        )
        # The tag of each batch's quota failure (its outcome id is known from the layout).
        evidence = json.dumps({"balance_at_preflight": "1000", "snapshot_ids": []})
        _insert(
            db,
            conn,
            "failure_tags",
            [
                "id",
                "outcome_id",
                "tag",
                "reason",
                "evidence",
                "attribution",
                "unattributed",
                "classifier_version",
                "classified_at",
            ],
            (
                (
                    b,
                    (b - 1) * per_batch + per_batch // 2 + 1,
                    "concurrent_consumption",
                    "others spent the balance",
                    evidence,
                    "[]",
                    None,
                    CLASSIFIER_VERSION,
                    _stored_time(d, NOW),
                )
                for b in range(1, batches + 1)
            ),
        )
        _commit(db, conn)
        _analyze(db, conn)
    finally:
        conn.close()


def audit_history(db: Database, snapshots: int, *, thin: int = 0) -> None:
    """An account's history of ``snapshots`` snapshots: the last day's audit snapshots (every
    15 min, as the worker takes them), already-thinned older audit snapshots (hourly then
    daily, when the history is large), and older snapshots of 100 finished batches.
    ``thin``: besides, that many audit snapshots 30–90 days old, 5 s apart, none thinned yet
    (the first tick after enabling retention, or after a long outage of the worker)."""
    d = db.dialect
    conn = db.connect()
    try:
        _begin(db, conn)
        _account(db, conn)
        _batches(db, conn, 100, 10, NOW - timedelta(days=700), quota=0)
        recent = [NOW - timedelta(minutes=15 * k) for k in range(1, 97)]
        thinned: list[datetime] = []
        if snapshots >= 100_000:
            thinned = [NOW - timedelta(days=31, hours=h) for h in range(0, 180 * 24)]
            thinned += [NOW - timedelta(days=211 + k) for k in range(0, 500)]
        old = max(snapshots - len(recent) - len(thinned), 0)
        span = timedelta(days=690).total_seconds()
        ids = iter(range(1, 10**9))

        def rows() -> Iterator[tuple[Any, ...]]:
            for moment in recent + thinned:
                yield (
                    next(ids),
                    1,
                    None,
                    "audit",
                    _stored_time(d, moment),
                    _stored_amount(d, Decimal(1000)),
                    '{"credits": 1000}',
                    200,
                    1,
                )
            for k in range(old):
                moment = NOW - timedelta(days=700) + timedelta(seconds=span * k / max(old, 1))
                yield (
                    next(ids),
                    1,
                    1 + k % 100,
                    "recheck",
                    _stored_time(d, moment),
                    _stored_amount(d, Decimal(1000)),
                    '{"credits": 1000}',
                    200,
                    1,
                )
            first = NOW - timedelta(days=30) - timedelta(seconds=5 * thin)
            for k in range(thin):
                yield (
                    next(ids),
                    1,
                    None,
                    "audit",
                    _stored_time(d, first + timedelta(seconds=5 * k)),
                    _stored_amount(d, Decimal(1000)),
                    '{"credits": 1000}',
                    200,
                    1,
                )

        _insert(
            db,
            conn,
            "snapshots",
            [
                "id",
                "account_id",
                "batch_pk",
                "kind",
                "taken_at",
                "credits",
                "raw",
                "http_status",
                "latency_ms",
            ],
            rows(),
        )
        _commit(db, conn)
        if d == "postgresql":
            # Rows written with explicit ids: the sequence must move past them.
            conn.execute("SELECT setval('snapshots_id_seq', (SELECT max(id) FROM snapshots))")
            conn.execute("SELECT setval('batches_id_seq', (SELECT max(id) FROM batches))")
            conn.execute("SELECT setval('accounts_id_seq', 1)")
            conn.commit()
        _analyze(db, conn)
    finally:
        conn.close()


def _analyze(db: Database, conn: Any) -> None:
    conn.execute("ANALYZE")
    if db.dialect == "postgresql":
        conn.commit()
