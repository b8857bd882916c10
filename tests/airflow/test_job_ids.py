"""A mapped ``preflight_job`` task with the longest task id Airflow allows (250 characters)
has every attempt recorded, as ``task_id[map_index]`` (issue 20: job ids up to 500)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from preflight.sandbox import SandboxServer
from tests.airflow.conftest import Connect, run_dag

pytestmark = pytest.mark.slow

LONG_TASK_ID = "pay_" + "x" * 246


def test_a_mapped_task_with_a_250_character_id_records_its_outcomes(
    connect: Connect, vendor: SandboxServer
) -> None:
    assert len(LONG_TASK_ID) == 250
    pf = connect(vendor)
    costs = [str(n) for n in range(1, 12)]  # map indexes 0-10: two-digit ones too
    run = run_dag(
        "preflight_long_task_ids", "preflight_long_task_ids.py", {"need": "66", "costs": costs}
    )

    assert run.state == "success"
    assert run.states(LONG_TASK_ID) == ["success"] * len(costs)
    assert run.xcom["preflight_finish"]["own_cost"] == "66"
    with pf.ledger() as ledger:
        report = ledger.show(run.batch_id)
    assert (report.outcomes.total, report.outcomes.succeeded) == (len(costs), len(costs))
    assert report.outcomes.cost == Decimal(66)
    assert vendor.spent["credits"] == Decimal(66)
    # The job ids as stored: preflight lists totals, not ids, so read its own table.
    engine = sa.create_engine(pf.database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(
                sa.text("SELECT job_id, attempt FROM outcomes ORDER BY job_id")
            ).all()
    finally:
        engine.dispose()
    assert sorted(stored) == sorted((f"{LONG_TASK_ID}[{n}]", 1) for n in range(len(costs)))
