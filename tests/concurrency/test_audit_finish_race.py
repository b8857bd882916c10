"""The audit's auto-finish of stale batches, and records and checks of the account, at once.

The audit finds its stale batches (quiet past ``stale_after``), then finishes each in its
last transaction only if nothing happened to it since. Records of the same batches are
released together with that transaction, at the point where it finishes them. Whatever
order the database serialises them in, each batch ends in one of two consistent states:

- the record came first: the batch stays open, it holds its need less the cost recorded;
- the finish came first: the batch is finished, holds nothing, and the record is stored as
  a late outcome and says so.

Checks of new batches of the account, and a re-check of a stale one, go at the same moment:
the new batches hold their need whatever the order, and the account's held need is the sum
of what its open batches hold. On SQLite the finish
transaction holds the write lock when it reaches the barrier, so the records always come
second there; on PostgreSQL they race for the account's row. One more record lands between
the audit's scan and its finish, every time: that batch must stay open.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from preflight.api import Preflight
from preflight.db import audit as audit_store
from preflight.sandbox import SandboxServer
from preflight.services.results import RecordResult
from tests.concurrency.conftest import new_account, settings_with
from tests.concurrency.support import BARRIER_TIMEOUT, VendorGate, account_rows, run_together

BATCHES = 4
NEED = Decimal(10)
COST = Decimal(3)
#: Past the default stale_after (6 hours): every batch checked now is stale then.
LATER = timedelta(hours=7)


def _batches(url: str, account: str) -> dict[str, tuple[str, Decimal | None]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT b.batch_id, b.status, b.held FROM batches AS b"
                    " JOIN accounts AS a ON a.id = b.account_id WHERE a.name = :name"
                ),
                {"name": account},
            ).all()
    finally:
        engine.dispose()
    return {
        batch_id: (status, None if held is None else Decimal(str(held)))
        for batch_id, status, held in rows
    }


def _is_late(result: RecordResult) -> bool:
    return any("is finished" in warning for warning in result.warnings)


@pytest.mark.parametrize("round_", range(3))
def test_the_audits_auto_finish_and_records_of_its_stale_batches_at_once(
    url: str,
    gate: VendorGate,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    round_: int,
) -> None:
    sandbox.set_balance(credits=Decimal(1000))
    account = new_account()
    settings = dataclasses.replace(settings_with(url, gate, account), auto_finish_stale=True)
    batch_ids = [f"{account}-stale-{k}" for k in range(BATCHES)]
    revived = f"{account}-revived"  # recorded after the audit found it stale
    rechecked = f"{account}-rechecked"  # stale, and checked again during the finish
    new = [f"{account}-new-{k}" for k in range(2)]
    with Preflight(settings) as setup:
        for batch_id in (*batch_ids, revived, rechecked):
            setup.check(batch_id, need=NEED, account=account)

    # The audit's finish transaction and every record meet here.
    checks = [rechecked, *new]
    barrier = threading.Barrier(1 + BATCHES + len(checks), timeout=BARRIER_TIMEOUT)
    finish_stale = audit_store.auto_finish

    def finish_at_the_barrier(*args: Any, **kwargs: Any) -> None:
        barrier.wait()
        finish_stale(*args, **kwargs)

    monkeypatch.setattr(audit_store, "auto_finish", finish_at_the_barrier)

    def later() -> datetime:
        return datetime.now(UTC) + LATER

    find_stale = audit_store.stale_batches
    revived_record: list[RecordResult] = []

    def record_after_the_scan(*args: Any, **kwargs: Any) -> Any:
        found = find_stale(*args, **kwargs)
        with Preflight(settings, clock=later) as other:
            revived_record.append(record(other, revived, meet=False))
        return found

    monkeypatch.setattr(audit_store, "stale_batches", record_after_the_scan)

    def audit(facade: Preflight) -> Any:
        return facade.audit(account=account, force=True, log_findings=False)

    def record(facade: Preflight, batch_id: str, *, meet: bool = True) -> RecordResult:
        if meet:
            barrier.wait()
        return facade.record(
            batch_id,
            {"job_id": f"job-{batch_id}", "status": "succeeded", "cost": str(COST)},
            snapshot=False,
            account=account,
        )

    def check(facade: Preflight, batch_id: str) -> Any:
        barrier.wait()
        return facade.check(batch_id, need=NEED, account=account)

    facades = [Preflight(settings, clock=later) for _ in range(1 + BATCHES + len(checks))]
    try:
        with capture_logs() as logs:
            audited, *answers = run_together(
                [
                    partial(audit, facades[0]),
                    *(
                        partial(record, facade, batch_id)
                        for facade, batch_id in zip(facades[1:], batch_ids, strict=False)
                    ),
                    *(
                        partial(check, facade, batch_id)
                        for facade, batch_id in zip(facades[1 + BATCHES :], checks, strict=True)
                    ),
                ]
            )
            recorded = answers[:BATCHES]
    finally:
        for facade in facades:
            facade.close()

    assert [e for e in logs if e["event"] == "database_retry"] == []
    assert [outcome.skipped for outcome in audited] == [False]
    stored = _batches(url, account)
    assert stored[revived] == ("open", NEED - COST)
    assert [_is_late(result) for result in revived_record] == [False]
    for batch_id, result in zip(batch_ids, recorded, strict=True):
        status, held = stored[batch_id]
        if status == "finished":  # the finish came first: the record is late
            assert (held, _is_late(result)) == (None, True), batch_id
        else:  # the record came first: the batch is no longer stale and stays open
            assert (status, held, _is_late(result)) == ("open", NEED - COST, False), batch_id
    assert {batch_id: stored[batch_id] for batch_id in new} == dict.fromkeys(new, ("open", NEED))
    assert stored[rechecked] in {("open", NEED), ("finished", None)}
    rows = account_rows(url, account)
    held_by_open = sum((h for s, h in stored.values() if s == "open" and h is not None), Decimal(0))
    assert rows.held_need == held_by_open == rows.outstanding
    if url.startswith("sqlite"):
        assert {stored[batch_id][0] for batch_id in batch_ids} == {"finished"}
