"""AsyncPreflight against a live `preflight serve`: the sync remote client's results and
errors, every line of a bulk import streamed from an async iterable as it comes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from preflight import (
    AsyncPreflight,
    BillingBlockedError,
    Preflight,
    PreflightError,
    StorageError,
    UsageError,
)
from preflight.errors import NotFoundError
from preflight.sandbox import SandboxServer
from preflight.services.results import ImportProgress
from tests.http_support import LiveServer, free_port, live_server

_VOLATILE = {"id", "snapshot_id", "snapshot_ids", "audit_run_id", "batch_id", "t0", "ta"}
#: Enough JSON Lines for several 64 KiB upload chunks.
LINES = 2500


def _stable(data: Any) -> Any:
    """JSON without what differs between two batches of one story: ids and times."""
    if isinstance(data, dict):
        return {
            key: "*" if key in _VOLATILE or key.endswith("_at") else _stable(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_stable(item) for item in data]
    return data


def _line(number: int) -> str:
    failed = number % 500 == 0
    return json.dumps(
        {
            "job_id": f"bulk-{number:05d}",
            "status": "failed" if failed else "succeeded",
            "cost": "0.01",
            **({"http_status": 402} if failed else {}),
        }
    )


def _sync_story(pf: Preflight, batch_id: str) -> list[Any]:
    return [
        pf.check(batch_id, need="60", labels={"team": "a"}),
        pf.record(batch_id, {"job_id": "one", "status": "succeeded", "cost": "5"}),
        pf.record_many(batch_id, (_line(n) for n in range(LINES))),
        pf.finish(batch_id),
        pf.show(batch_id),
    ]


async def _async_story(
    pf: AsyncPreflight, batch_id: str, heard: list[tuple[int, int]]
) -> list[Any]:
    yielded = 0

    async def lines() -> AsyncIterator[str]:
        nonlocal yielded
        for number in range(LINES):
            yielded += 1
            yield _line(number)

    def progress(seen: ImportProgress) -> None:
        heard.append((seen.lines, yielded))

    return [
        await pf.check(batch_id, need="60", labels={"team": "a"}),
        await pf.record(batch_id, {"job_id": "one", "status": "succeeded", "cost": "5"}),
        await pf.record_many(batch_id, lines(), progress=progress),
        await pf.finish(batch_id),
        await pf.show(batch_id),
    ]


def test_the_async_client_gives_the_sync_clients_results(server: LiveServer) -> None:
    token = server.token("async")
    with Preflight.remote(server.url, token) as pf:
        # Each story meets the same story finished before it (other batches' holds count).
        _sync_story(pf, "prelude")
        expected = _sync_story(pf, "sync-story")

    heard: list[tuple[int, int]] = []

    async def story() -> tuple[list[Any], list[Any]]:
        async with AsyncPreflight.remote(server.url, token) as apf:
            results = await _async_story(apf, "async-story", heard)
            return results, [await apf.batches(), await apf.failures(), await apf.findings()]

    got, listed_async = asyncio.run(story())
    assert [type(r) for r in got] == [type(r) for r in expected]
    assert [_stable(r.to_dict()) for r in got] == [_stable(r.to_dict()) for r in expected]
    assert got[2].lines == LINES
    assert got[2].inserted == LINES
    assert got[4].outcomes.total == LINES + 1
    # Every batch is listed, newest first.
    assert [b.batch.batch_id for b in listed_async[0]] == ["async-story", "sync-story", "prelude"]
    assert len(listed_async[1]) == 3 * len([1 for n in range(LINES) if n % 500 == 0])
    with Preflight.remote(server.url, token) as pf:
        listed = [pf.batches(), pf.failures(), pf.findings()]
    assert [[x.to_dict() for x in rows] for rows in listed_async] == [
        [x.to_dict() for x in rows] for rows in listed
    ]
    assert [[type(x) for x in rows] for rows in listed_async] == [
        [type(x) for x in rows] for rows in listed
    ]
    # Streamed: the first chunk went out while the async iterable still had lines to give.
    assert heard, "no chunk was sent before the last line"
    sent, yielded = heard[0]
    assert sent < LINES
    assert yielded < LINES


def test_the_async_client_raises_the_sync_clients_errors(server: LiveServer) -> None:
    token = server.token("async")

    def sync_error(call: Any) -> BaseException:
        with Preflight.remote(server.url, token) as pf, pytest.raises(PreflightError) as caught:
            call(pf)
        return caught.value

    async def async_error(call: Any) -> BaseException:
        async with AsyncPreflight.remote(server.url, token) as apf:
            with pytest.raises(PreflightError) as caught:
                await call(apf)
            return caught.value

    cases = [
        (lambda pf: pf.show("nope"), NotFoundError),
        (lambda pf: pf.check("bad id!", need="1"), UsageError),
        (lambda pf: pf.record("nope", {"job_id": "j", "status": "maybe"}), UsageError),
    ]
    for call, kind in cases:
        expected, got = sync_error(call), asyncio.run(async_error(call))
        assert type(got) is type(expected)
        assert isinstance(got, kind)
        assert str(got) == str(expected)


def test_an_unreachable_server_is_the_same_verdict_and_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def run() -> tuple[Any, BaseException]:
        async with AsyncPreflight.remote(url, "pft_not-a-real-token") as apf:
            verdict = await apf.check("B", need="1")
            with pytest.raises(StorageError) as caught:
                await apf.show("B")
            return verdict, caught.value

    verdict, error = asyncio.run(run())
    with Preflight.remote(url, "pft_not-a-real-token") as pf:
        assert pf.check("B", need="1").verdict is verdict.verdict
        with pytest.raises(StorageError) as sync_caught:
            pf.show("B")
    assert verdict.verdict.value == "unavailable"
    # (The reason after the colon is the socket library's own words, which differ.)
    assert str(error).split(": ")[0] == str(sync_caught.value).split(": ")[0]
    assert str(error).startswith(f"preflight server {url} unreachable")
    assert "pft_not-a-real-token" not in str(error)


def test_remote_results_equal_local_ones_for_the_same_stored_state(
    server: LiveServer, sandbox: SandboxServer
) -> None:
    """A tagged 402 and a finish read through either client are the local results, whole:
    the classification with its evidence, the summary with its two snapshots."""
    token = server.token("lossless")
    quota = {"job_id": "quota-1", "status": "failed", "http_status": 402, "cost": "20"}
    with Preflight.remote(server.url, token) as pf:
        pf.check("lossless", need="60")
        sandbox.consume(Decimal(300))  # spent by others: a concurrent_consumption tag
        first_record = pf.record("lossless", quota)
        repeated_sync = [pf.record("lossless", quota)]
    assert first_record.tag is not None
    assert first_record.tag.tag.value == "concurrent_consumption"
    assert first_record.tag.evidence.snapshot_ids  # the evidence came along

    async def async_record() -> Any:
        async with AsyncPreflight.remote(server.url, token) as apf:
            return await apf.record("lossless", quota)

    with Preflight(server.runtime.settings) as local:
        here = local.record("lossless", quota)
    # The same outcome again changes nothing: the same answer, by any way in.
    assert repeated_sync == [asyncio.run(async_record())] == [here]
    assert first_record.tag == here.tag
    assert first_record.outcome == here.outcome

    sandbox.topup(Decimal(100))  # the finish sees a top-up: a lower bound
    with Preflight.remote(server.url, token) as pf:
        first_finish = pf.finish("lossless")
        repeated_sync = [pf.finish("lossless")]

    async def async_finish() -> Any:
        async with AsyncPreflight.remote(server.url, token) as apf:
            return await apf.finish("lossless")

    with Preflight(server.runtime.settings) as local:
        here = local.finish("lossless")
    assert repeated_sync == [asyncio.run(async_finish())] == [here]
    assert here.already_finished
    assert (first_finish.finished_at, first_finish.summary) == (here.finished_at, here.summary)
    assert here.summary.start is not None
    assert here.summary.start.kind == "preflight"
    assert here.summary.foreign is not None
    assert here.summary.foreign.topups


def test_a_blocked_account_answered_with_200_is_the_same_error_every_way(
    database_url: str,
) -> None:
    """DeepSeek says ``is_available: false`` in a 200: reading the balance fails as for its
    402, locally and through either client, and the reading is kept each time."""
    from tests.http.conftest import api_settings
    from tests.support import upgrade_schema

    upgrade_schema(database_url)
    with SandboxServer(vendor="deepseek", meters={"usd": Decimal(500)}) as deepseek:
        deepseek.set_shape({"extra": {"is_available": False}})  # whatever the balance
        settings = api_settings(database_url, deepseek, PREFLIGHT_VENDOR="deepseek")
        with live_server(settings) as server:
            token = server.token("blocked")

            def read(pf: Preflight) -> BaseException:
                with pytest.raises(BillingBlockedError) as caught:
                    pf.profile()
                return caught.value

            async def aread() -> BaseException:
                async with AsyncPreflight.remote(server.url, token) as apf:
                    with pytest.raises(BillingBlockedError) as caught:
                        await apf.profile()
                    return caught.value

            with Preflight(settings) as local:
                errors = [read(local)]
                with Preflight.remote(server.url, token) as pf:
                    errors.append(read(pf))
                errors.append(asyncio.run(aread()))
                since = datetime.now(UTC) - timedelta(hours=1)
                timeline = local.account_report(None, since).timeline
    kept = [s.id for s in timeline if s.kind == "manual"]
    assert all(type(error) is BillingBlockedError for error in errors)
    assert all("is_available: false" in str(error) for error in errors)
    # Each error names the snapshot its reading was kept as.
    assert [f"snapshot {i})" in str(e) for i, e in zip(kept, errors, strict=True)] == [True] * 3
