"""Ctrl-C during a check: exit 130 with one line, and nothing half-written is stored.

The vendor here is a loopback socket that takes the request and never answers, so the
check is certainly waiting on the vendor when SIGINT arrives (the test waits for the
request to arrive, not for a time to pass).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cli


@pytest.fixture
def silent_vendor() -> Iterator[tuple[str, threading.Event]]:
    """A vendor that reads the request and then says nothing; the event fires on arrival."""
    arrived = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        held.append(connection)
        connection.recv(65536)
        arrived.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", arrived
    finally:
        listener.close()
        for connection in held:
            connection.close()
        thread.join(timeout=5)


def test_sigint_while_waiting_on_the_vendor_exits_130_and_stores_nothing(
    cli_any_db: Cli, cli_env: dict[str, str], silent_vendor: tuple[str, threading.Event]
) -> None:
    url, arrived = silent_vendor
    check = subprocess.Popen(
        [sys.executable, "-m", "preflight", "check", "interrupted-1", "--need", "5"],
        env={**cli_env, "PREFLIGHT_VENDOR_URL": url, "PREFLIGHT_DEADLINE": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert arrived.wait(timeout=30), "the check never called the vendor"
        check.send_signal(signal.SIGINT)
        out, err = check.communicate(timeout=30)
    finally:
        check.kill()

    assert check.returncode == 130
    # One line of error; click writes an empty line first, to close a terminal's "^C".
    assert [line for line in err.splitlines() if line] == ["preflight: error: aborted"]
    assert out == ""
    listed = cli_any_db("batches", "--format", "json")
    assert listed.code == 0, listed.err
    assert "interrupted-1" not in listed.out
