"""Retention runs in SQL, chunk by chunk: it deletes exactly what the pure rule
(``preflight.domain.audit.retention_doomed``) dooms, minus the snapshots a tag cites."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from preflight.db import audit as store
from preflight.db.models import (
    Account,
    Batch,
    Snapshot,
)
from preflight.db.session import Database
from preflight.domain.audit import retention_doomed
from tests.support import cite_snapshots, upgrade_schema

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HORIZON = timedelta(days=3)


def _times(rng: random.Random, count: int) -> list[datetime]:
    """Times over 40 days, clustered so that many share an hour or a day, some equal."""
    times = []
    for _ in range(count):
        base = NOW - timedelta(days=rng.randint(0, 40), hours=rng.randint(0, 23))
        times.append(base.replace(minute=rng.choice([0, 0, 5, 59]), second=0, microsecond=0))
    return times


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 7, 100_000])
def test_sql_retention_deletes_what_the_rule_dooms(
    database_url: str, seed: int, chunk: int
) -> None:
    upgrade_schema(database_url)
    rng = random.Random(seed)
    database = Database.from_url(database_url)
    try:
        with database.write() as session:
            account = Account(name="default", created_at=NOW)
            other = Account(name="other", created_at=NOW)
            session.add_all([account, other])
            session.flush()
            batch = Batch(
                batch_id="b",
                account_id=account.id,
                reserve=Decimal(0),
                status="finished",
                verified=True,
                labels={},
                created_at=NOW,
                last_activity_at=NOW,
            )
            session.add(batch)
            session.flush()
            audit: list[tuple[int, datetime]] = []
            kept_anyway: set[int] = set()
            for at in _times(rng, 160):
                kind = rng.choice(["audit"] * 6 + ["manual", "recheck", "other-account"])
                row = Snapshot(
                    account_id=other.id if kind == "other-account" else account.id,
                    kind="audit" if kind == "other-account" else kind,
                    batch_pk=batch.id if kind == "recheck" else None,
                    taken_at=at,
                    credits=Decimal(1),
                    raw="{}",
                    http_status=200,
                    latency_ms=1,
                )
                session.add(row)
                session.flush()
                if kind == "audit":
                    audit.append((row.id, at))
                else:
                    kept_anyway.add(row.id)
            cited = {sid for sid, _ in rng.sample(audit, 12)}
            cite_snapshots(session, batch.id, cited, at=NOW, tag="inconclusive")
            account_id = account.id

        expected = set(retention_doomed(audit, now=NOW, horizon=HORIZON)) - cited
        hourly_before, daily_before = NOW - HORIZON, NOW - 7 * HORIZON
        deleted = 0
        start: datetime | None = None
        while start is None or start < hourly_before:
            with database.write() as session:
                end = store.next_retention_chunk(
                    session, account_id, start=start, before=hourly_before, rows=chunk
                )
                deleted += store.thin_audit_snapshots(
                    session, account_id, start=start, end=end, daily_before=daily_before
                )
            start = end
        with database.read() as session:
            left = set(session.scalars(sa.select(Snapshot.id)))
    finally:
        database.dispose()

    every = {sid for sid, _ in audit} | kept_anyway
    assert every - left == expected
    assert deleted == len(expected)
    assert expected  # the data did exercise thinning
