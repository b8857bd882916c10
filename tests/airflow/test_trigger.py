"""PreflightBalanceTrigger driven directly with asyncio, in local mode and through
``preflight serve``: it does not fire while the balance is short, fires after a top-up,
never blocks the event loop, gives up on a refused token and at its deadline, and
round-trips through its class path and Airflow's serde."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from preflight.airflow.triggers import PreflightBalanceTrigger
from preflight.sandbox import SandboxServer
from tests.airflow.conftest import Connect

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def run_trigger(
    trigger: PreflightBalanceTrigger, on_sleep: Callable[[int], None] = lambda _: None
) -> tuple[list[dict[str, Any]], list[float], list[int]]:
    """Run the trigger to its end with a fake sleep (``on_sleep(n)`` at the n-th) and a
    ticker beside it; the events, the sleeps asked for, and the ticker's count at each."""
    sleeps: list[float] = []
    ticks_at_sleep: list[int] = []
    ticks = 0

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        ticks_at_sleep.append(ticks)
        on_sleep(len(sleeps))
        await asyncio.sleep(0)

    async def main() -> list[dict[str, Any]]:
        nonlocal ticks
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        beside = asyncio.create_task(ticker())
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            done.set()
            await beside

    trigger.sleep = fake_sleep  # type: ignore[assignment]
    return asyncio.run(main()), sleeps, ticks_at_sleep


def test_it_waits_while_short_and_fires_after_a_top_up(
    connect: Connect, vendor: SandboxServer
) -> None:
    pf = connect(vendor)
    vendor.set_balance(credits=Decimal(50))
    with pf.ledger() as ledger:
        assert ledger.check("wait/run+1", need="200").verdict.value == "insufficient"

    def top_up_at_third_sleep(n: int) -> None:
        if n == 3:
            vendor.topup(Decimal(500))

    trigger = PreflightBalanceTrigger(batch_id="wait/run+1", need="200", poll_interval=300)
    events, sleeps, ticks = run_trigger(trigger, top_up_at_third_sleep)

    assert sleeps == [300.0, 300.0, 300.0]  # three polls short, the fourth covered
    assert [e["status"] for e in events] == ["sufficient"]
    assert events[0] | {"snapshot_id": None} == {
        "status": "sufficient",
        "verdict": "go",
        "batch_id": "wait/run+1",
        "balance": "550",
        "need": "200",
        "meter": "credits",
        "snapshot_id": None,
    }
    # The loop ran beside every poll: each went to a thread or awaited the async client.
    assert all(later - earlier > 1 for earlier, later in zip([0, *ticks], ticks, strict=False))
    with pf.ledger() as ledger:
        kinds = [s.kind for s in ledger.show("wait/run+1").snapshots]
    assert kinds == ["preflight", "recheck", "recheck", "recheck", "recheck"]


def test_it_ends_at_its_deadline_while_still_short(connect: Connect, vendor: SandboxServer) -> None:
    connect(vendor)
    vendor.set_balance(credits=Decimal(50))
    now = [T0]

    def tick(_: int) -> None:
        now[0] += timedelta(minutes=5)

    trigger = PreflightBalanceTrigger(
        batch_id="short",
        need="200",
        poll_interval=300,
        deadline=PreflightBalanceTrigger.deadline_after(timedelta(minutes=10), T0),
    )
    trigger.clock = lambda: now[0]
    events, sleeps, _ = run_trigger(trigger, tick)
    assert len(sleeps) == 2
    assert [e["status"] for e in events] == ["timeout"]
    assert "did not cover 200" in events[0]["message"]


def test_a_refused_vendor_token_ends_it_with_an_error(
    connect: Connect, vendor: SandboxServer
) -> None:
    connect(vendor, vendor_token="revoked-token")
    trigger = PreflightBalanceTrigger(batch_id="refused", need="10", poll_interval=300)
    events, sleeps, _ = run_trigger(trigger)
    assert sleeps == []
    assert [(e["status"], e["verdict"]) for e in events] == [("error", "auth_failed")]


def test_a_blocked_account_answered_with_200_ends_it_with_an_error(connect: Connect) -> None:
    # DeepSeek's 200 with is_available: false, whatever the balance: what its 402 would say.
    with SandboxServer(vendor="deepseek", meters={"usd": Decimal(500)}) as deepseek:
        deepseek.set_shape({"extra": {"is_available": False}})
        connect(deepseek, PREFLIGHT_VENDOR="deepseek")
        trigger = PreflightBalanceTrigger(need="10", poll_interval=300)
        events, sleeps, _ = run_trigger(trigger)
        reads = deepseek.request_counts
    assert sleeps == []
    assert [(e["status"], e["verdict"]) for e in events] == [("error", "billing_blocked")]
    assert "is_available: false" in events[0]["message"]
    assert sum(reads.values()) == 1  # read once: asking again cannot change the answer


def test_waiting_out_at_risk_it_fires_at_go_only(connect: Connect, vendor: SandboxServer) -> None:
    pf = connect(vendor)
    vendor.set_balance(credits=Decimal(100))
    with pf.ledger() as ledger:
        ledger.check("other", need="60")  # holds 60 of the 100
        assert ledger.check("mine", need="50").verdict.value == "at_risk"

    def others_finish(n: int) -> None:
        if n == 2:
            with pf.ledger() as ledger:
                ledger.finish("other")

    trigger = PreflightBalanceTrigger(
        batch_id="mine", need="50", poll_interval=60, at_risk_covers=False
    )
    events, sleeps, _ = run_trigger(trigger, others_finish)
    assert len(sleeps) == 2
    assert [(e["status"], e["verdict"]) for e in events] == [("sufficient", "go")]


def test_without_a_batch_it_compares_the_accounts_balance(
    connect: Connect, vendor: SandboxServer
) -> None:
    connect(vendor)
    vendor.set_balance(credits=Decimal(120))
    trigger = PreflightBalanceTrigger(need="100", reserve="30", poll_interval=60)
    events, sleeps, _ = run_trigger(trigger, lambda n: vendor.topup(Decimal(10)))
    assert sleeps == [60.0]  # 120 < 100 + 30, then 130 covers it
    assert [(e["status"], e["balance"]) for e in events] == [("sufficient", "130")]


def test_serialize_round_trips_through_its_class_path_and_airflows_serde() -> None:
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    trigger = PreflightBalanceTrigger(
        batch_id="my_dag/manual__2026-12-07T00:35:27.935842+00:00",
        need="12.50",
        account="team-a",
        reserve="1",
        labels={"team": "a"},
        preflight_conn_id="other",
        poll_interval=42.5,
        deadline=PreflightBalanceTrigger.deadline_after(timedelta(hours=6), T0),
        at_risk_covers=False,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "preflight.airflow.triggers.PreflightBalanceTrigger"
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
