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
from preflight.http.server import uvicorn_config
from preflight.services.runtime import Runtime
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
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """`preflight serve` on a free loopback port, until the block exits."""
    runtime = Runtime(settings)
    app = create_app(runtime, close_runtime=True)
    config = uvicorn_config(
        app,
        settings,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        access_log=False,
        lifespan="on",
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


@dataclass
class ServeProcess:
    url: str
    pid: int


@contextmanager
def serve_process(env: dict[str, str], *args: str) -> Iterator[ServeProcess]:
    """`preflight serve --port 0 ARGS...` as a process of its own (its memory, its first
    requests), until the block exits; stopped by SIGTERM."""
    import re
    import signal
    import subprocess
    import sys

    server = subprocess.Popen(
        [sys.executable, "-m", "preflight", "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    drain = None
    try:
        assert server.stderr is not None
        url = None
        while url is None:
            line = server.stderr.readline()  # bounded: the process ends, or says this
            if not line:
                raise RuntimeError(f"preflight serve exited with {server.wait(timeout=10)}")
            found = re.search(r"running on (http://127\.0\.0\.1:[0-9]+)", line)
            url = found[1] if found else None
        # Drain its log so that it never blocks on a full pipe.
        drain = threading.Thread(target=server.stderr.read, daemon=True)
        drain.start()
        yield ServeProcess(url, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=10)
            if drain is not None:
                drain.join(timeout=10)
            if server.stderr is not None:
                server.stderr.close()


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux: /proc/PID/status, VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
