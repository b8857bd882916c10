"""The bundled sandbox vendor: a real HTTP server on loopback that speaks the vendor's profile API.

It keeps a real balance that paid jobs consume, so a new user, the tests and the benchmarks can
run the whole flow (check, dispatch, 402, classification) end to end without a vendor account.

Vendor API (``Authorization: Bearer <token>`` required, else 401 ``{"error": "unauthorized"}``):

- ``GET /api/open/v1/profile`` -> ``{"user_id": ..., "api_quota_remaining": 988000, "tier": ...,
  "credits": 1200}``. Meters are JSON numbers carrying the exact decimal text (``12.50`` stays
  ``12.50``); a meter that is not set is left out, as during a billing-model migration.
- ``POST /api/open/v1/profile`` ``{"webhookUrl": "https://..."}`` -> 200 with the profile and
  ``webhookUrl``; 422 ``validation_error`` for anything but an https URL of at most 2048
  characters; 400 ``bad_request`` for a body that is not a JSON object. Unknown fields are ignored.
- ``POST /api/open/v1/jobs`` ``{"cost": "5", "meter": "credits"}`` -> 200 and the balance is
  charged, or 402 ``{"error": "insufficient_quota"}`` and nothing is charged.

Faults (``POST /_sandbox/faults``, one object or a list, queued FIFO) each answer the next
``count`` vendor requests (``-1``: every request until reset), whatever their endpoint or token:

- ``{"status": 500, "headers": {"Retry-After": "1"}, "body": "..."}``: that status (400-599);
- ``{"kind": "malformed", "body": "<html>...", "content_type": "text/html"}``: 200, raw body;
- ``{"kind": "latency", "seconds": 0.5}``: sleep, then answer normally;
- ``{"kind": "drip", "interval": 0.2}``: the normal answer, one byte per ``interval``;
- ``{"kind": "hang"}``: never answer; the connection is closed when the server stops.

Shape (``POST /_sandbox/shape``, merged into the current shape, kept until reset):
``{"drop": ["credits"]}``, ``{"as_strings": true}``, ``{"extra": {"plan": {...}}}`` (extra
fields win over the normal ones) simulate schema drift.

Control API (no auth, JSON, decimals as strings): ``GET /_sandbox/state``,
``POST /_sandbox/consume`` ``{"amount": "10", "meter": "credits"|"api_quota_remaining"|"both"}``
(spending by a process that records nothing; clamped at 0), ``POST /_sandbox/balance``
``{"credits": "500", "api_quota_remaining": null}``, ``POST /_sandbox/topup``
``{"amount": "100", "meter": "credits"}``, ``POST /_sandbox/faults``, ``POST /_sandbox/shape``,
``POST /_sandbox/reset`` (faults, shape and request counters; the balance is kept).

Standard library only, so that ``preflight simulate`` works wherever preflight is installed.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import json
import re
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

__all__ = ["DEFAULT_TOKEN", "UNSET", "SandboxServer", "serve_forever"]

# Not a secret: the well-known token of a local test double, printed by `preflight simulate`.
DEFAULT_TOKEN: Final = "sandbox-token"  # noqa: S105

CREDITS: Final = "credits"
QUOTA: Final = "api_quota_remaining"
METERS: Final = (CREDITS, QUOTA)

PROFILE_PATH: Final = "/api/open/v1/profile"
JOBS_PATH: Final = "/api/open/v1/jobs"
CONTROL_PREFIX: Final = "/_sandbox/"

_GET_PROFILE: Final = f"GET {PROFILE_PATH}"
_POST_PROFILE: Final = f"POST {PROFILE_PATH}"
_POST_JOB: Final = f"POST {JOBS_PATH}"
_VENDOR_ROUTES: Final = (_GET_PROFILE, _POST_PROFILE, _POST_JOB)

# Control endpoint name -> the one method it answers.
_CONTROL_ROUTES: Final = {
    "state": "GET",
    "faults": "POST",
    "shape": "POST",
    "consume": "POST",
    "balance": "POST",
    "topup": "POST",
    "reset": "POST",
}

_MAX_BODY: Final = 1024 * 1024
_MAX_WEBHOOK_URL: Final = 2048
_DEFAULT_MALFORMED_BODY: Final = "<html><body>502 Bad Gateway</body></html>"

# Amounts are bounded so that every sum and difference below is exact within _EXACT: a float
# would round, and a Decimal with the default 28-digit context could round too.
_MAX_ADJUSTED_EXPONENT: Final = 30
_MIN_EXPONENT: Final = -30
_EXACT: Final = Context(prec=200, traps=[InvalidOperation, Inexact, Overflow])
_ZERO: Final = Decimal(0)

# JSON-number-like text only: Decimal() alone would also take "NaN", "Infinity" and "1_000".
_NUMBER_TEXT: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The server owns the framing of every response; a fault may not lie about it.
_RESERVED_HEADERS: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-type"}
)

_ERROR_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_quota",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

_SignalHandler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _Unset(enum.Enum):
    """Type of :data:`UNSET`: "leave this meter as it is", distinct from ``None`` (remove it)."""

    UNSET = enum.auto()


#: Default of :meth:`SandboxServer.set_balance` arguments: the meter is left unchanged.
UNSET: Final = _Unset.UNSET


class _BadInput(ValueError):
    """Input the sandbox refuses: HTTP 400 on the control API, ValueError in process."""


# ---------------------------------------------------------------- values


def _decimal(value: object, what: str) -> Decimal:
    """An exact, finite, bounded decimal from a JSON number, a numeric string or an int."""
    if isinstance(value, bool | float):
        # A float has already lost the exact amount; say so rather than guess.
        raise _BadInput(f"{what} must be a decimal number or numeric string, not {value!r}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        raise _BadInput(f"{what} must be a decimal number or numeric string, not {value!r}")
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int):
        raise _BadInput(f"{what} must be finite")
    if number.adjusted() > _MAX_ADJUSTED_EXPONENT or exponent < _MIN_EXPONENT:
        raise _BadInput(f"{what} is out of range")
    return number


def _amount(value: object, what: str) -> Decimal:
    number = _decimal(value, what)
    if number < 0:
        raise _BadInput(f"{what} must not be negative")
    return number


def _optional_amount(value: object, what: str) -> Decimal | None:
    return None if value is None else _amount(value, what)


def _meter(value: object, *, allow_both: bool = False) -> str:
    allowed = (*METERS, "both") if allow_both else METERS
    if not isinstance(value, str) or value not in allowed:
        raise _BadInput(f"meter must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _seconds(value: object, what: str, maximum: float) -> float:
    # Durations are not amounts: a float is fine here.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _BadInput(f"{what} must be a number of seconds, not {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise _BadInput(f"{what} must be a number of seconds, not {value!r}") from None
    if not 0 <= seconds <= maximum:  # also false for NaN
        raise _BadInput(f"{what} must be between 0 and {maximum:g} seconds")
    return seconds


def _plain(number: Decimal) -> str:
    """The decimal's exact text without exponent: Decimal("12.50") -> "12.50", 1E+3 -> "1000"."""
    return format(number, "f")


def _render(value: object) -> str:
    """JSON text in which a Decimal is a number with its exact digits (json.dumps cannot)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value!r} has no JSON form")
        return _plain(value)
    if isinstance(value, int | float | str):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, Mapping):
        items: list[str] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {key!r}")
            items.append(f"{json.dumps(key)}: {_render(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(body: bytes) -> object:
    """The request body, floats as exact Decimals; ValueError if it is not JSON."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    parsed: object = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    return parsed


def _object(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise _BadInput(f"{what} must be a JSON object")
    return value


def _unknown_keys(value: Mapping[str, object], allowed: frozenset[str], what: str) -> None:
    # Control input is written by hand in tests: a typo must fail, not be silently ignored.
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _BadInput(f"unknown {what} field(s): {', '.join(unknown)}")


def _error_code(status: int) -> str:
    if status in _ERROR_CODES:
        return _ERROR_CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def _webhook_error(value: object) -> str | None:
    """Why ``value`` is not an acceptable webhookUrl, or None if it is."""
    bad_url = "webhookUrl must be an https URL"
    if not isinstance(value, str) or not value.startswith("https://"):
        return bad_url
    if len(value) > _MAX_WEBHOOK_URL:
        return f"webhookUrl must be at most {_MAX_WEBHOOK_URL} characters"
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return bad_url
    try:
        host = urlsplit(value).hostname
    except ValueError:
        return bad_url
    return None if host else bad_url


# ---------------------------------------------------------------- faults and replies


@dataclass(frozen=True)
class _Reply:
    """One complete HTTP answer; Content-Length is always derived from ``body``."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def _json_reply(
    status: int,
    payload: object,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> _Reply:
    return _Reply(status, _render(payload).encode("utf-8"), headers=headers, close=close)


@dataclass
class _Fault:
    kind: str
    remaining: int  # -1: until reset
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0  # latency: the delay; drip: the interval between bytes

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"kind": self.kind, "remaining": self.remaining}
        if self.kind in ("status", "malformed"):
            described["status"] = self.status
        if self.kind in ("latency", "drip"):
            described["seconds"] = self.seconds
        return described


_FAULT_FIELDS: Final = {
    "status": frozenset({"status", "headers", "body", "content_type"}),
    "malformed": frozenset({"status", "headers", "body", "content_type"}),
    "latency": frozenset({"seconds"}),
    "drip": frozenset({"interval"}),
    "hang": frozenset(),
}


def _fault_headers(value: object) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for name, raw in _object(value, "fault headers").items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise _BadInput(f"fault header {name!r} is not allowed")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise _BadInput(f"fault header {name!r} must be a string")
        text = str(raw)
        if "\r" in text or "\n" in text:
            raise _BadInput(f"fault header {name!r} must be one line")
        headers.append((name, text))
    return tuple(headers)


def _status(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _BadInput(f"fault status must be an integer from {low} to {high}, not {value!r}")
    if value in (204, 304):  # these cannot carry the body a fault sends
        raise _BadInput(f"fault status {value} cannot carry a body")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _BadInput(f"{what} must be a string")
    return value


def _parse_fault(raw: object) -> _Fault:
    spec = _object(raw, "a fault")
    kind = spec.get("kind", "status" if "status" in spec else None)
    if not isinstance(kind, str) or kind not in _FAULT_FIELDS:
        raise _BadInput(
            f"a fault needs a status or a kind ({', '.join(_FAULT_FIELDS)}), not {kind!r}"
        )
    _unknown_keys(spec, _FAULT_FIELDS[kind] | {"kind", "count"}, f"{kind} fault")
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or (count < 1 and count != -1):
        raise _BadInput(f"fault count must be a positive integer or -1, not {count!r}")
    headers = _fault_headers(spec.get("headers", {}))

    if kind == "status":
        status = _status(spec.get("status"), 400, 599)
        if "body" in spec:
            body = _text(spec["body"], "fault body").encode("utf-8")
        else:
            body = _render({"error": _error_code(status)}).encode("utf-8")
        content_type = _text(spec.get("content_type", "application/json"), "content_type")
        return _Fault(kind, count, status, body, content_type, headers)
    if kind == "malformed":
        return _Fault(
            kind,
            count,
            _status(spec.get("status", 200), 200, 599),
            _text(spec.get("body", _DEFAULT_MALFORMED_BODY), "fault body").encode("utf-8"),
            _text(spec.get("content_type", "text/html"), "content_type"),
            headers,
        )
    if kind == "latency":
        if "seconds" not in spec:
            raise _BadInput("a latency fault needs seconds")
        return _Fault(kind, count, seconds=_seconds(spec["seconds"], "seconds", 600))
    if kind == "drip":
        return _Fault(kind, count, seconds=_seconds(spec.get("interval", 0.1), "interval", 10))
    return _Fault(kind, count)


def _parse_faults(raw: object) -> list[_Fault]:
    # All or nothing: a list with one bad fault queues none of them.
    items: Sequence[object] = raw if isinstance(raw, list) else [raw]
    return [_parse_fault(item) for item in items]


def _parse_shape(raw: object) -> dict[str, object]:
    spec = _object(raw, "shape")
    _unknown_keys(spec, frozenset({"drop", "as_strings", "extra"}), "shape")
    shape: dict[str, object] = {}
    if "drop" in spec:
        drop = spec["drop"]
        if not isinstance(drop, list) or not all(isinstance(name, str) for name in drop):
            raise _BadInput("shape drop must be a list of field names")
        shape["drop"] = list(drop)
    if "as_strings" in spec:
        if not isinstance(spec["as_strings"], bool):
            raise _BadInput("shape as_strings must be true or false")
        shape["as_strings"] = spec["as_strings"]
    if "extra" in spec:
        extra = dict(_object(spec["extra"], "shape extra"))
        try:
            _render(extra)
        except (TypeError, ValueError) as exc:
            raise _BadInput(f"shape extra is not JSON: {exc}") from None
        shape["extra"] = extra
    return shape


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

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_changed = threading.Condition()
        # Created first: TCPServer.__init__ calls server_close() if binding fails.
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, _Handler)

    def serve_until(self, stopping: threading.Event) -> None:
        """Accept connections until ``stopping`` is set (and :meth:`wake` called)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not stopping.is_set():
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
    def _sandbox(self) -> SandboxServer:
        server = self.server
        assert isinstance(server, _HTTPServer)
        return server.sandbox

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
            if path in (PROFILE_PATH, JOBS_PATH):
                self._vendor(path, body)
            elif path.startswith(CONTROL_PREFIX):
                self._send(self._control(path.removeprefix(CONTROL_PREFIX), body))
            else:
                self._send(_json_reply(404, {"error": "not_found", "message": f"no {path}"}))
        except (_ClientGone, OSError):
            # The client hung up (or stop() shut its socket): nobody is left to answer.
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a request whose body cannot be read."""
        if self.headers.get("Transfer-Encoding"):
            # Chunked uploads are not needed by any client here; refuse rather than desync.
            self._send(_json_reply(411, {"error": "length_required"}, close=True))
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
                _json_reply(
                    400, {"error": "bad_request", "message": "bad Content-Length"}, close=True
                )
            )
            return None
        if length > _MAX_BODY:
            self._send(_json_reply(413, {"error": "payload_too_large"}, close=True))
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            raise _ClientGone
        return body

    def _vendor(self, path: str, body: bytes) -> None:
        route = f"{self.command} {path}"
        if route not in _VENDOR_ROUTES:
            allow = ", ".join(r.split(" ")[0] for r in _VENDOR_ROUTES if r.endswith(f" {path}"))
            self._send(
                _json_reply(405, {"error": "method_not_allowed"}, headers=(("Allow", allow),))
            )
            return
        sandbox = self._sandbox
        fault = sandbox._begin_vendor_request(route)
        interval: float | None = None
        if fault is not None:
            if fault.kind in ("status", "malformed"):
                self._send(_Reply(fault.status, fault.body, fault.content_type, fault.headers))
                return
            if fault.kind == "hang":
                sandbox._stopping.wait()
                self.close_connection = True
                return
            if fault.kind == "latency" and sandbox._stopping.wait(fault.seconds):
                self.close_connection = True
                return
            if fault.kind == "drip":
                interval = fault.seconds
        self._send(sandbox._vendor_answer(route, self.headers.get("Authorization"), body), interval)

    def _control(self, name: str, body: bytes) -> _Reply:
        method = _CONTROL_ROUTES.get(name)
        if method is None:
            return _json_reply(
                404, {"error": "not_found", "message": f"no control endpoint {name}"}
            )
        if self.command != method:
            return _json_reply(405, {"error": "method_not_allowed"}, headers=(("Allow", method),))
        try:
            payload = _parse_json(body) if body.strip() else {}
        except ValueError as exc:
            return _json_reply(400, {"error": "bad_request", "message": f"invalid JSON: {exc}"})
        try:
            return _json_reply(200, self._sandbox._control(name, payload))
        except _BadInput as exc:
            return _json_reply(400, {"error": "bad_request", "message": str(exc)})

    def _send(self, reply: _Reply, drip_interval: float | None = None) -> None:
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
        stopping = self._sandbox._stopping
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

    ``credits`` / ``quota`` are the starting ``credits`` and ``api_quota_remaining`` meters;
    ``None`` leaves a meter out of the profile. The in-process helpers (:meth:`consume`,
    :meth:`set_balance`, :meth:`inject`, :meth:`set_shape`, :meth:`reset`) have the control
    API's semantics and raise ``ValueError`` where it answers 400. All state is guarded by one
    lock, so handlers, helpers and control requests may run concurrently.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credits: Decimal | None = Decimal("1200"),
        quota: Decimal | None = Decimal("988000"),
        token: str = DEFAULT_TOKEN,
        user_id: str = "user_123",
        tier: str = "pro",
    ) -> None:
        if not token:
            raise ValueError("the sandbox token cannot be empty")
        self._token = token
        self._user_id = user_id
        self._tier = tier
        self._lock = threading.Lock()
        self._meters: dict[str, Decimal | None] = {
            CREDITS: _optional_amount(credits, "credits"),
            QUOTA: _optional_amount(quota, "quota"),
        }
        self._faults: deque[_Fault] = deque()
        self._shape: dict[str, object] = {}
        self._counts: dict[str, int] = dict.fromkeys(_VENDOR_ROUTES, 0)
        self._webhook_url: str | None = None
        # Set once by stop(): wakes hang, latency and drip handlers so they end promptly.
        self._stopping = threading.Event()
        self._life_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self._httpd = server_class((host, port), self)
        self._host = host

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
                target=self._httpd.serve_until,
                args=(self._stopping,),
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

    def consume(self, amount: Decimal, meter: str = "both") -> None:
        """Spend ``amount`` as a process that records nothing would; clamped at 0.

        ``meter`` is ``credits``, ``api_quota_remaining`` or ``both`` (each meter present).
        Naming a meter the account does not have is a ``ValueError``.
        """
        self._consume(_amount(amount, "amount"), _meter(meter, allow_both=True))

    def topup(self, amount: Decimal, meter: str = CREDITS) -> None:
        """Add ``amount`` to ``meter`` (a missing meter starts from 0)."""
        self._topup(_amount(amount, "amount"), _meter(meter))

    def set_balance(
        self,
        *,
        credits: Decimal | _Unset | None = UNSET,
        quota: Decimal | _Unset | None = UNSET,
    ) -> None:
        """Set ``credits`` / ``api_quota_remaining``; ``None`` removes the meter, UNSET keeps it."""
        self._set_meters(
            {
                name: _optional_amount(value, name)
                for name, value in ((CREDITS, credits), (QUOTA, quota))
                if not isinstance(value, _Unset)
            }
        )

    def inject(self, fault: Mapping[str, object] | Sequence[Mapping[str, object]]) -> None:
        """Queue a fault (or a list of faults), exactly as ``POST /_sandbox/faults`` does."""
        self._queue(_parse_faults(fault))

    def set_shape(self, shape: Mapping[str, object]) -> None:
        """Merge ``shape`` (drop / as_strings / extra) into the profile's shape until reset."""
        parsed = _parse_shape(shape)
        with self._lock:
            self._shape.update(parsed)

    def reset(self) -> None:
        """Clear faults and shape and zero the request counters; the balance is kept."""
        with self._lock:
            self._faults.clear()
            self._shape = {}
            self._counts = dict.fromkeys(_VENDOR_ROUTES, 0)

    @property
    def request_counts(self) -> dict[str, int]:
        """Vendor requests seen since start or reset, by ``"METHOD path"`` (a copy)."""
        with self._lock:
            return dict(self._counts)

    @property
    def balance(self) -> dict[str, Decimal | None]:
        """``{"credits": ..., "api_quota_remaining": ...}``; None for a meter left out (a copy)."""
        with self._lock:
            return dict(self._meters)

    # -- internals shared by the helpers and the HTTP handler

    def _queue(self, faults: list[_Fault]) -> int:
        with self._lock:
            self._faults.extend(faults)
            return len(self._faults)

    def _set_meters(self, changes: Mapping[str, Decimal | None]) -> None:
        with self._lock:
            self._meters.update(changes)

    def _consume(self, amount: Decimal, meter: str) -> dict[str, Decimal]:
        with self._lock:
            names = (
                [m for m in METERS if self._meters[m] is not None] if meter == "both" else [meter]
            )
            consumed: dict[str, Decimal] = {}
            for name in names:
                current = self._meters[name]
                if current is None:
                    raise _BadInput(f"the account has no {name} meter")
                spent = min(amount, current)
                self._meters[name] = _EXACT.subtract(current, spent)
                consumed[name] = spent
            return consumed

    def _topup(self, amount: Decimal, meter: str) -> None:
        with self._lock:
            self._meters[meter] = _EXACT.add(self._meters[meter] or _ZERO, amount)

    def _begin_vendor_request(self, route: str) -> _Fault | None:
        """Count a vendor request and take the fault (if any) that answers it."""
        with self._lock:
            self._counts[route] += 1
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.popleft()
            return fault

    def _authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").strip().partition(" ")
        # compare_digest: the sandbox is a test double, but timing-safe costs nothing.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8"), self._token.encode("utf-8")
        )

    def _profile(self) -> dict[str, object]:
        """The profile body as the vendor would send it, shaped; call with the lock held."""
        as_strings = bool(self._shape.get("as_strings", False))
        profile: dict[str, object] = {"user_id": self._user_id}
        for name, value in (
            (QUOTA, self._meters[QUOTA]),
            ("tier", self._tier),
            (CREDITS, self._meters[CREDITS]),
        ):
            if isinstance(value, Decimal):
                profile[name] = _plain(value) if as_strings else value
            elif value is not None:
                profile[name] = value
        if self._webhook_url is not None:
            profile["webhookUrl"] = self._webhook_url
        drop = self._shape.get("drop", [])
        assert isinstance(drop, list)
        for name in drop:
            profile.pop(name, None)
        extra = self._shape.get("extra", {})
        assert isinstance(extra, dict)
        profile.update(extra)
        return profile

    def _vendor_answer(self, route: str, authorization: str | None, body: bytes) -> _Reply:
        """The normal (fault-free) answer to one vendor request."""
        if not self._authorized(authorization):
            return _json_reply(
                401, {"error": "unauthorized"}, headers=(("WWW-Authenticate", "Bearer"),)
            )
        if route == _GET_PROFILE:
            with self._lock:
                return _json_reply(200, self._profile())
        try:
            payload = _object(_parse_json(body), "the body")
        except (ValueError, _BadInput) as exc:
            return _json_reply(400, {"error": "bad_request", "message": str(exc)})
        if route == _POST_PROFILE:
            return self._update_profile(payload)
        return self._run_job(payload)

    def _update_profile(self, payload: Mapping[str, object]) -> _Reply:
        # Only webhookUrl is server-controlled and writable; other fields are ignored.
        if "webhookUrl" in payload:
            problem = _webhook_error(payload["webhookUrl"])
            if problem is not None:
                return _json_reply(
                    422, {"error": "validation_error", "field": "webhookUrl", "message": problem}
                )
        with self._lock:
            if "webhookUrl" in payload:
                url = payload["webhookUrl"]
                assert isinstance(url, str)
                self._webhook_url = url
            return _json_reply(200, self._profile())

    def _run_job(self, payload: Mapping[str, object]) -> _Reply:
        try:
            cost = _amount(payload.get("cost"), "cost")
            meter = _meter(payload["meter"]) if "meter" in payload else None
        except _BadInput as exc:
            return _json_reply(400, {"error": "bad_request", "message": str(exc)})
        with self._lock:
            if meter is None:
                meter = CREDITS if self._meters[CREDITS] is not None else QUOTA
            current = self._meters[meter]
            if current is None:
                return _json_reply(
                    402,
                    {"error": "insufficient_quota", "message": f"the account has no {meter} meter"},
                )
            if current < cost:
                return _json_reply(402, {"error": "insufficient_quota"})
            left = _EXACT.subtract(current, cost)
            self._meters[meter] = left
        return _json_reply(
            200, {"ok": True, "charged": _plain(cost), "meter": meter, "balance": _plain(left)}
        )

    def _state(self) -> dict[str, object]:
        with self._lock:
            return {
                "balance": {
                    name: None if value is None else _plain(value)
                    for name, value in self._meters.items()
                },
                "requests": dict(self._counts),
                "faults_queued": len(self._faults),
                "faults": [fault.describe() for fault in self._faults],
                "shape": dict(self._shape),
                "webhookUrl": self._webhook_url,
            }

    def _balance_strings(self) -> dict[str, str | None]:
        return {name: None if v is None else _plain(v) for name, v in self.balance.items()}

    def _control(self, name: str, payload: object) -> dict[str, object]:
        """Run one control endpoint; raises _BadInput for a 400."""
        if name == "state":
            return self._state()
        if name == "faults":
            return {"faults_queued": self._queue(_parse_faults(payload))}
        if name == "shape":
            self.set_shape(_object(payload, "shape"))
            with self._lock:
                return {"shape": dict(self._shape)}
        if name == "reset":
            self.reset()
            return {"ok": True}
        spec = _object(payload, f"the {name} request")
        if name == "balance":
            _unknown_keys(spec, frozenset(METERS), "balance")
            if not spec:
                raise _BadInput("give credits and/or api_quota_remaining")
            self._set_meters({name: _optional_amount(value, name) for name, value in spec.items()})
            return {"balance": self._balance_strings()}
        _unknown_keys(spec, frozenset({"amount", "meter"}), name)
        amount = _amount(spec.get("amount"), "amount")
        if name == "topup":
            meter = _meter(spec.get("meter", CREDITS))
            self._topup(amount, meter)
            return {"meter": meter, "balance": self._balance_strings()}
        consumed = self._consume(amount, _meter(spec.get("meter", "both"), allow_both=True))
        return {
            # One meter: what it lost. "both": the larger loss, i.e. ``amount`` unless every
            # meter was clamped; by_meter has the detail.
            "consumed": _plain(max(consumed.values(), default=_ZERO)),
            "by_meter": {meter: _plain(spent) for meter, spent in consumed.items()},
            "balance": self._balance_strings(),
        }


# ---------------------------------------------------------------- CLI entry point


def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    credits: Decimal | None = Decimal("1200"),
    quota: Decimal | None = Decimal("988000"),
    token: str = DEFAULT_TOKEN,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the sandbox vendor in the foreground until SIGINT or SIGTERM (``preflight simulate``).

    Echoes one line, ``sandbox vendor listening on http://HOST:PORT (token: TOKEN)``, then blocks;
    on either signal it stops the server cleanly and returns (so the process can exit 0).
    Must run in the main thread, which is where Python delivers signals. A port that cannot be
    bound raises ``OSError``.
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
            host=host, port=port, credits=credits, quota=quota, token=token
        ) as server:
            echo(f"sandbox vendor listening on {server.url} (token: {token})")
            sys.stdout.flush()  # a supervisor reading a pipe must see the line now
            while not received:
                time.sleep(0.1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
