"""Outcomes through the Python API on SQLite and PostgreSQL, with the sandbox vendor in process:
bulk import at scale, a bad line in a bulk import, and (re)classification of quota failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from preflight.api import Preflight
from preflight.db.models import FailureTag, TagSnapshot
from preflight.domain.classify import CLASSIFIER_VERSION
from preflight.errors import UsageError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings
from tests.support import Clock, upgrade_schema

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture
def sandbox_options() -> dict[str, Any]:
    return {"credits": Decimal("100")}


@pytest.fixture
def clock_start() -> datetime:
    return T0


@pytest.fixture
def app(database_url: str, sandbox: SandboxServer, clock: Clock) -> Iterator[Preflight]:
    upgrade_schema(database_url)  # PostgreSQL needs the explicit upgrade
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
        }
    )
    with Preflight(settings, clock=clock) as pf:
        yield pf


def line(job_id: str, **fields: Any) -> str:
    return json.dumps({"job_id": job_id, "status": "succeeded", **fields}) + "\n"


def stored_tags(app: Preflight) -> list[tuple[Any, ...]]:
    with app.database.read() as session:
        return [
            (
                t.id,
                t.outcome_id,
                t.tag,
                t.reason,
                t.evidence,
                t.attribution,
                t.unattributed,
                t.classifier_version,
                t.classified_at,
            )
            for t in session.scalars(select(FailureTag).order_by(FailureTag.id))
        ]


# ---------------------------------------------------------------- bulk


def test_record_many_streams_a_large_generator(
    app: Preflight, database_url: str, clock: Clock
) -> None:
    # 100k lines on SQLite; PostgreSQL imports far more slowly (see the report that came with
    # this test: ~38 s for 100k there), so it gets 20k to keep the suite fast.
    count = 100_000 if database_url.startswith("sqlite") else 20_000
    committed_midway: list[int] = []

    def lines() -> Iterator[str]:
        for n in range(count):
            if n == count // 2:
                # The import commits as it goes: half-way, earlier lines are already stored.
                committed_midway.append(app.show("big").to_dict()["outcomes"]["total"])
            yield line(f"job-{n:06d}", cost="0.25", http_status=200)

    result = app.record_many("big", lines())
    assert (result.lines, result.inserted, result.duplicates) == (count, count, 0)
    assert result.tags == {}
    assert 0 < committed_midway[0] < count
    totals = app.show("big").to_dict()["outcomes"]
    assert totals["total"] == count
    assert totals["succeeded"] == count
    assert Decimal(totals["cost"]) == Decimal("0.25") * count


def test_a_bad_line_keeps_every_line_before_it(app: Preflight) -> None:
    good = [line(f"j{n}", cost=str(n)) for n in range(1, 2501)]
    bad = 2100  # in the third 1000-line transaction
    lines = [*good[: bad - 1], line("oops", cost="-3"), *good[bad:]]
    with pytest.raises(UsageError, match=f"^line {bad}: cost"):
        app.record_many("B", iter(lines))
    totals = app.show("B").to_dict()["outcomes"]
    kept = bad - 1
    assert totals["total"] == kept
    assert Decimal(totals["cost"]) == kept * (kept + 1) // 2


def test_a_contradicting_duplicate_in_the_file_keeps_the_lines_before_it(app: Preflight) -> None:
    lines = [line(f"j{n}", cost="1") for n in range(1, 11)]
    lines[6] = line("j2", cost="2")  # line 7 contradicts line 2
    with pytest.raises(UsageError, match=r"^line 7: "):
        app.record_many("B", lines)
    assert app.show("B").to_dict()["outcomes"]["total"] == 6


# ---------------------------------------------------------------- classification


def test_a_late_failure_is_reclassified_when_a_snapshot_arrives(
    app: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    check = app.check("late", need="10")
    assert check.go
    sandbox.consume(Decimal("60"), meter="credits")  # nothing records this
    failed_at = T0 + timedelta(minutes=2)
    clock.now = T0 + timedelta(minutes=5)
    failure = json.dumps(
        {"job_id": "j1", "status": "failed", "http_status": 402, "at": failed_at.isoformat()}
    )
    imported = app.record_many("late", [failure])
    assert imported.tags == {"inconclusive": 1}
    first = app.show("late").to_dict()["quota_failures"][0]
    assert first["tag"] == "inconclusive"
    assert "no usable snapshot" in first["reason"]

    clock.now = T0 + timedelta(minutes=10)  # within the 1h staleness window after the failure
    reading = app.profile()
    assert app.classify("late") == {"concurrent_consumption": 1}

    failure_row = app.show("late").to_dict()["quota_failures"][0]
    assert failure_row["tag"] == "concurrent_consumption"
    evidence = failure_row["evidence"]
    assert evidence["snapshot_ids"] == [check.snapshot_id, reading.snapshot_id]
    assert (evidence["b0"], evidence["ba"], evidence["foreign"]) == ("100", "40", "60")
    assert failure_row["unattributed"] == "60"
    assert failure_row["classifier_version"] == CLASSIFIER_VERSION == "3"


def test_classify_twice_stores_the_same_tags(
    app: Preflight, sandbox: SandboxServer, clock: Clock
) -> None:
    app.check("A", need="10")
    clock.now = T0 + timedelta(seconds=10)
    app.check("B", need="10")
    clock.now = T0 + timedelta(minutes=1)
    app.record("A", {"job_id": "a1", "status": "succeeded", "cost": "30"})
    sandbox.consume(Decimal("30"), meter="credits")  # what a1 cost on the vendor
    sandbox.consume(Decimal("25"), meter="credits")  # and someone who records nothing
    clock.now = T0 + timedelta(minutes=2)
    app.record("B", {"job_id": "b1", "status": "failed", "http_status": 402})
    clock.now = T0 + timedelta(minutes=2, seconds=30)
    app.record("never-checked", {"job_id": "n1", "status": "failed", "http_status": 402})

    before = stored_tags(app)
    assert [row[2] for row in before] == ["concurrent_consumption", "inconclusive"]
    # The classifier's version is stored with each tag.
    assert {row[7] for row in before} == {CLASSIFIER_VERSION}

    clock.now = T0 + timedelta(minutes=3)
    assert app.classify() == {"concurrent_consumption": 1, "inconclusive": 1}
    clock.now = T0 + timedelta(minutes=4)
    assert app.classify("B") == {"concurrent_consumption": 1}
    assert stored_tags(app) == before

    concurrent = app.show("B").to_dict()["quota_failures"][0]
    assert concurrent["attribution"] == [{"batch_id": "A", "cost": "30"}]
    assert concurrent["unattributed"] == "25"
    with app.database.read() as session:
        cited = set(
            session.scalars(
                select(TagSnapshot.snapshot_id).where(TagSnapshot.tag_id == before[0][0])
            )
        )
    assert cited == set(concurrent["evidence"]["snapshot_ids"])
