"""One builder of hardened httpx clients, and the one place httpx errors are read.

Every outgoing HTTP request of preflight goes through a client built here: the vendor
client (:mod:`preflight.vendor`), the audit's alerts (:mod:`preflight.alerts`) and remote
mode (:mod:`preflight.remote`). What they share:

- **a total deadline** (:class:`Deadline`): per-phase timeouts alone cannot hold a request
  to a total, so the network backend of a client built here caps every connect, TLS
  handshake, read and write at the time left of the request it serves. httpx offers no
  public way to choose httpcore's network backend: :func:`bound_to_deadline` reaches the
  pools through private attributes, and tests/unit/test_transport.py pins each of them so
  that an upgrade that removes one fails loudly;
- **a bounded inflate and a body cap** (:class:`Inflater`, :func:`read_capped`): the cap
  holds for the bytes received and for the bytes they inflate to;
- **one httpx → preflight error map** (:func:`describe`, :func:`unusable`): an httpx error
  becomes one line that names what failed, never a token;
- **a retry policy** (:class:`RetryPolicy`, :func:`retry_after`): exponential backoff,
  and a ``Retry-After`` (seconds or HTTP-date) that replaces it, capped.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn

import httpcore
import httpx

from preflight.errors import UnusableResponseError
from preflight.secret import scrub

if TYPE_CHECKING:
    from preflight.settings import Settings

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_POLICY",
    "Deadline",
    "DeadlineExceeded",
    "Inflater",
    "RetryPolicy",
    "bound_to_deadline",
    "build_async_client",
    "build_client",
    "describe",
    "one_line",
    "read_capped",
    "request_deadline",
    "retry_after",
    "unusable",
    "user_agent",
]

# Text of the other side that ends up in a message is cut here: an error stays one line.
MAX_DETAIL_CHARS: Final = 300
# Output of one inflate step: a gzip bomb inflates ~1000:1, so a 64 KiB network read can
# hold 64 MiB; inflating in steps this small lets the body cap stop it at the cap.
INFLATE_STEP: Final = 16_384
# The encodings we ask for and can inflate in bounded steps (br/zstd would need packages).
ACCEPT_ENCODING: Final = "gzip, deflate"


# ---------------------------------------------------------------- errors


def unusable(detail: str, *, status: int | None = None, attempts: int = 1) -> NoReturn:
    # Every detail is scrubbed here: some quote vendor values, and a vendor may echo our token.
    raise UnusableResponseError(
        f"unusable response: {scrub(detail)}", status=status, attempts=attempts
    )


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    line = scrub(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc)
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    kind = "connection failed" if isinstance(exc, httpx.ConnectError) else "connection error"
    detail = one_line(text, 200)
    return f"{kind} ({detail})" if detail else f"{kind} ({type(exc).__name__})"


# ---------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` requests in all, within one total ``deadline`` (seconds)."""

    attempts: int = 3
    deadline: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.deadline <= 0:
            raise ValueError(f"deadline must be positive, not {self.deadline}")
        if min(self.backoff_base, self.backoff_max, self.retry_after_max) < 0:
            raise ValueError("backoff and Retry-After limits cannot be negative")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy configured in ``settings``."""
        return cls(
            attempts=settings.attempts,
            deadline=settings.deadline,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            retry_after_max=settings.retry_after_max,
        )

    def backoff(self, retry: int) -> float:
        """The un-jittered sleep before retry number ``retry`` (1 for the first retry)."""
        # Bounding the exponent first: 2.0**2000 would overflow before min() could cap it.
        exponent = min(retry - 1, 64)
        return min(self.backoff_max, self.backoff_base * 2.0**exponent)


DEFAULT_POLICY: Final = RetryPolicy()


def retry_after(response: httpx.Response, cap: float) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    seconds: float
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # Relative to the vendor's own Date header when it sends one: immune to our clock skew.
        now = datetime.now(UTC)
        date_header = response.headers.get("Date")
        if date_header:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                now = parsedate_to_datetime(date_header)
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


def user_agent() -> str:
    try:
        version = importlib.metadata.version("preflight")
    except importlib.metadata.PackageNotFoundError:
        version = "0.1"
    return f"preflight/{version}"


# ---------------------------------------------------------------- the total deadline


class DeadlineExceeded(Exception):
    """Internal: the total deadline passed while a body was still arriving."""


class Deadline:
    """The real-time end of one request, which every socket operation of it respects.

    Per-phase timeouts alone cannot hold a request to a total: httpx restarts the read
    timeout on every byte, so a server sending its status line and then one header byte
    a second keeps a request alive for ever, and the body-loop check below never runs
    before the headers end.

    So while a request runs, its deadline sits in a context variable, and the network
    backend :func:`bound_to_deadline` installs caps the timeout of every connect, TLS
    handshake, read and write at the time left (and refuses to start one once none is
    left). A request therefore ends by the deadline whether its connection is new or
    kept alive from an earlier one, without a timer thread. Name resolution is not
    covered (it happens before any socket exists), which the connect timeout and the OS
    resolver bound.
    """

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + max(seconds, 0.0)

    def passed(self) -> bool:
        # The socket timed out after the time left (a hair more, never less).
        return time.monotonic() >= self.at - 0.001


REQUEST_DEADLINE: Final[ContextVar[Deadline | None]] = ContextVar(
    "preflight_request_deadline", default=None
)


def time_left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = REQUEST_DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline.at - time.monotonic()
    if remaining <= 0:
        raise error("deadline exceeded")
    return remaining if timeout is None else min(timeout, remaining)


class BoundedStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = time_left(timeout, httpcore.ConnectTimeout)
        return BoundedStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, its connections bounded by the request deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = time_left(timeout, httpcore.ConnectTimeout)
        return BoundedStream(
            self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = time_left(timeout, httpcore.ConnectTimeout)
        return BoundedStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound_to_deadline(http: httpx.Client) -> httpx.Client:
    """Make every connection ``http`` opens respect the deadline of the request it serves.

    Installed on the connection pools of the client's transport and of its proxy mounts:
    httpx offers no public way to choose httpcore's network backend, so this reads
    ``Client._transport``, ``Client._mounts``, ``HTTPTransport._pool`` and
    ``ConnectionPool._network_backend``. A transport of httpx's own that lacks one of them
    is an error here (an upgrade changed them), never a client without a deadline; any
    other transport (a mock) opens no sockets and is left as it is.
    """
    transports = [http._transport, *http._mounts.values()]
    for transport in transports:
        if not isinstance(transport, httpx.HTTPTransport):
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(pool, httpcore.ConnectionPool) or backend is None:
            raise RuntimeError(
                "httpx/httpcore changed their private pool attributes: the total deadline "
                "cannot be installed (see preflight.transport.bound_to_deadline)"
            )
        if not isinstance(backend, BoundedBackend):
            pool._network_backend = BoundedBackend(backend)
    return http


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[Deadline]:
    """Every socket operation in the block ends within ``seconds`` (on a client built here)."""
    deadline = Deadline(seconds)
    token = REQUEST_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        REQUEST_DEADLINE.reset(token)


# ---------------------------------------------------------------- bodies


class Inflater:
    """Content-Encoding undone in bounded steps, so the body cap also caps inflated bytes.

    httpx's own decoders inflate each network read whole: 64 KiB of a gzip bomb
    becomes 64 MiB before any cap can look at it.
    """

    def __init__(self, content_encoding: str, status: int) -> None:
        encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        self._status = status
        self._zlib: Any = None
        self._raw_deflate_fallback = False
        if not encodings:
            return
        if len(encodings) > 1 or encodings[0] not in ("gzip", "x-gzip", "deflate"):
            # We only ask for gzip and deflate; anything else is not an answer to us.
            unusable(
                f"Content-Encoding {content_encoding.strip()[:40]!r} is not supported",
                status=status,
            )
        if encodings[0] == "deflate":
            # "deflate" should be zlib-wrapped, but some servers send it raw (as httpx allows).
            self._zlib = zlib.decompressobj()
            self._raw_deflate_fallback = True
        else:
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The bytes ``data`` inflates to, at most ``INFLATE_STEP`` at a time."""
        if self._zlib is None:
            if data:
                yield data
            return
        while True:
            try:
                piece = self._zlib.decompress(data, INFLATE_STEP)
            except zlib.error:
                if self._raw_deflate_fallback:
                    self._raw_deflate_fallback = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                unusable("body cannot be decoded", status=self._status)
            self._raw_deflate_fallback = False
            if piece:
                yield piece
            data = self._zlib.unconsumed_tail
            # A full step may leave output inside zlib even with no input left: ask again.
            if not data and len(piece) < INFLATE_STEP:
                return


def read_capped(
    response: httpx.Response, limit: int, deadline_at: float, clock: Callable[[], float]
) -> bytes:
    """The body, cut off once it passes ``limit`` bytes or the deadline, whichever first.

    ``limit`` applies to the bytes received and to the bytes they inflate to, as they
    are produced: memory stays within ``limit`` plus one inflate step.
    """
    status = response.status_code
    declared: int | None = None
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit():
        declared = int(length)
        if declared > limit:
            unusable(f"body of {declared} bytes exceeds the limit of {limit} bytes", status=status)
    chunks: Iterable[bytes]
    if response.is_stream_consumed:
        # Built whole in memory (httpx reads a content= body at once, as mocks do):
        # nothing arrives from the network, and httpx has already decoded it.
        chunks, inflater = [response.content], Inflater("", status)
    else:
        chunks = response.iter_raw()
        inflater = Inflater(response.headers.get("Content-Encoding", ""), status)
    body = bytearray()
    received = 0
    for chunk in chunks:
        received += len(chunk)
        for piece in inflater.feed(chunk):
            if len(body) + len(piece) > limit:
                received = limit + 1
                break
            body += piece
        if received > limit:
            # Freed now: the error's traceback keeps this frame, and with it the
            # buffer, alive for as long as the failure is remembered (a whole retry).
            body.clear()
            unusable(f"body exceeds the limit of {limit} bytes", status=status)
        # The read timeout bounds each chunk, not the whole body: a server dripping
        # one byte at a time would otherwise hold us far past the deadline.
        complete = declared is not None and received >= declared
        if not complete and clock() > deadline_at:
            raise DeadlineExceeded
    return bytes(body)


# ---------------------------------------------------------------- clients


def build_client(
    *,
    connect: float,
    read: float,
    write: float | None = None,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A blocking httpx client: per-phase timeouts, no redirects, a User-Agent, and every
    connection bound to the deadline of the request it serves (:func:`request_deadline`).

    Connections are kept alive between requests; the caller owns (and closes) the client.
    """
    http = httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(
            connect=connect, read=read, write=read if write is None else write, pool=connect
        ),
        follow_redirects=False,
        headers={"User-Agent": user_agent(), **(headers or {})},
        transport=transport,
    )
    return bound_to_deadline(http)


def build_async_client(
    *,
    connect: float,
    read: float,
    write: float | None = None,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The same client for asyncio code. (Its total deadline is the caller's cancel scope:
    a coroutine is cancelled where it awaits, which a blocking socket read cannot be.)"""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(
            connect=connect, read=read, write=read if write is None else write, pool=connect
        ),
        follow_redirects=False,
        headers={"User-Agent": user_agent(), **(headers or {})},
        transport=transport,
    )
