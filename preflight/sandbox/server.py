"""The sandbox vendor's server: sockets, threads, faults in time, and its Python life cycle.

:class:`SandboxServer` binds a threaded HTTP server on loopback, serves it from a daemon thread
and stops it promptly (hanging, latency and dripping handlers included); its in-process
helpers are the control API's verbs. The handler routes each request to the vendor API
(:mod:`preflight.sandbox.vendor_api`), after counting it and applying the fault queued for it,
or to the control API (:mod:`preflight.sandbox.control`); the state they share is a
:class:`~preflight.sandbox.state.SandboxState`. :func:`serve_forever` runs it in the
foreground for ``preflight simulate``.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

from preflight.sandbox import control, vendor_api
from preflight.sandbox.dialects import DEFAULT_VENDOR, Dialect, Route, dialect_of
from preflight.sandbox.protocol import (
    CREDITS,
    DEFAULT_TOKEN,
    QUOTA,
    Reply,
    json_reply,
)
from preflight.sandbox.state import SandboxState

__all__ = ["UNSET", "SandboxServer", "serve_forever"]

_MAX_BODY: Final = 1024 * 1024

_SignalHandler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _Unset(enum.Enum):
    """Type of :data:`UNSET`: "leave this meter as it is", distinct from ``None`` (remove it)."""

    UNSET = enum.auto()


#: Default of :meth:`SandboxServer.set_balance` arguments: the meter is left unchanged. Also
#: the default of ``credits`` and ``quota`` when a server is built: the vendor's default.
UNSET: Final = _Unset.UNSET

# How preflight is pointed at a vendor (its settings; the sandbox may not import them).
_VENDOR_ENV: Final = "PREFLIGHT_VENDOR"
_VENDOR_URL_ENV: Final = "PREFLIGHT_VENDOR_URL"
_TOKEN_ENV: Final = "PREFLIGHT_API_TOKEN"  # noqa: S105 (a variable name, not a secret)


# ---------------------------------------------------------------- HTTP plumbing


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that stops at once and knows its open connections.

    socketserver's own serve_forever() polls for shutdown every ``poll_interval``; tests start
    and stop hundreds of servers, so the accept loop here also waits on a wake-up socket that
    stop() writes to.
    """

    daemon_threads = True
    allow_reuse_address = True
    # Bounds handle_request() should the listening socket look readable but not be.
    timeout = 0.5

    def __init__(
        self, address: tuple[str, int], state: SandboxState, stopping: threading.Event
    ) -> None:
        self.state = state
        # Set by SandboxServer.stop(): hanging, waiting and dripping handlers end on it.
        self.stopping = stopping
        self._open: set[socket.socket] = set()
        self._open_changed = threading.Condition()
        # Created first: TCPServer.__init__ calls server_close() if binding fails.
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, _Handler)

    def serve_until_stopped(self) -> None:
        """Accept connections until :attr:`stopping` is set (and :meth:`wake` called)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self.stopping.is_set():
                        self.handle_request()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds on a badly configured host; nothing here needs the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._open_changed:
                self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self._open_changed:
                if isinstance(request, socket.socket):
                    self._open.discard(request)
                self._open_changed.notify_all()

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # A client that hangs up (or stop() closing its socket) is normal for a test server;
        # only a real bug deserves the default traceback on stderr.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def release_connections(self, timeout: float) -> None:
        """Shut every open connection down and wait (bounded) for its handler to finish.

        Idle keep-alive handlers are blocked reading the next request; shutting the socket
        down wakes them with EOF instead of leaving them until the client goes away.
        """
        with self._open_changed:
            for sock in list(self._open):
                with contextlib.suppress(OSError):  # already closed by its handler
                    sock.shutdown(socket.SHUT_RDWR)
            self._open_changed.wait_for(lambda: not self._open, timeout)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _ClientGone(Exception):
    """The client went away (or stop() closed its connection) mid-answer."""


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with a Content-Length on every answer: httpx keeps the connection alive.
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes; with Nagle's algorithm and the client's delayed ACK
    # every keep-alive request would wait ~40 ms for the second one.
    disable_nagle_algorithm = True
    server_version = "preflight-sandbox/1"
    # An idle keep-alive connection is dropped after this; a hang fault does not read, so it
    # is not affected.
    timeout = 120

    def log_message(self, format: str, *args: object) -> None:
        """Access logs would drown test and CLI output: the sandbox logs nothing."""

    @property
    def _httpd(self) -> _HTTPServer:
        server = self.server
        assert isinstance(server, _HTTPServer)
        return server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            if body is None:
                return
            path = urlsplit(self.path).path
            matches = [
                (route, params)
                for route in self._httpd.state.dialect.routes
                if (params := route.match(path)) is not None
            ]
            if matches:
                self._vendor(matches, body)
            elif path.startswith(control.PREFIX):
                name = path.removeprefix(control.PREFIX)
                self._send(control.answer(self._httpd.state, self.command, name, body))
            else:
                self._send(json_reply(404, {"error": "not_found", "message": f"no {path}"}))
        except (_ClientGone, OSError):
            # The client hung up (or stop() shut its socket): nobody is left to answer.
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a request whose body cannot be read."""
        if self.headers.get("Transfer-Encoding"):
            # Chunked uploads are not needed by any client here; refuse rather than desync.
            self._send(json_reply(411, {"error": "length_required"}, close=True))
            return None
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0:
            self._send(
                json_reply(
                    400, {"error": "bad_request", "message": "bad Content-Length"}, close=True
                )
            )
            return None
        if length > _MAX_BODY:
            self._send(json_reply(413, {"error": "payload_too_large"}, close=True))
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            raise _ClientGone
        return body

    def _vendor(self, matches: list[tuple[Route, dict[str, str]]], body: bytes) -> None:
        chosen = [(route, params) for route, params in matches if route.method == self.command]
        if not chosen:
            allow = ", ".join(route.method for route, _ in matches)
            self._send(
                json_reply(405, {"error": "method_not_allowed"}, headers=(("Allow", allow),))
            )
            return
        route, params = chosen[0]
        state, stopping = self._httpd.state, self._httpd.stopping
        fault = state.begin_vendor_request(route.key)
        interval: float | None = None
        if fault is not None:
            if fault.kind in ("status", "malformed"):
                self._send(Reply(fault.status, fault.body, fault.content_type, fault.headers))
                return
            if fault.kind == "hang":
                stopping.wait()
                self.close_connection = True
                return
            if fault.kind == "latency" and stopping.wait(fault.seconds):
                self.close_connection = True
                return
            if fault.kind == "drip":
                interval = fault.seconds
        authorization = self.headers.get(state.dialect.auth_header)
        self._send(vendor_api.answer(state, route, params, authorization, body), interval)

    def _send(self, reply: Reply, drip_interval: float | None = None) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if drip_interval is None:
            self.wfile.write(reply.body)
            return
        stopping = self._httpd.stopping
        for index in range(len(reply.body)):
            if index and stopping.wait(drip_interval):
                raise _ClientGone  # the body is incomplete: the connection cannot be reused
            self.wfile.write(reply.body[index : index + 1])
            self.wfile.flush()


# ---------------------------------------------------------------- the server


class SandboxServer:
    """The sandbox vendor: a threaded HTTP server on ``host:port`` with a real balance.

    The socket is bound when the object is built (so :attr:`url` is known at once, with the
    real port when ``port=0``); :meth:`start` serves it from a daemon thread, :meth:`stop`
    closes it. Use it as a context manager::

        with SandboxServer(credits=Decimal("100")) as vendor:
            httpx.get(f"{vendor.url}/api/open/v1/profile", headers=...)

        with SandboxServer(vendor="elevenlabs", meters={"characters": Decimal(10000)}) as v:
            httpx.get(f"{v.url}/v1/user/subscription", headers=v.dialect.auth_headers(...))

    ``vendor`` names the dialect it speaks (:data:`~preflight.sandbox.DIALECTS`); ``meters``
    are starting values by meter name (None leaves a meter out; a meter not given starts at
    the dialect's default). ``credits`` / ``quota`` are the default vendor's ``credits`` and
    ``api_quota_remaining``, as before. The in-process helpers (:meth:`consume`,
    :meth:`topup`, :meth:`set_balance`, :meth:`reset_period`, :meth:`inject`,
    :meth:`set_shape`, :meth:`reset`) have the control API's semantics and raise
    ``ValueError`` where it answers 400. All state is guarded by one lock, so handlers,
    helpers and control requests may run concurrently.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        vendor: str = DEFAULT_VENDOR,
        meters: Mapping[str, Decimal | None] | None = None,
        credits: Decimal | _Unset | None = UNSET,
        quota: Decimal | _Unset | None = UNSET,
        token: str = DEFAULT_TOKEN,
        user_id: str = "user_123",
        tier: str = "pro",
    ) -> None:
        dialect = dialect_of(vendor)
        self._state = SandboxState(
            dialect=dialect,
            meters=_starting_meters(dialect, meters, credits, quota),
            token=token,
            user_id=user_id,
            tier=tier,
        )
        # Set once by stop(): wakes hang, latency and drip handlers so they end promptly.
        self._stopping = threading.Event()
        self._life_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self._httpd = server_class((host, port), self._state, self._stopping)
        self._host = host

    @property
    def vendor(self) -> str:
        """The name of the vendor it speaks as, e.g. ``default`` or ``deepgram``."""
        return self._state.dialect.name

    @property
    def dialect(self) -> Dialect:
        """How it speaks: meters, balance and job paths, auth header (see DIALECTS)."""
        return self._state.dialect

    # -- life cycle

    @property
    def url(self) -> str:
        """Base URL of the vendor, e.g. ``http://127.0.0.1:54321`` (the bound port)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._httpd.server_port}"

    def start(self) -> SandboxServer:
        """Serve from a daemon thread and return ``self``. A server starts at most once."""
        with self._life_lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("a SandboxServer can be started only once")
            self._thread = threading.Thread(
                target=self._httpd.serve_until_stopped,
                name=f"sandbox-vendor-{self._httpd.server_port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging and idle connections, close the socket. Idempotent."""
        with self._life_lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping.set()
            if self._thread is not None:
                self._httpd.wake()
                self._thread.join()
            self._httpd.release_connections(timeout=2.0)
            self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- in-process helpers (the control API's semantics)

    def consume(self, amount: Decimal, meter: str | None = None) -> None:
        """Spend ``amount`` as a process that records nothing would; clamped at 0.

        ``meter`` is a meter's name, or ``both``/``all`` (each meter present); None is the
        default vendor's ``both`` and any other vendor's first meter present. Naming a meter
        the account does not have is a ``ValueError``.
        """
        self._state.consume(amount, meter)

    def topup(self, amount: Decimal, meter: str | None = None) -> None:
        """Add ``amount`` to ``meter`` (a missing meter starts from 0); None is the vendor's
        first meter (OpenRouter: ``credits``)."""
        self._state.topup(amount, meter)

    def set_balance(
        self,
        meters: Mapping[str, Decimal | None] | None = None,
        /,
        **named: Decimal | _Unset | None,
    ) -> None:
        """Set meters by name, from ``meters`` and/or keywords; ``None`` removes a meter,
        UNSET keeps it. ``quota=`` is the default vendor's ``api_quota_remaining``."""
        changes: dict[str, object] = dict(meters or {})
        for name, value in named.items():
            if isinstance(value, _Unset):
                continue
            if name == "quota" and self.vendor == DEFAULT_VENDOR:
                name = QUOTA
            changes[name] = value
        if changes:
            self._state.set_meters(changes)

    def reset_period(self) -> None:
        """Start a new billing period (ElevenLabs: the count used back to 0, the reset date a
        month on); a ``ValueError`` for a vendor without periods."""
        self._state.reset_period()

    def inject(self, fault: Mapping[str, object] | Sequence[Mapping[str, object]]) -> None:
        """Queue a fault (or a list of faults), exactly as ``POST /_sandbox/faults`` does."""
        self._state.inject(fault)

    def set_shape(self, shape: Mapping[str, object]) -> None:
        """Merge ``shape`` (drop / as_strings / extra) into the profile's shape until reset."""
        self._state.set_shape(shape)

    def reset(self) -> None:
        """Clear faults and shape and zero the request counters; the balance is kept."""
        self._state.reset()

    @property
    def request_counts(self) -> dict[str, int]:
        """Vendor requests seen since start or reset, by ``"METHOD path"`` (a copy)."""
        return self._state.request_counts()

    @property
    def balance(self) -> dict[str, Decimal | None]:
        """Each meter by name, e.g. ``{"credits": ..., "api_quota_remaining": ...}``; None
        for a meter left out (a copy)."""
        return self._state.balance()

    @property
    def spent(self) -> dict[str, Decimal]:
        """What jobs and consume took from each meter, by name (this period; a copy)."""
        return self._state.spent()


def _starting_meters(
    dialect: Dialect,
    meters: Mapping[str, Decimal | None] | None,
    credits: Decimal | _Unset | None,
    quota: Decimal | _Unset | None,
) -> dict[str, object]:
    start: dict[str, object] = dict(meters or {})
    for name, value in ((CREDITS, credits), (QUOTA, quota)):
        if isinstance(value, _Unset):
            continue
        if dialect.name != DEFAULT_VENDOR:
            keyword = "credits" if name == CREDITS else "quota"
            raise ValueError(
                f"{keyword}= is the default vendor's; give the {dialect.name} vendor's "
                f"meters as meters={{...}} ({', '.join(dialect.meter_names)})"
            )
        if name in start:
            raise ValueError(f"{name} is given twice (keyword and meters)")
        start[name] = value
    return start


# ---------------------------------------------------------------- CLI entry point


def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    vendor: str = DEFAULT_VENDOR,
    meters: Mapping[str, Decimal | None] | None = None,
    credits: Decimal | _Unset | None = UNSET,
    quota: Decimal | _Unset | None = UNSET,
    token: str = DEFAULT_TOKEN,
    how_to_connect: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the sandbox vendor in the foreground until SIGINT or SIGTERM (``preflight simulate``).

    Echoes ``sandbox vendor listening on http://HOST:PORT (token: TOKEN)`` (``sandbox vendor
    NAME listening on ...`` for a vendor other than the default) and the starting balance of
    each meter; with ``how_to_connect``, then the settings that point preflight at it (and
    Deepgram's project id). Then it blocks;
    on either signal it stops the server cleanly and returns (so the process can exit 0).
    Must run in the main thread, which is where Python delivers signals. A port that cannot be
    bound raises ``OSError``; a meter the vendor does not have, ``ValueError``.
    """
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only a list append: no lock may be taken in a signal handler (the interrupted main
        # thread could be holding it).
        received.append(signum)

    previous: dict[signal.Signals, _SignalHandler] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, on_signal)
            except ValueError as exc:
                raise RuntimeError("serve_forever() must run in the main thread") from exc
        with SandboxServer(
            host=host,
            port=port,
            vendor=vendor,
            meters=meters,
            credits=credits,
            quota=quota,
            token=token,
        ) as server:
            for line in _announcement(server, token, how_to_connect=how_to_connect):
                echo(line)
            sys.stdout.flush()  # a supervisor reading a pipe must see the line now
            while not received:
                time.sleep(0.1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _announcement(server: SandboxServer, token: str, *, how_to_connect: bool) -> list[str]:
    """What ``serve_forever`` says once it listens: where, the balance, how to connect."""
    named = "" if server.vendor == DEFAULT_VENDOR else f" {server.vendor}"
    lines = [
        f"sandbox vendor{named} listening on {server.url} (token: {token})",
        "starting balance: "
        + ", ".join(
            f"{meter} {'absent' if value is None else format(value, 'f')}"
            for meter, value in server.balance.items()
        ),
    ]
    if how_to_connect:
        settings = [f"{_VENDOR_URL_ENV}={server.url}", f"{_TOKEN_ENV}={token}"]
        if server.vendor != DEFAULT_VENDOR:
            settings.insert(0, f"{_VENDOR_ENV}={server.vendor}")
        lines.append("point preflight at it: " + " ".join(settings))
        if server.dialect.project_id is not None:
            lines.append(f"{server.vendor} project id: {server.dialect.project_id}")
    return lines
