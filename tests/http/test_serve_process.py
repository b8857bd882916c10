"""`preflight serve` as a process of its own: its first requests, and its memory.

A fresh server's metrics are built on the first request that records one; 16 requests
arriving together used to build them several times at once, and the losers answered 500.
An anonymous upload used to be read and decoded whole before its 401 (RSS +280 MB for
100 MB of JSON).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import httpx
import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.services.runtime import Runtime
from preflight.services.tokens import create_token
from tests.http.conftest import api_settings
from tests.http.test_edge import BODY_ROUTES
from tests.http_support import rss_bytes, serve_process
from tests.support import upgrade_schema

pytestmark = pytest.mark.slow

CLIENTS = 16


def serve_env(database_url: str, sandbox: SandboxServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_DEADLINE": "20",
            **extra,
        }
    )
    return env


def api_token(database_url: str, sandbox: SandboxServer, scopes: str = "admin") -> str:
    runtime = Runtime(api_settings(database_url, sandbox))
    try:
        return create_token(runtime, "burst", scopes).token.reveal()
    finally:
        runtime.close()


def test_a_fresh_server_answers_sixteen_concurrent_first_checks(
    database_url: str, sandbox: SandboxServer
) -> None:
    upgrade_schema(database_url)
    token = api_token(database_url, sandbox)
    headers = {"Authorization": f"Bearer {token}"}
    barrier = threading.Barrier(CLIENTS)
    statuses: list[int] = []

    with serve_process(serve_env(database_url, sandbox)) as server:

        def first_check(n: int) -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                barrier.wait()
                answer = client.post(f"/v1/batches/burst-{n}/check", json={"need": "1"})
                statuses.append(answer.status_code)

        clients = [threading.Thread(target=first_check, args=(n,)) for n in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        listed = httpx.get(f"{server.url}/v1/batches", headers=headers, timeout=30).json()

    assert statuses == [200] * CLIENTS
    stored = {item["batch_id"] for item in listed}
    assert stored == {f"burst-{n}" for n in range(CLIENTS)}


HUNDRED_MB = 100 * 1024 * 1024
RSS_GROWTH_LIMIT = 20 * 1024 * 1024


def hundred_megabytes() -> Iterator[bytes]:
    """100 MB of a JSON string's inside, made as it is sent (the client holds 1 MB)."""
    chunk = b"x" * (1024 * 1024)
    for _ in range(HUNDRED_MB // len(chunk)):
        yield chunk


def test_anonymous_100_mb_posts_are_refused_without_the_server_growing(
    database_url: str, sandbox: SandboxServer
) -> None:
    upgrade_schema(database_url)
    token = api_token(database_url, sandbox)
    with (
        serve_process(serve_env(database_url, sandbox)) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        # Warm: every route once (authenticated, small), so that what is measured is
        # the uploads, not the first use of a code path.
        for path, media, body in BODY_ROUTES:
            client.post(
                path,
                content=body,
                headers={"Content-Type": media, "Authorization": f"Bearer {token}"},
            )
        before = rss_bytes(server.pid)
        statuses = []
        for path, media, _body in BODY_ROUTES:
            answer = client.post(
                path,
                content=hundred_megabytes(),
                headers={"Content-Type": media, "Content-Length": str(HUNDRED_MB)},
            )
            statuses.append(answer.status_code)
        after = rss_bytes(server.pid)
    assert statuses == [401] * len(BODY_ROUTES)
    assert after - before <= RSS_GROWTH_LIMIT, (before, after)
