"""``outcomes.record`` / ``record_many`` / ``classify``: idempotence, conflicts, live failure
snapshots and the tags they give, lifecycle warnings, bulk imports that stop at a bad line."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from preflight.db import repositories as repo
from preflight.db.models import Outcome
from preflight.domain.classify import (
    CLASSIFIER_VERSION,
    Classification,
    Evidence,
    QuotaFailure,
    Tag,
)
from preflight.errors import ConflictError, UsageError
from preflight.services import batches, checks, outcomes, profile
from preflight.services.runtime import Runtime
from tests.support import Clock
from tests.unit.services.fakes import (
    FakeVendor,
    concurrent_failure,
    quota_failure,
    snapshot_row,
    succeeded,
)

NEVER_CHECKED = (
    "batch 'B' was never checked: its quota failures stay inconclusive (no preflight snapshot)"
)


def line(job_id: str, **fields: Any) -> str:
    return json.dumps({"job_id": job_id, "status": "succeeded", **fields}) + "\n"


def stored(rt: Runtime) -> list[tuple[str, str | None, str | None]]:
    """Every stored outcome as (job_id, cost, expected_cost), in the order stored."""
    with rt.database.read() as session:
        rows = session.execute(
            sa.select(Outcome.job_id, Outcome.cost, Outcome.expected_cost).order_by(Outcome.id)
        )
        return [(job, _text(cost), _text(expected)) for job, cost, expected in rows]


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


# ---------------------------------------------------------------- record


def test_an_outcome_is_recorded_once(rt: Runtime, vendor: FakeVendor, clock: Clock) -> None:
    checks.check(rt, "b", need="100")
    clock.advance(minutes=1)
    first = succeeded(rt, "b", "j1", "12.5")
    again = succeeded(rt, "b", "j1", "12.5")

    assert (first.created, again.created) == (True, False)
    assert (first.tag, first.snapshot_id, first.snapshot_error, first.warnings) == (
        None,
        None,
        None,
        (),
    )
    assert vendor.reads == 1  # the check: a success takes no snapshot
    assert stored(rt) == [("j1", "12.5", None)]
    assert batches.show(rt, "b").outcomes.cost == Decimal("12.5")


@pytest.mark.parametrize(
    ("changed", "differences"),
    [
        ({"cost": "10.01"}, "cost"),
        ({"error": "boom"}, "error"),
        ({"at": "2026-11-24T11:00:00Z"}, "occurred_at"),
        (
            {"status": "failed", "http_status": 402},
            "status, cost, expected_cost, http_status, quota_failure",
        ),
    ],
)
def test_a_different_outcome_for_a_recorded_key_is_a_conflict(
    rt: Runtime, changed: dict[str, Any], differences: str
) -> None:
    original = {"job_id": "j1", "status": "succeeded", "cost": "10"}
    outcomes.record(rt, "b", original)
    with pytest.raises(ConflictError) as raised:
        outcomes.record(rt, "b", {**original, **changed})

    assert str(raised.value) == (
        f"job 'j1' attempt 1 of batch 'b' is already recorded with a different {differences}; "
        "outcomes are never overwritten (record it as a new attempt instead)"
    )
    assert stored(rt) == [("j1", "10", None)]


def test_a_live_402_is_snapshotted_and_tagged_concurrent_consumption(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    result = concurrent_failure(rt, vendor, clock)

    snapshot = snapshot_row(rt, result.snapshot_id)
    with rt.database.read() as session:
        failure_id = session.scalar(sa.select(Outcome.id).where(Outcome.job_id == "j2"))
    assert (snapshot.kind, snapshot.credits, snapshot.outcome_id) == (
        "failure",
        Decimal(70),
        failure_id,
    )
    assert snapshot.taken_at == clock.now
    assert result.tag is not None
    assert result.tag.tag is Tag.CONCURRENT_CONSUMPTION
    assert result.tag.reason == (
        "balance at the check 1000 covered own cost 30 + expected 30, but others spent 900 "
        "between the check and the snapshot that measured it"
    )
    evidence = result.tag.evidence
    assert (evidence.b0, evidence.ba, evidence.own, evidence.expected_cost, evidence.foreign) == (
        Decimal(1000),
        Decimal(70),
        Decimal(30),
        Decimal(30),
        Decimal(900),
    )
    assert (evidence.expected_cost_source, evidence.foreign_before_failure) == (
        "mean_succeeded",
        Decimal(0),
    )
    assert (evidence.foreign_is_lower_bound, evidence.before_failure) == (False, False)
    assert evidence.snapshot_ids[-1] == result.snapshot_id
    assert len(evidence.snapshot_ids) == 3  # b's preflight, other's preflight, the failure's
    assert [(a.batch_id, a.cost) for a in result.tag.attribution] == [("other", Decimal(600))]
    assert result.tag.unattributed == Decimal(300)
    assert result.to_dict()["tag"] == "concurrent_consumption"


def test_a_402_declaring_its_cost_consumed_nothing(rt: Runtime, vendor: FakeVendor) -> None:
    vendor.credits = Decimal(50)
    checks.check(rt, "b")
    result = quota_failure(rt, "b", "j1", cost="80")

    assert (result.outcome.cost, result.outcome.expected_cost) == (Decimal(0), Decimal(80))
    assert stored(rt) == [("j1", "0", "80")]
    assert result.tag is not None
    assert (result.tag.tag, result.tag.reason) == (
        Tag.PRE_EXISTING_LOW_BALANCE,
        "balance at the check 50 could not cover the batch's own cost 0 plus this job's "
        "expected 80",
    )
    assert (result.tag.evidence.expected_cost, result.tag.evidence.expected_cost_source) == (
        Decimal(80),
        "declared",
    )


def test_outcomes_of_a_never_checked_batch_are_stored_with_a_warning(
    rt: Runtime, vendor: FakeVendor
) -> None:
    ok = succeeded(rt, "B", "j1", "5")
    failed = quota_failure(rt, "B", "j2")

    assert ok.warnings == failed.warnings == (NEVER_CHECKED,)
    assert failed.tag is not None
    assert (failed.tag.tag, failed.tag.reason) == (
        Tag.INCONCLUSIVE,
        "no preflight snapshot: the batch was never checked",
    )
    assert snapshot_row(rt, failed.snapshot_id).kind == "failure"  # still measured, for later
    view = batches.show(rt, "B").batch
    assert (view.status, view.verified, view.verdict, view.account) == (
        "open",
        False,
        None,
        "default",
    )


def test_an_outcome_after_finish_is_stored_with_a_late_warning(rt: Runtime, clock: Clock) -> None:
    checks.check(rt, "b")
    clock.advance(minutes=1)
    batches.finish(rt, "b")
    clock.advance(minutes=1)
    late = succeeded(rt, "b", "j1", "5")

    assert late.created
    assert late.warnings == ("batch 'b' is finished: the outcome is stored and shown as late",)


def test_no_snapshot_when_asked_not_to_and_none_when_the_vendor_is_down(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    checks.check(rt, "b")
    clock.advance(minutes=1)
    quiet = outcomes.record(
        rt, "b", {"job_id": "j1", "status": "failed", "quota_failure": True}, snapshot=False
    )
    assert (quiet.created, quiet.snapshot_id, quiet.snapshot_error, vendor.reads) == (
        True,
        None,
        None,
        1,
    )
    assert quiet.tag is not None
    assert quiet.tag.tag is Tag.INCONCLUSIVE

    vendor.fail(500, times=3)
    down = quota_failure(rt, "b", "j2")
    assert (down.created, down.snapshot_id) == (True, None)
    assert down.snapshot_error == "vendor unavailable after 3 attempts: HTTP 500"
    assert down.tag is not None  # stored and classified all the same
    assert stored(rt) == [("j1", None, None), ("j2", None, None)]


# ---------------------------------------------------------------- record_many


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_a_bulk_import_counts_lines_inserts_and_duplicates(
    rt: Runtime, vendor: FakeVendor, clock: Clock, chunk_size: int
) -> None:
    checks.check(rt, "b")
    clock.advance(minutes=1)
    lines = [
        line("j1", cost="1.10"),
        line("j2", cost="2.20"),
        "\n",
        line("j1", cost="1.10"),
        line("j3", status="failed", http_status=402),
    ]
    result = outcomes.record_many(rt, "b", lines, chunk_size=chunk_size)

    assert (result.lines, result.inserted, result.duplicates) == (4, 3, 1)
    assert result.tags == {"inconclusive": 1}  # no live snapshot in bulk: nothing measured it
    assert (result.warnings, vendor.reads) == ((), 1)
    assert stored(rt) == [("j1", "1.10", None), ("j2", "2.20", None), ("j3", None, None)]
    again = outcomes.record_many(rt, "b", lines, chunk_size=chunk_size)
    assert (again.inserted, again.duplicates) == (0, 4)


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            "{not json\n",
            "line 3: not valid JSON: Expecting property name enclosed in double quotes",
        ),
        (line("j3", cost="-1"), "line 3: cost: must be a non-negative amount: '-1'"),
        # Said as "given on line 1" or "already recorded", as line 1 was stored yet or not.
        (line("j1", cost="9"), "line 3: job 'j1' attempt 1 "),
        (b"\xff\n", "line 3: not UTF-8 text"),
    ],
)
def test_a_bad_line_stops_the_import_keeping_every_line_before_it(
    rt: Runtime, chunk_size: int, bad: str | bytes, message: str
) -> None:
    lines = [line("j1", cost="1"), line("j2", cost="2").encode(), bad, line("j4", cost="4")]
    with pytest.raises(UsageError) as raised:
        outcomes.record_many(rt, "b", lines, chunk_size=chunk_size)

    assert str(raised.value).startswith(message)
    assert stored(rt) == [("j1", "1", None), ("j2", "2", None)]


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (
            "stored",
            "line 2: job 'j1' attempt 1 of batch 'b' is already recorded with a different cost; "
            "outcomes are never overwritten (record it as a new attempt instead) "
            "(stopped there; the 1 outcome(s) before it are kept: 1 recorded, "
            "0 already recorded)",
        ),
        (
            "in the file",
            "line 3: job 'j1' attempt 1 was given on line 1 with different values "
            "(stopped there; the 2 outcome(s) before it are kept: 2 recorded, "
            "0 already recorded)",
        ),
    ],
)
def test_a_line_contradicting_an_earlier_outcome_stops_the_import(
    rt: Runtime, first: str, message: str
) -> None:
    lines = [line("j0"), line("j1", cost="11"), line("j2")]
    if first == "stored":
        succeeded(rt, "b", "j1", "10")
    else:
        lines.insert(0, line("j1", cost="10"))
    with pytest.raises(UsageError) as raised:
        outcomes.record_many(rt, "b", lines)

    assert str(raised.value) == message
    assert sorted(stored(rt)) == [("j0", None, None), ("j1", "10", None)]


def test_a_bulk_import_into_a_never_checked_batch_warns_once(rt: Runtime) -> None:
    result = outcomes.record_many(rt, "B", [line("j1"), line("j2"), line("j3")], chunk_size=1)
    assert (result.inserted, result.warnings) == (3, (NEVER_CHECKED,))


# ---------------------------------------------------------------- classify


def stored_tag_of(rt: Runtime, batch_id: str) -> tuple[str, str, Any]:
    failure = batches.show(rt, batch_id).quota_failures[0]
    assert failure.tag is not None
    assert failure.classifier_version is not None
    return failure.tag, failure.classifier_version, failure.classified_at


def test_classify_is_idempotent(rt: Runtime, vendor: FakeVendor, clock: Clock) -> None:
    concurrent_failure(rt, vendor, clock)
    quota_failure(rt, "B", "never-checked")
    before = stored_tag_of(rt, "b")
    clock.advance(hours=1)

    assert outcomes.classify(rt) == {"concurrent_consumption": 1, "inconclusive": 1}
    assert outcomes.classify(rt, "b") == {"concurrent_consumption": 1}
    assert stored_tag_of(rt, "b") == before  # nothing changed: not even classified_at


def test_only_inconclusive_reclassifies_tags_of_an_older_classifier(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    concurrent_failure(rt, vendor, clock)
    old = Classification(Tag.PRE_EXISTING_LOW_BALANCE, "an old rule", Evidence(), version="1")
    with rt.database.write() as session:
        batch = repo.find_batch(session, "b")
        assert batch is not None
        (failure,) = repo.quota_failures(session, batch)
        repo.save_tag(session, failure, old, now=clock.now)
    assert stored_tag_of(rt, "b")[:2] == ("pre_existing_low_balance", "1")
    clock.advance(minutes=1)

    assert outcomes.classify(rt, "b", only_inconclusive=True) == {"concurrent_consumption": 1}
    assert stored_tag_of(rt, "b") == ("concurrent_consumption", CLASSIFIER_VERSION, clock.now)
    # A current tag that is not inconclusive needs nothing; an inconclusive one is redone.
    assert outcomes.classify(rt, "b", only_inconclusive=True) == {}
    quota_failure(rt, "B", "never-checked")
    assert outcomes.classify(rt, only_inconclusive=True) == {"inconclusive": 1}


def failure_views(rt: Runtime, batch_id: str) -> dict[str, dict[str, Any]]:
    return {f.job_id: f.to_dict() for f in batches.show(rt, batch_id).quota_failures}


def test_a_failures_answer_never_depends_on_another_failure_of_its_batch(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    # b is checked at 1000 (12:00) and spends 30 (12:01); 200 goes unrecorded; a manual
    # snapshot reads 770 (12:02); f1 gets a 402 at 12:03, recorded without its snapshot.
    checks.check(rt, "b", need="100")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "30", vendor)
    vendor.consume("200")
    clock.advance(minutes=1)
    profile.read_profile(rt)
    clock.advance(minutes=1)
    f1_at = clock.now
    alone = outcomes.record(
        rt, "b", {"job_id": "f1", "status": "failed", "http_status": 402}, snapshot=False
    )
    assert alone.tag is not None
    assert alone.tag.tag is Tag.CONCURRENT_CONSUMPTION
    before = failure_views(rt, "b")["f1"]
    # Nothing in f1's window (to 13:03): the 12:02 reading measures it, a lower bound.
    evidence = before["evidence"]
    assert (evidence["ba"], evidence["own"], evidence["expected_cost"]) == ("770", "30", "30")
    assert (evidence["foreign"], evidence["foreign_is_lower_bound"]) == ("200", True)

    # After f1's window: b's job of 500 (it would move f1's mean cost), another batch's
    # check and spend, and f2, a 402 an hour after f1, recorded live at 13:06.
    clock.advance(minutes=61)
    succeeded(rt, "b", "j2", "500", vendor)
    checks.check(rt, "other", need="10")
    clock.advance(minutes=1)
    succeeded(rt, "other", "o1", "200", vendor)
    clock.advance(minutes=1)
    f2_at = f1_at + timedelta(hours=1)
    quota_failure(rt, "b", "f2", at=f2_at.isoformat())

    assert outcomes.classify(rt, "b") == {"concurrent_consumption": 2}
    assert failure_views(rt, "b")["f1"] == before  # not even reclassified

    # Each failure is loaded with the same evidence, alone or with the other one.
    with rt.database.read() as session:
        batch = repo.find_batch(session, "b")
        assert batch is not None
        f1, f2 = repo.quota_failures(session, batch)

        def load(*failures: Outcome) -> list[QuotaFailure]:
            return list(
                repo.load_quota_failures(
                    session,
                    batch,
                    failures,
                    staleness_window=rt.settings.staleness_window,
                    tolerance=rt.settings.tolerance,
                )
            )

        both = load(f1, f2)
        assert (load(f1), load(f2)) == ([both[0]], [both[1]])
    assert both[0].live is None
    assert max(r.taken_at for r in both[0].timeline) == f1_at - timedelta(minutes=1)
    assert both[1].live is not None


def test_a_failure_recorded_late_is_loaded_up_to_its_live_snapshot(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    # b fails at 12:05, but the 402 is recorded (live) only at 14:00, long after the
    # window: other's spend at 13:31 happened before that snapshot and is attributed.
    checks.check(rt, "b", need="100")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "30", vendor)
    clock.advance(minutes=89)
    checks.check(rt, "other", need="100")
    clock.advance(minutes=1)
    succeeded(rt, "other", "o1", "100", vendor)
    clock.advance(minutes=29)
    failed_at = clock.now - timedelta(hours=1, minutes=55)
    recorded = quota_failure(rt, "b", "f1", at=failed_at.isoformat())
    assert recorded.snapshot_id is not None

    (failure,) = batches.show(rt, "b").quota_failures
    assert (failure.tag, failure.evidence["ba"], failure.evidence["foreign"]) == (
        "concurrent_consumption",
        "870",
        "100",
    )
    assert [(a.batch_id, a.cost) for a in failure.attribution] == [("other", Decimal(100))]
    assert failure.unattributed == 0


@pytest.mark.parametrize(
    ("batch_id", "message"),
    [("nope", "no batch 'nope'"), ("bad id", "invalid batch id 'bad id'")],
)
def test_classify_an_unknown_batch_is_a_usage_error(
    rt: Runtime, batch_id: str, message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        outcomes.classify(rt, batch_id)
    assert str(raised.value).startswith(message)


def test_the_classifier_reads_plain_frozen_rows_not_orm_objects(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    # What db/ hands the classifier's service: read rows that cannot lazy-load or be
    # changed behind the session's back.
    import dataclasses

    concurrent_failure(rt, vendor, clock)
    with rt.database.read() as session:
        batch = repo.find_batch(session, "b")
        assert batch is not None
        failures = repo.quota_failures(session, batch)
    assert len(failures) == 1
    for row in (batch, *failures):
        assert sa.inspect(row, raiseerr=False) is None  # not a mapped instance
        assert dataclasses.is_dataclass(row)
        with pytest.raises(dataclasses.FrozenInstanceError):
            row.id = 0  # type: ignore[misc]
    assert (batch.batch_id, failures[0].job_id) == ("b", "j2")
