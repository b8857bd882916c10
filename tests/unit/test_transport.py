"""The hardened transport: the private httpx/httpcore attributes its deadline relies on,
pinned; and its retry policy, as alerts and remote mode use it."""

from __future__ import annotations

import asyncio
import inspect
import json

import httpcore
import httpx
import pytest

from preflight import transport
from preflight.alerts import send_alerts
from preflight.errors import AuthError, BillingBlockedError, ConfigError, StorageError
from preflight.remote import AsyncRemoteClient, RemoteClient
from preflight.secret import Secret
from preflight.settings import load_settings

# ---------------------------------------------------------------- what the deadline relies on


def test_httpx_keeps_the_private_attributes_the_deadline_reaches() -> None:
    # httpx has no public way to choose httpcore's network backend. If an upgrade renames
    # one of these, this fails here, not as a vendor request without a total deadline.
    with httpx.Client() as client:
        assert isinstance(client._transport, httpx.HTTPTransport)
        assert isinstance(client._mounts, dict)
        pool = client._transport._pool
        assert isinstance(pool, httpcore.ConnectionPool)
        assert isinstance(pool._network_backend, httpcore.NetworkBackend)


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        (httpcore.NetworkBackend, "connect_tcp"),
        (httpcore.NetworkBackend, "connect_unix_socket"),
        (httpcore.NetworkBackend, "sleep"),
        (httpcore.NetworkStream, "read"),
        (httpcore.NetworkStream, "write"),
        (httpcore.NetworkStream, "close"),
        (httpcore.NetworkStream, "start_tls"),
        (httpcore.NetworkStream, "get_extra_info"),
    ],
)
def test_the_bounded_backend_overrides_httpcores_interface_as_it_is(cls: type, method: str) -> None:
    ours = transport.BoundedBackend if cls is httpcore.NetworkBackend else transport.BoundedStream
    theirs = inspect.signature(getattr(cls, method)).parameters
    assert list(inspect.signature(getattr(ours, method)).parameters) == list(theirs)


def test_every_client_built_here_and_its_proxy_mounts_are_bound() -> None:
    with transport.build_client(connect=1, read=1) as client:
        assert isinstance(client._transport._pool._network_backend, transport.BoundedBackend)  # type: ignore[attr-defined]
    proxied = httpx.Client(mounts={"http://": httpx.HTTPTransport()})
    with transport.bound_to_deadline(proxied) as client:
        (mount,) = client._mounts.values()
        assert isinstance(mount._pool._network_backend, transport.BoundedBackend)  # type: ignore[union-attr]


def test_a_pool_without_its_backend_is_refused_loudly() -> None:
    client = httpx.Client()
    del client._transport._pool._network_backend  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="private pool attributes"):
        transport.bound_to_deadline(client)
    client.close()


def test_a_mock_transport_opens_no_socket_and_is_left_alone() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(204))
    with transport.build_client(connect=1, read=1, transport=mock) as client:
        assert client.get("http://x/").status_code == 204


# ---------------------------------------------------------------- the retry policy in use


def test_an_alert_waits_as_long_as_the_receiver_asks() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(204)])
    settings = load_settings(
        {"PREFLIGHT_ALERT_WEBHOOK_URL": "https://hooks.example/x", "PREFLIGHT_ALERT_ATTEMPTS": "3"}
    )
    sleeps: list[float] = []
    delivered = send_alerts(
        settings,
        [{"kind": "low_balance"}],
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=sleeps.append,
    )
    assert delivered
    assert sleeps == [2.0]


def _server(calls: list[str]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": "1"}, json={"detail": "busy"})
        return httpx.Response(200, json=[])

    return httpx.MockTransport(answer)


def test_remote_reads_are_retried_as_the_server_asks_and_writes_never() -> None:
    settings = load_settings({"PREFLIGHT_ATTEMPTS": "3"})
    calls: list[str] = []
    sleeps: list[float] = []
    client = RemoteClient(
        "http://server", Secret("pft_x"), settings, transport=_server(calls), sleep=sleeps.append
    )
    assert client.batches() == []
    assert (calls, sleeps) == (["GET", "GET"], [1.0])
    calls.clear()
    with pytest.raises(StorageError, match="busy"):
        client.finish("B")
    assert calls == ["POST"]
    client.close()


def test_the_async_client_retries_alike() -> None:
    settings = load_settings({"PREFLIGHT_ATTEMPTS": "3"})
    calls: list[str] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": "1"}, json={"detail": "busy"})
        return httpx.Response(200, content=json.dumps([]).encode())

    async def run() -> object:
        async with AsyncRemoteClient(
            "http://server",
            Secret("pft_x"),
            settings,
            transport=httpx.MockTransport(answer),
            sleep=sleep,
        ) as client:
            return await client.batches()

    assert asyncio.run(run()) == []
    assert (calls, sleeps) == (["GET", "GET"], [1.0])


def _problem(status: int, slug: str) -> tuple[int, bytes]:
    body = {"type": f"/problems/{slug}", "title": slug, "status": status, "detail": slug}
    return status, json.dumps(body).encode()


@pytest.mark.parametrize(
    ("first", "error", "calls"),
    [
        # The vendor refused: asking it again gives the same answer (and one more snapshot).
        (_problem(502, "vendor-billing-blocked"), BillingBlockedError, 1),
        (_problem(502, "vendor-auth"), AuthError, 1),
        (_problem(503, "server-config"), ConfigError, 1),
        # What may pass is read again.
        (_problem(503, "vendor-unavailable"), None, 2),
        (_problem(503, "storage-unavailable"), None, 2),
        ((502, b"<html>bad gateway</html>"), None, 2),
    ],
)
def test_a_read_is_retried_only_when_its_answer_may_pass(
    first: tuple[int, bytes], error: type[Exception] | None, calls: int
) -> None:
    settings = load_settings({"PREFLIGHT_ATTEMPTS": "3"})
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if len(seen) == 1:
            return httpx.Response(first[0], content=first[1])
        return httpx.Response(200, content=b"[]")

    def sleep(seconds: float) -> None:
        pass

    async def asleep(seconds: float) -> None:
        pass

    async def run() -> object:
        async with AsyncRemoteClient(
            "http://server",
            Secret("pft_x"),
            settings,
            transport=httpx.MockTransport(answer),
            sleep=asleep,
        ) as client:
            return await client.batches()

    client = RemoteClient(
        "http://server",
        Secret("pft_x"),
        settings,
        transport=httpx.MockTransport(answer),
        sleep=sleep,
    )
    for read in (client.batches, lambda: asyncio.run(run())):
        seen.clear()
        if error is None:
            assert read() == []
        else:
            with pytest.raises(error):
                read()
        assert len(seen) == calls
    client.close()
