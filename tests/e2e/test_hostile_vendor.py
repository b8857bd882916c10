"""The real CLI against a hostile vendor on loopback, one mode per attack (issue 10).

Each mode runs ``preflight check BATCH --need 1`` in a subprocess and asserts: the
verdict (``unavailable``, exit 13; or a working check when the vendor merely echoes
the token), that the process ends within the deadline plus 2 s (a bound, enforced by
killing it; no test here asserts how long anything took), that its peak RSS stays
within 3 body caps of a plain run's, no traceback, and the token nowhere: not in
stdout, stderr, or any byte of the SQLite files.

Peak RSS comes from ``os.wait4`` on the child itself: ``RUSAGE_CHILDREN`` would mix in
every other child this test process ever had.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOKEN = "hostile-test-token-4f9a2c17"
DEADLINE = 4
BODY_CAP = 1 << 20
PROFILE = b'{"user_id": "u1", "tier": "pro", "credits": 100}'

Mode = Callable[["Connection"], None]


# ---------------------------------------------------------------- the hostile vendor


@dataclass
class Connection:
    """One accepted connection, after the request's headers were read."""

    sock: socket.socket
    stop: threading.Event
    authorization: str

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, body: bytes, *headers: str, status: str = "200 OK") -> None:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        head += headers
        self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)


class HostileVendor:
    """A raw TCP server on 127.0.0.1 that runs ``mode`` for every connection."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.stop = threading.Event()
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(10)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = sock.recv(4096)
                    if not data:
                        return
                    request += data
                authorization = ""
                for line in request.split(b"\r\n"):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "authorization":
                        authorization = value.strip()
                self.mode(Connection(sock, self.stop, authorization))
            except OSError:  # the client hung up: what a client under attack should do
                pass

    def close(self) -> None:
        self.stop.set()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
        self.listener.close()


def gzip_bomb(mebibytes: int) -> bytes:
    """A valid gzip body of ~1 KiB per MiB of zeros it inflates to, built in well under 1 s."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    # After a full flush the compressor starts afresh, so every 1 MiB block is identical.
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return header + block * mebibytes + deflate.flush() + trailer


BOMB = gzip_bomb(1024)  # ~1 MB that inflates to 1 GiB


def _plain_500(conn: Connection) -> None:
    conn.answer(b'{"error": "internal"}', status="500 Internal Server Error")


def _headers_dripped(conn: Connection) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\n")
    while not conn.stop.wait(0.25):
        conn.send(b"X")  # one header byte at a time: each restarts the read timeout


def _body_dripped(conn: Connection) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
    while not conn.stop.wait(0.25):
        conn.send(b" ")


def _endless_chunked(conn: Connection) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    while not conn.stop.is_set():
        conn.send(chunk)


def _silence(conn: Connection) -> None:
    conn.stop.wait(30)


def _fifty_megabytes(conn: Connection) -> None:
    # No Content-Length: only counting the bytes as they arrive can stop it.
    conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    block = b" " * (1 << 20)
    for _ in range(50):
        conn.send(block)


def _fifty_megabytes_declared(conn: Connection) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n")
    block = b" " * (1 << 20)
    for _ in range(50):
        conn.send(block)


def _gzip_bomb(conn: Connection) -> None:
    # No Content-Length (it would exceed the cap and be refused unread): read until close.
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n")
    conn.send(BOMB)


def _deeply_nested(conn: Connection) -> None:
    conn.answer(b'{"credits": 1, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")


def _huge_exponent(conn: Connection) -> None:
    conn.answer(b'{"credits": 1e999999999}')


def _huge_exponent_string(conn: Connection) -> None:
    conn.answer(b'{"credits": "1e999999999"}')


def _huge_digits(conn: Connection) -> None:
    conn.answer(b'{"credits": 1' + b"0" * 400 + b"}")


def _nan(conn: Connection) -> None:
    conn.answer(b'{"credits": NaN}')


def _echoed_token(conn: Connection) -> None:
    bare = conn.authorization.removeprefix("Bearer ")
    body = {
        "user_id": bare,
        "tier": conn.authorization,
        "credits": 100,
        "echo": {"headers": {"authorization": conn.authorization}, "token": bare},
    }
    conn.answer(json.dumps(body).encode(), "Content-Type: application/json")


@pytest.fixture
def redirect_target() -> Iterator[HostileVendor]:
    target = HostileVendor(lambda conn: conn.answer(PROFILE))
    yield target
    target.close()


# ---------------------------------------------------------------- running the CLI


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    max_rss_kib: int


def run_check(vendor_url: str, tmp_path: Path, name: str) -> Outcome:
    """``preflight check`` against ``vendor_url``, killed if it outlives the deadline + 2 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PREFLIGHT_VENDOR_URL": vendor_url,
            "PREFLIGHT_API_TOKEN": TOKEN,
            "PREFLIGHT_DEADLINE": str(DEADLINE),
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
            "PREFLIGHT_MAX_BODY_BYTES": str(BODY_CAP),
            "PREFLIGHT_LOG_LEVEL": "debug",  # the token must not reach even debug logs
        }
    )
    out_path, err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "preflight", "check", name, "--need", "1", "--format", "json"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    limit = time.monotonic() + DEADLINE + 2
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > limit:
            process.send_signal(signal.SIGKILL)
            os.wait4(process.pid, 0)
            process.returncode = -9
            pytest.fail(
                f"{name}: still running {DEADLINE + 2} s after start (deadline {DEADLINE}s)"
            )
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(
        process.returncode,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        usage.ru_maxrss,  # KiB on Linux
    )


@pytest.fixture(scope="module")
def baseline_rss_kib(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak RSS of the same command answered by a plain HTTP 500 (the same error path)."""
    vendor = HostileVendor(_plain_500)
    try:
        runs = [
            run_check(vendor.url, tmp_path_factory.mktemp(f"baseline{n}"), "baseline")
            for n in range(2)
        ]
    finally:
        vendor.close()
    assert all(run.code == 13 for run in runs), [run.err for run in runs]
    return max(run.max_rss_kib for run in runs)


def assert_clean(run: Outcome, tmp_path: Path, baseline_rss_kib: int) -> None:
    assert "Traceback" not in run.out + run.err
    assert TOKEN not in run.out + run.err
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    allowance_kib = 3 * BODY_CAP // 1024
    assert run.max_rss_kib <= baseline_rss_kib + allowance_kib, (
        f"peak RSS {run.max_rss_kib} KiB > baseline {baseline_rss_kib} KiB + {allowance_kib} KiB"
    )


UNAVAILABLE_MODES = {
    "headers-dripped": _headers_dripped,
    "body-dripped": _body_dripped,
    "endless-chunked": _endless_chunked,
    "silence": _silence,
    "50MB-unsized": _fifty_megabytes,
    "50MB-declared": _fifty_megabytes_declared,
    "gzip-bomb": _gzip_bomb,
    "deeply-nested": _deeply_nested,
    "1e999999999": _huge_exponent,
    "1e999999999-string": _huge_exponent_string,
    "1e400-digits": _huge_digits,
    "NaN": _nan,
}


@pytest.mark.parametrize("name", list(UNAVAILABLE_MODES))
def test_a_hostile_vendor_is_unavailable_within_the_deadline_and_memory(
    name: str, tmp_path: Path, baseline_rss_kib: int
) -> None:
    vendor = HostileVendor(UNAVAILABLE_MODES[name])
    try:
        run = run_check(vendor.url, tmp_path, name)
    finally:
        vendor.close()

    assert run.code == 13, (run.code, run.err)
    assert json.loads(run.out)["verdict"] == "unavailable"
    assert_clean(run, tmp_path, baseline_rss_kib)


def test_an_echoed_token_is_scrubbed_before_it_is_stored_or_printed(
    tmp_path: Path, baseline_rss_kib: int
) -> None:
    vendor = HostileVendor(_echoed_token)
    try:
        run = run_check(vendor.url, tmp_path, "echo")
    finally:
        vendor.close()

    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert (data["verdict"], data["balance"]) == ("go", "100")
    assert_clean(run, tmp_path, baseline_rss_kib)


def test_a_redirect_is_not_followed_and_the_token_stays_home(
    tmp_path: Path, baseline_rss_kib: int, redirect_target: HostileVendor
) -> None:
    location = f"Location: {redirect_target.url}/api/open/v1/profile"
    vendor = HostileVendor(lambda conn: conn.answer(b"", location, status="302 Found"))
    try:
        run = run_check(vendor.url, tmp_path, "redirect")
    finally:
        vendor.close()

    assert run.code == 13, run.err
    assert "redirects are not followed" in json.loads(run.out)["reason"]
    assert redirect_target.connections == 0
    assert_clean(run, tmp_path, baseline_rss_kib)
