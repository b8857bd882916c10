"""A real uvicorn server on loopback for tests: the HTTP API in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from preflight.http.app import create_app
from preflight.services.runtime import Clock, Runtime
from preflight.services.tokens import create_token
from preflight.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    runtime: Runtime

    def token(self, name: str, scopes: str = "admin") -> str:
        """A new API token (shown once, as by `preflight token create`)."""
        return create_token(self.runtime, name, scopes).token.reveal()


@contextmanager
def live_server(settings: Settings, clock: Clock | None = None) -> Iterator[LiveServer]:
    """`preflight serve` on a free loopback port, until the block exits (``clock``: the
    time its verbs see, else the machine's)."""
    runtime = Runtime(settings, clock=clock) if clock is not None else Runtime(settings)
    app = create_app(runtime, close_runtime=True)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the HTTP API did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{config.port}", runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
