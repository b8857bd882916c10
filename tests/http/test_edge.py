"""The HTTP edge: a token before any body, capped bodies, slow clients timed out, and a 401
that says what to send. A real uvicorn on loopback (raw sockets where the client must
misbehave), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from preflight.sandbox import SandboxServer
from tests.http.conftest import api_settings
from tests.http_support import LiveServer, live_server
from tests.support import upgrade_schema

#: Every route that takes a body, with a body it would accept.
BODY_ROUTES = [
    ("/v1/batches/edge-1/check", "application/json", b'{"need": "1"}'),
    ("/v1/batches/edge-1/outcomes", "application/json", b'{"job_id": "j", "status": "failed"}'),
    ("/v1/batches/edge-1/outcomes", "application/x-ndjson", b'{"job_id": "j", "status": "x"}\n'),
    ("/v1/batches/edge-1/finish", "application/json", b"{}"),
    ("/v1/audit", "application/json", b'{"force": true}'),
    ("/v1/classify", "application/json", b"{}"),
]
#: The routes that read their body whole (finish reads none; JSON Lines stream).
READ_WHOLE = [route for route in BODY_ROUTES if "finish" not in route[0] and "nd" not in route[1]]
HUNDRED_MB = 100 * 1024 * 1024


@contextmanager
def edge_server(database_url: str, sandbox: SandboxServer, **extra: str) -> Iterator[LiveServer]:
    upgrade_schema(database_url)
    with live_server(api_settings(database_url, sandbox, **extra)) as running:
        yield running


def connect(server: LiveServer) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.settimeout(20)  # a bound on each read, never a synchronisation
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length, read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of a response"
        body += chunk
    return int(status_line.split()[1]), headers, body


def request_head(path: str, media: str, *, length: int | None, token: str | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {media}"]
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def closed_by_server(sock: socket.socket, *, within: float = 30.0) -> bool:
    """Poll ``sock`` until the server closes it (True), or ``within`` seconds pass (False):
    a bounded loop, not a measurement."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset: closed too
            return True
    return False


# ---------------------------------------------------------------- a token before any body


@pytest.mark.parametrize("token", [None, "pft_not-a-token-of-this-server"])
def test_a_body_is_refused_before_it_is_read_without_a_valid_token(
    database_url: str, sandbox: SandboxServer, token: str | None
) -> None:
    with edge_server(database_url, sandbox) as server:
        for path, media, _body in BODY_ROUTES:
            for length in (HUNDRED_MB, None):  # announced, or chunked
                with connect(server) as sock:
                    # Only the head is sent: the answer comes without a byte of the body.
                    sock.sendall(request_head(path, media, length=length, token=token))
                    status, headers, body = read_response(sock)
                assert status == 401, (path, media, length)
                assert headers["content-type"] == "application/problem+json"
                assert headers["www-authenticate"] == "Bearer"
                assert json.loads(body)["type"] == "/problems/unauthorized"
        scraped = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token('m')}"}
        ).text
    # Counted under the route's template, as a 401 from the route itself would be.
    counted = [
        line
        for line in scraped.splitlines()
        if line.startswith("preflight_http_requests_total{")
        and 'route="/v1/batches/{batch_id:path}/check"' in line
        and 'status="401"' in line
    ]
    assert counted, scraped


def test_the_401_detail_names_the_header_and_the_scheme(
    database_url: str, sandbox: SandboxServer
) -> None:
    with edge_server(database_url, sandbox) as server:
        answers = [
            httpx.get(f"{server.url}/v1/batches"),
            httpx.post(f"{server.url}/v1/batches/b/check", json={"need": "1"}),
            httpx.post(
                f"{server.url}/v1/batches/b/check",
                json={"need": "1"},
                headers={"Authorization": "Basic dXNlcjpwYXNz"},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 401
        detail = answer.json()["detail"]
        assert "[REDACTED]" not in detail
        assert detail == "send an Authorization header with a Bearer token"


def test_the_route_scope_is_still_checked_after_the_edge(
    database_url: str, sandbox: SandboxServer
) -> None:
    with edge_server(database_url, sandbox) as server:
        reader = server.token("reader", "read")
        answer = httpx.post(
            f"{server.url}/v1/batches/b/check",
            json={"need": "1"},
            headers={"Authorization": f"Bearer {reader}"},
        )
    assert answer.status_code == 403
    assert answer.json()["type"] == "/problems/forbidden"


# ---------------------------------------------------------------- body caps


@pytest.mark.parametrize(("path", "media", "body"), READ_WHOLE)
def test_a_body_over_the_cap_is_413_announced_or_chunked(
    database_url: str, sandbox: SandboxServer, path: str, media: str, body: bytes
) -> None:
    limit = 1024
    big = body[:-1] + b" " * (limit + 1 - len(body)) + body[-1:]  # still the same JSON
    with edge_server(database_url, sandbox, PREFLIGHT_HTTP_MAX_BODY_BYTES=str(limit)) as server:
        headers = {"Authorization": f"Bearer {server.token('all')}", "Content-Type": media}

        def chunked() -> Iterator[bytes]:
            yield big[:600]
            yield big[600:]

        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
            fits = api.post(path, content=body)
            announced = api.post(path, content=big)
            streamed = api.post(path, content=chunked())
    assert fits.status_code != 413
    for answer in (announced, streamed):
        assert answer.status_code == 413, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert problem["type"] == "/problems/too-large"
        assert "PREFLIGHT_HTTP_MAX_BODY_BYTES" in problem["detail"]
        assert str(limit) in problem["detail"]


def test_a_json_lines_import_streams_past_the_cap_with_each_line_capped(
    database_url: str, sandbox: SandboxServer
) -> None:
    limit = 1024
    lines = [
        json.dumps({"job_id": f"job-{n}", "status": "succeeded", "cost": "1"}) + "\n"
        for n in range(300)
    ]
    assert len("".join(lines)) > 10 * limit
    with edge_server(database_url, sandbox, PREFLIGHT_HTTP_MAX_BODY_BYTES=str(limit)) as server:
        headers = {
            "Authorization": f"Bearer {server.token('all')}",
            "Content-Type": "application/x-ndjson",
        }
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
            imported = api.post(
                "/v1/batches/nd/outcomes", content=(line.encode() for line in lines)
            )
            too_long = api.post(
                "/v1/batches/nd-2/outcomes",
                content=b'{"job_id": "a", "status": "succeeded"}\n'
                + b'{"job_id": "'
                + b"x" * 2_000_000
                + b'"}\n',
            )
            # The exemption is the streaming route's: another route reads its body whole.
            elsewhere = api.post("/v1/batches/nd/check", content=b"{}" + b" " * (2 * limit))
            shown = api.get("/v1/batches/nd").json()
    assert imported.status_code == 200, imported.text
    assert shown["outcomes"]["total"] == 300
    assert too_long.status_code == 400
    assert "line 2" in too_long.json()["detail"]
    assert elsewhere.status_code == 413


# ---------------------------------------------------------------- slow clients


def test_connections_that_stop_half_way_through_their_headers_are_closed(
    database_url: str, sandbox: SandboxServer
) -> None:
    with (
        edge_server(database_url, sandbox, PREFLIGHT_HTTP_HEADER_TIMEOUT="0.5") as server,
        ExitStack() as stack,
    ):
        stalled = [stack.enter_context(connect(server)) for _ in range(5)]
        for n, sock in enumerate(stalled[1:]):
            sock.sendall(f"GET /v1/batches/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slo".encode())
        # stalled[0] sent nothing at all. A well-behaved client is served meanwhile.
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        assert [closed_by_server(sock) for sock in stalled] == [True] * 5


def test_a_kept_alive_connection_that_starts_a_request_and_stalls_is_closed(
    database_url: str, sandbox: SandboxServer
) -> None:
    # The keep-alive timer stops at the next request's first byte: from there on, its
    # headers have the header timeout (keep-alive itself is long here, so it cannot be
    # what closes the connection).
    with (
        edge_server(
            database_url,
            sandbox,
            PREFLIGHT_HTTP_HEADER_TIMEOUT="0.5",
            PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT="3600",
        ) as server,
        connect(server) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")
        assert closed_by_server(sock)


def test_an_idle_kept_alive_connection_is_closed(database_url: str, sandbox: SandboxServer) -> None:
    with (
        edge_server(database_url, sandbox, PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT="1") as server,
        connect(server) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert closed_by_server(sock)


def test_serve_takes_its_timeouts_from_the_settings() -> None:
    from preflight.http.server import uvicorn_config
    from preflight.settings import load_settings

    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": "sqlite://",
            "PREFLIGHT_HTTP_HEADER_TIMEOUT": "2.5",
            "PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT": "7",
        }
    )
    config: Any = uvicorn_config(object(), settings, host="127.0.0.1", port=0)
    assert config.timeout_keep_alive == 7
    assert config.http.header_timeout == 2.5
