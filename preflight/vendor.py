"""The vendor's profile API: the only place where httpx errors become preflight errors.

``VendorClient.get_profile()`` reads ``GET /api/open/v1/profile`` with bounded
retries, one total deadline and a capped body; ``update_profile()`` posts to the
same path. Everything the vendor sends is parsed tolerantly (numbers or numeric
strings, missing meters, unknown fields kept in ``raw``) but exactly: amounts are
``Decimal`` from the first byte, never ``float``.

Retries (5xx, 429, 408, timeouts, connection errors, unusable bodies) use
exponential backoff with *full jitter*: the n-th retry sleeps
``min(backoff_max, backoff_base * 2**(n-1)) * jitter()``, so that many workers
hitting a struggling vendor at once spread out instead of retrying in lockstep.
A ``Retry-After`` header (seconds or HTTP-date) replaces the backoff, capped at
``retry_after_max``, and is not jittered: the vendor asked for that time.

The deadline bounds each request whole (connect, headers and body: see
``_Deadline``), the body cap bounds received and inflated bytes alike (``_Inflater``),
and amounts must fit the bound of :mod:`preflight.domain.amounts`.

The token only ever travels in the ``Authorization`` header of each request; it is
never stored in the httpx client, and no message built here can contain it. A
vendor echoing it back gets it replaced in every string of the body before the
profile is built, so nothing downstream (database, output, logs) ever sees it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import random
import re
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, NoReturn, Protocol

import httpcore
import httpx

from preflight import metrics
from preflight.adapters import DEFAULT_ADAPTER, Adapter, Reading
from preflight.domain.amounts import MAX_NUMBER_CHARS
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    ConfigError,
    UnusableResponseError,
    UsageError,
    VendorError,
    VendorRejectedError,
    VendorUnavailableError,
)
from preflight.logs import get_logger
from preflight.secret import TOKEN_FORMAT, Secret, contains_secret, is_valid_token, scrub
from preflight.settings import Settings

__all__ = [
    "DEFAULT_POLICY",
    "PROFILE_PATH",
    "Profile",
    "RetryPolicy",
    "VendorClient",
    "build_http_client",
    "parse_profile",
]

PROFILE_PATH: Final = "/api/open/v1/profile"
METER_NAMES: Final = ("credits", "api_quota_remaining")

# Vendor text that ends up in a message is cut here so that an error stays one readable line.
_MAX_DETAIL_CHARS: Final = 300
# An error body is only read for its message; no reason to accept a megabyte of it.
_MAX_ERROR_BODY_BYTES: Final = 16_384
# 408: the vendor gave up waiting for our request, which is as transient as a 503.
_RETRYABLE_4XX: Final = frozenset({408, 429})
# Output of one inflate step: a gzip bomb inflates ~1000:1, so a 64 KiB network read can
# hold 64 MiB; inflating in steps this small lets the body cap stop it at the cap.
_INFLATE_STEP: Final = 16_384
# The encodings we ask for and can inflate in bounded steps (br/zstd would need packages).
_ACCEPT_ENCODING: Final = "gzip, deflate"

_log = get_logger("preflight.vendor")

Method = Literal["GET", "POST"]


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Profile:
    """One successful balance reading, parsed exactly by the account's adapter.

    ``raw`` is the body text exactly as received (unknown fields untouched; an adapter
    that reads two endpoints keeps both bodies, by path). ``credits`` and
    ``api_quota_remaining`` hold the meters of those names; ``extra_meters`` every other
    meter by name (``characters``, ``usd``, ...). A meter is ``None`` when the vendor did
    not send it (or sent ``null``). ``blocked`` is the vendor's own word that the account
    cannot pay for calls (a no-go whatever the balance).
    """

    raw: str
    user_id: str | None
    tier: str | None
    credits: Decimal | None
    api_quota_remaining: Decimal | None
    http_status: int
    latency_ms: int
    attempts: int
    extra_meters: Mapping[str, Decimal | None] = field(default_factory=dict)
    meter_names: tuple[str, ...] = METER_NAMES
    blocked: str | None = None

    @property
    def meters(self) -> dict[str, Decimal | None]:
        """Every meter of the reading by name, in the adapter's order of preference."""
        return {name: self.meter(name) for name in self.meter_names}

    def meter(self, name: str) -> Decimal | None:
        """The value of meter ``name``; ValueError for a meter this reading cannot have."""
        if name == "credits" and name in self.meter_names:
            return self.credits
        if name == "api_quota_remaining" and name in self.meter_names:
            return self.api_quota_remaining
        if name in self.meter_names:
            return self.extra_meters.get(name)
        raise ValueError(f"unknown meter {name!r} (known: {', '.join(self.meter_names)})")


def profile_of(
    reading: Reading, raw: str, *, http_status: int, latency_ms: int, attempts: int
) -> Profile:
    """The :class:`Profile` of an adapter's :class:`~preflight.adapters.Reading`."""
    meters = reading.meters
    return Profile(
        raw=raw,
        user_id=reading.user_id,
        tier=reading.tier,
        credits=meters.get("credits"),
        api_quota_remaining=meters.get("api_quota_remaining"),
        http_status=http_status,
        latency_ms=latency_ms,
        attempts=attempts,
        extra_meters={k: v for k, v in meters.items() if k not in METER_NAMES},
        meter_names=tuple(meters),
        blocked=reading.blocked,
    )


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


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("preflight")
    except importlib.metadata.PackageNotFoundError:
        version = "0.1"
    return f"preflight/{version}"


def build_http_client(settings: Settings, base_url: str) -> httpx.Client:
    """An httpx client for one vendor: per-phase timeouts, no redirects, no credentials.

    The caller owns (and closes) the client; the token is added per request by
    :class:`VendorClient`, so this client can be shared and logged safely.
    Connections are kept alive between requests (a check then costs one round trip, not
    a handshake and a server thread too); every socket operation still ends by the
    request's deadline (see :class:`_Deadline`).
    """
    http = httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        ),
        follow_redirects=False,
        headers={"User-Agent": _user_agent()},
    )
    return bound_to_deadline(http)


# ---------------------------------------------------------------- parsing


def _unusable(detail: str, *, status: int | None = None, attempts: int = 1) -> NoReturn:
    # Every detail is scrubbed here: some quote vendor values, and a vendor may echo our token.
    raise UnusableResponseError(
        f"unusable response: {scrub(detail)}", status=status, attempts=attempts
    )


def _reject_constant(name: str) -> NoReturn:
    # json calls this for NaN / Infinity / -Infinity, which no real balance can be.
    raise ValueError(f"{name} is not a number")


class _NumberTooLong(ValueError):
    """Raised from inside json.loads: no usable number is this long (see MAX_NUMBER_CHARS)."""


def _json_number(text: str) -> Decimal:
    # Checked before Decimal() reads it; int() would even raise past 4300 digits.
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberTooLong
    return Decimal(text)


def _load_json(raw: str) -> object:
    """The body as JSON, numbers as exact decimals; raises ``ValueError`` or ``RecursionError``."""
    # A leading BOM is not part of the JSON but some servers send one; raw keeps it.
    return json.loads(
        raw.removeprefix("\ufeff"),
        parse_float=_json_number,
        parse_int=_json_number,
        parse_constant=_reject_constant,
    )


# One JSON string literal; in text that parsed as JSON, these are exactly its strings.
_JSON_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _scrub_literal(match: re.Match[str]) -> str:
    literal = match.group()
    inner = literal[1:-1]
    if "\\" not in inner:
        # No escapes: the text is the literal itself, and the marker needs none either.
        return f'"{scrub(inner)}"'
    text = json.loads(literal)
    cleaned = scrub(text)
    # ensure_ascii: the body may spell a lone surrogate, which must stay an escape.
    return literal if cleaned == text else json.dumps(cleaned)


def _scrub_json_strings(raw: str) -> str:
    """``raw`` (valid JSON) with every known secret replaced inside its strings (keys too).

    Escaped spellings (``"\\u0073k-..."``) are decoded first, so a vendor echoing our token
    in any form cannot get it stored. Numbers and layout are left byte for byte.
    """
    return _JSON_STRING.sub(_scrub_literal, raw)


def _decode(raw: str, http_status: int, attempts: int) -> tuple[str, object]:
    """``raw`` as JSON (numbers exact), any known secret scrubbed from its strings first.

    Returns the text to keep (scrubbed when the vendor echoed a secret) and the document;
    raises :class:`UnusableResponseError` with the status and attempts.
    """
    try:
        data = _load_json(raw)
        # Escapes can spell a secret that a plain search would miss; without any, a
        # plain search is enough, and the common body is not copied.
        if isinstance(data, dict | list) and ("\\" in raw or contains_secret(raw)):
            cleaned = _scrub_json_strings(raw)
            if cleaned != raw:
                raw, data = cleaned, _load_json(cleaned)
    except _NumberTooLong:
        _unusable(
            f"body has a number longer than {MAX_NUMBER_CHARS} characters",
            status=http_status,
            attempts=attempts,
        )
    except (ValueError, RecursionError):
        _unusable("body is not valid JSON", status=http_status, attempts=attempts)
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else "a scalar"
        _unusable(f"body is {kind}, not a JSON object", status=http_status, attempts=attempts)
    return raw, data


def _joined_raw(paths: tuple[str, ...], raws: list[str]) -> str:
    """One text for the bodies of several endpoints: a JSON object keyed by path, each
    body kept byte for byte (each is a valid JSON object, so the whole is valid JSON)."""
    if len(raws) == 1:
        return raws[0]
    return "{" + ", ".join(f"{json.dumps(p)}: {r}" for p, r in zip(paths, raws, strict=True)) + "}"


def parse_profile(
    raw: str,
    *,
    http_status: int = 200,
    latency_ms: int = 0,
    attempts: int = 1,
    adapter: Adapter = DEFAULT_ADAPTER,
) -> Profile:
    """Parse a balance body exactly with ``adapter``, or raise :class:`UnusableResponseError`.

    Meters may be JSON numbers or numeric strings; either may be missing or ``null``.
    Known fields with unusable values (``"abc"``, a negative balance where the vendor
    has none, NaN, a bool, a list, an amount outside the bound of
    :mod:`preflight.domain.amounts`) make the whole body unusable rather than silently
    half-read. Any known secret (our token) the vendor echoes is replaced in every string
    of the body, ``raw`` included, before anything is read from it.
    """
    raw, data = _decode(raw, http_status, attempts)
    return _read(adapter, [raw], [data], http_status, latency_ms, attempts)


def _read(
    adapter: Adapter,
    raws: list[str],
    documents: list[object],
    http_status: int,
    latency_ms: int,
    attempts: int,
) -> Profile:
    try:
        reading = adapter.read(documents)
    except UnusableResponseError as exc:
        message = scrub(exc.message)
        raise UnusableResponseError(message, status=http_status, attempts=attempts) from None
    return profile_of(
        reading,
        _joined_raw(adapter.paths(), raws),
        http_status=http_status,
        latency_ms=latency_ms,
        attempts=attempts,
    )


def _one_line(text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
    line = scrub(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _error_message(data: object, depth: int = 0) -> str:
    """The human part of a vendor error body: ``message`` / ``error`` / ``detail``, any nesting."""
    if depth > 4:
        return ""
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "msg"):
            found = _error_message(data.get(key), depth + 1)
            if found:
                return found
        return ""
    if isinstance(data, list):
        # FastAPI-style validation bodies carry a list of problems: show all of them.
        parts = (_error_message(item, depth + 1) for item in data[:10])
        return "; ".join(part for part in parts if part)
    return ""


def _retry_after(response: httpx.Response, cap: float) -> float | None:
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


def _describe_transport(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc)
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    kind = "connection failed" if isinstance(exc, httpx.ConnectError) else "connection error"
    detail = _one_line(text, 200)
    return f"{kind} ({detail})" if detail else f"{kind} ({type(exc).__name__})"


def _attempts_text(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


# ---------------------------------------------------------------- client


@dataclass(frozen=True)
class _Failure:
    """A retryable failure of one attempt."""

    description: str  # one line, e.g. "HTTP 500", "timed out"
    cause: BaseException
    status: int | None = None
    retry_after: float | None = None
    unusable: UnusableResponseError | None = None


class _Finish(Protocol):
    """Reads one 2xx body: the profile, or None when more endpoints are still to read."""

    def __call__(self, text: str, status: int, attempt: int, started: float) -> Profile | None: ...


class _DeadlineExceeded(Exception):
    """Internal: the total deadline passed while a body was still arriving."""


class _Deadline:
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


_REQUEST_DEADLINE: Final[ContextVar[_Deadline | None]] = ContextVar(
    "preflight_vendor_request_deadline", default=None
)


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = _REQUEST_DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline.at - time.monotonic()
    if remaining <= 0:
        raise error("deadline exceeded")
    return remaining if timeout is None else min(timeout, remaining)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _time_left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
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
        bounded = _time_left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(
            self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _time_left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound_to_deadline(http: httpx.Client) -> httpx.Client:
    """Make every connection ``http`` opens respect the deadline of the request it serves.

    Installed on the connection pools of the client's transport and of its proxy mounts
    (httpx offers no public way to choose httpcore's network backend). A client without
    such pools (a mock transport) opens no sockets and is left as it is.
    """
    transports = [getattr(http, "_transport", None), *getattr(http, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _BoundedBackend):
            pool._network_backend = _BoundedBackend(backend)  # type: ignore[union-attr]
    return http


class _Inflater:
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
            _unusable(
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
        """The bytes ``data`` inflates to, at most ``_INFLATE_STEP`` at a time."""
        if self._zlib is None:
            if data:
                yield data
            return
        while True:
            try:
                piece = self._zlib.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if self._raw_deflate_fallback:
                    self._raw_deflate_fallback = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                _unusable("body cannot be decoded", status=self._status)
            self._raw_deflate_fallback = False
            if piece:
                yield piece
            data = self._zlib.unconsumed_tail
            # A full step may leave output inside zlib even with no input left: ask again.
            if not data and len(piece) < _INFLATE_STEP:
                return


class VendorClient:
    """The vendor's profile API for one account (one token), on a caller-owned httpx client.

    ``sleep``, ``clock`` (monotonic seconds) and ``jitter`` (in [0, 1)) are injectable so
    tests can run retries and deadlines instantly and deterministically.
    """

    def __init__(
        self,
        http: httpx.Client,
        token: Secret,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        max_body_bytes: int = 1_048_576,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        adapter: Adapter = DEFAULT_ADAPTER,
    ) -> None:
        if not isinstance(token, Secret):
            # A plain str would lose Secret's redaction everywhere downstream.
            raise TypeError("token must be a preflight.secret.Secret")
        if not is_valid_token(token.reveal()):
            # Settings refuse such a token already; a Secret built by hand must not reach
            # a header either (UnicodeEncodeError, or a request cut at a line break).
            raise ConfigError(f"vendor token: {TOKEN_FORMAT}")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self._http = bound_to_deadline(http)
        self._token = token
        self._policy = policy
        self._max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._adapter = adapter

    @property
    def adapter(self) -> Adapter:
        """How this vendor's balance is read and its quota failures recognised."""
        return self._adapter

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._policy

    def __repr__(self) -> str:
        return f"VendorClient(base_url={str(self._http.base_url)!r}, policy={self._policy!r})"

    def get_profile(self) -> Profile:
        """Read the account's balance (the profile, for the default adapter).

        Raises :class:`AuthError` (401, one request), :class:`BillingBlockedError` (402),
        :class:`VendorUnavailableError` (other 4xx at once; 5xx/429/timeouts/connection
        errors after retries) or :class:`UnusableResponseError` (the body stayed unusable).
        An adapter that reads several endpoints reads them in turn, each with its own
        retries; the last one's attempts and status are the reading's.
        """
        paths = self._adapter.paths()
        raws: list[str] = []
        documents: list[object] = []
        # The latency of a reading is that of its successful requests, not of the retries.
        elapsed: list[float] = []
        for index, path in enumerate(paths):
            last = index == len(paths) - 1

            def finish(
                text: str, status: int, attempt: int, started: float, *, last: bool = last
            ) -> Profile | None:
                raw, data = _decode(text, status, attempt)
                elapsed.append(self._clock() - started)
                if not last:
                    raws.append(raw)
                    documents.append(data)
                    return None
                latency_ms = max(round(sum(elapsed) * 1000), 0)
                return _read(
                    self._adapter, [*raws, raw], [*documents, data], status, latency_ms, attempt
                )

            profile = self._call("GET", path, None, finish)
            if profile is not None:
                return profile
        raise AssertionError("an adapter reads at least one path")  # pragma: no cover

    def update_profile(self, fields: Mapping[str, object]) -> Profile:
        """POST ``fields`` as JSON to the profile and return the profile the vendor answers.

        A validation error (4xx other than 401/402) raises :class:`VendorRejectedError`
        at once, with the vendor's message; 5xx/429/transport errors are retried like
        :meth:`get_profile` (the vendor treats this update as idempotent).
        """
        if not self._adapter.supports_update:
            raise UsageError(
                f"profile update: the {self._adapter.name} vendor has no profile to update"
            )
        try:
            body = json.dumps(dict(fields), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"profile update fields are not plain JSON: {exc}") from None
        path = self._adapter.paths()[0]

        def finish(text: str, status: int, attempt: int, started: float) -> Profile:
            latency_ms = max(round((self._clock() - started) * 1000), 0)
            return parse_profile(
                text,
                http_status=status,
                latency_ms=latency_ms,
                attempts=attempt,
                adapter=self._adapter,
            )

        profile = self._call("POST", path, body.encode("utf-8"), finish)
        assert profile is not None
        return profile

    # ------------------------------------------------------------ internals

    def _call(
        self, method: Method, path: str, content: bytes | None, finish: _Finish
    ) -> Profile | None:
        """One request with retries; ``finish`` reads a 2xx body (and may find it unusable,
        which is retried like a 5xx)."""
        policy = self._policy
        deadline_at = self._clock() + policy.deadline
        last: _Failure | None = None
        for attempt in range(1, policy.attempts + 1):
            if last is not None:
                delay = self._delay(attempt - 1, last)
                if self._clock() + delay > deadline_at:
                    why = f"the next retry would pass the deadline of {policy.deadline:g}s"
                    raise self._final_error(attempt - 1, last, why) from last.cause
                _log.info(
                    "vendor_request_retry",
                    method=method,
                    attempt=attempt,
                    status=last.status,
                    error=last.description,
                    delay=round(delay, 3),
                )
                self._sleep(delay)
            remaining = deadline_at - self._clock()
            if remaining <= 0:
                if last is None:
                    raise VendorUnavailableError(
                        f"vendor unavailable: deadline of {policy.deadline:g}s exceeded",
                        attempts=0,
                    )
                why = f"deadline of {policy.deadline:g}s exceeded"
                raise self._final_error(attempt - 1, last, why) from last.cause
            outcome = self._attempt(method, path, content, finish, attempt, deadline_at, remaining)
            if not isinstance(outcome, _Failure):
                return outcome
            last = outcome
        assert last is not None
        raise self._final_error(policy.attempts, last, None) from last.cause

    def _delay(self, retry: int, failure: _Failure) -> float:
        if failure.retry_after is not None:
            return failure.retry_after
        return self._policy.backoff(retry) * self._jitter()

    def _final_error(
        self, attempts: int, failure: _Failure, why: str | None
    ) -> VendorUnavailableError:
        """The error to raise once retrying stops; the caller chains ``failure.cause``."""
        tried = _attempts_text(attempts)
        if failure.unusable is not None:
            suffix = f"after {tried}; {why}" if why else f"after {tried}"
            return UnusableResponseError(
                f"{failure.unusable.message} ({suffix})", status=failure.status, attempts=attempts
            )
        message = f"vendor unavailable after {tried}: {failure.description}"
        if why:
            message += f"; {why}"
        return VendorUnavailableError(message, status=failure.status, attempts=attempts)

    def _timeout(self, remaining: float) -> httpx.Timeout:
        configured = self._http.timeout

        def shrink(value: float | None) -> float:
            return remaining if value is None else min(value, remaining)

        return httpx.Timeout(
            connect=shrink(configured.connect),
            read=shrink(configured.read),
            write=shrink(configured.write),
            pool=shrink(configured.pool),
        )

    def _headers(self, has_body: bool) -> dict[str, str]:
        adapter = self._adapter
        headers = {
            adapter.auth_header: adapter.auth_value(self._token.reveal()),
            "Accept": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _attempt(
        self,
        method: Method,
        path: str,
        content: bytes | None,
        finish: _Finish,
        attempt: int,
        deadline_at: float,
        remaining: float,
    ) -> Profile | _Failure | None:
        timer = metrics.VendorTimer()  # preflight_vendor_requests_total, ..._seconds
        try:
            return self._attempt_timed(
                timer, method, path, content, finish, attempt, deadline_at, remaining
            )
        finally:
            timer.done()

    def _attempt_timed(
        self,
        timer: metrics.VendorTimer,
        method: Method,
        path: str,
        content: bytes | None,
        finish: _Finish,
        attempt: int,
        deadline_at: float,
        remaining: float,
    ) -> Profile | _Failure | None:
        started = self._clock()
        headers_received = False
        deadline = _Deadline(remaining)
        token = _REQUEST_DEADLINE.set(deadline)
        try:
            with self._http.stream(
                method,
                path,
                content=content,
                headers=self._headers(content is not None),
                timeout=self._timeout(remaining),
            ) as response:
                headers_received = True
                status = timer.status = response.status_code
                if 200 <= status < 300:
                    return self._read_profile(response, finish, attempt, started, deadline_at)
                return self._handle_status(method, path, response, attempt, deadline_at)
        except _DeadlineExceeded:
            raise self._deadline_error(attempt, headers_received) from None
        except httpx.UnsupportedProtocol as exc:
            raise VendorUnavailableError(
                f"vendor URL is not usable: {_one_line(str(exc), 200)}", attempts=attempt
            ) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            # Past the deadline, any timeout is the deadline (whichever fired first).
            if deadline.passed():
                raise self._deadline_error(attempt, headers_received) from None
            return _Failure(_describe_transport(exc), exc)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise VendorUnavailableError(
                f"vendor request failed: {_one_line(str(exc), 200) or type(exc).__name__}",
                attempts=attempt,
            ) from exc
        finally:
            _REQUEST_DEADLINE.reset(token)

    def _deadline_error(self, attempt: int, headers_received: bool) -> VendorUnavailableError:
        what = "body still arriving" if headers_received else "no complete response headers"
        return VendorUnavailableError(
            f"vendor unavailable after {_attempts_text(attempt)}: {what}, "
            f"deadline of {self._policy.deadline:g}s exceeded",
            status=None,
            attempts=attempt,
        )

    def _read_profile(
        self,
        response: httpx.Response,
        finish: _Finish,
        attempt: int,
        started: float,
        deadline_at: float,
    ) -> Profile | _Failure | None:
        status = response.status_code
        try:
            body = self._read_body(response, self._max_body_bytes, deadline_at)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                _unusable("body is not UTF-8 text", status=status, attempts=attempt)
            return finish(text, status, attempt, started)
        except UnusableResponseError as exc:
            # Without its traceback: those frames hold the body and its text (up to twice
            # the body cap), which would stay alive through the next attempt's read.
            exc = exc.with_traceback(None)
            return _Failure(exc.message, exc, status=status, unusable=exc)

    def _read_body(self, response: httpx.Response, limit: int, deadline_at: float) -> bytes:
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
                _unusable(
                    f"body of {declared} bytes exceeds the limit of {limit} bytes", status=status
                )
        chunks: Iterable[bytes]
        if response.is_stream_consumed:
            # Built whole in memory (httpx reads a content= body at once, as mocks do):
            # nothing arrives from the network, and httpx has already decoded it.
            chunks, inflater = [response.content], _Inflater("", status)
        else:
            chunks = response.iter_raw()
            inflater = _Inflater(response.headers.get("Content-Encoding", ""), status)
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
                _unusable(f"body exceeds the limit of {limit} bytes", status=status)
            # The read timeout bounds each chunk, not the whole body: a server dripping
            # one byte at a time would otherwise hold us far past the deadline.
            complete = declared is not None and received >= declared
            if not complete and self._clock() > deadline_at:
                raise _DeadlineExceeded
        return bytes(body)

    def _handle_status(
        self, method: Method, path: str, response: httpx.Response, attempt: int, deadline_at: float
    ) -> _Failure:
        status = response.status_code
        cause = httpx.HTTPStatusError(
            f"HTTP {status} from {method} {path}",
            request=response.request,
            response=response,
        )
        if status == 401:
            raise AuthError(
                "vendor answered HTTP 401: the token cannot be authenticated "
                "(not retried; refresh the token)",
                status=status,
                attempts=attempt,
            ) from cause
        if status == 402:
            raise BillingBlockedError(
                "vendor answered HTTP 402: the account is in a billing / top-up state",
                status=status,
                attempts=attempt,
            ) from cause
        if status >= 500 or status in _RETRYABLE_4XX:
            return _Failure(
                f"HTTP {status}",
                cause,
                status=status,
                retry_after=_retry_after(response, self._policy.retry_after_max),
            )
        if method == "POST" and 400 <= status < 500:
            detail = self._error_detail(response, deadline_at)
            message = f"vendor rejected the update (HTTP {status})"
            raise VendorRejectedError(
                f"{message}: {detail}" if detail else message, status=status, attempts=attempt
            ) from cause
        hint = "redirects are not followed" if 300 <= status < 400 else "not retried"
        raise VendorUnavailableError(
            f"vendor answered HTTP {status} to {method} {path} ({hint}; check the vendor URL)",
            status=status,
            attempts=attempt,
        ) from cause

    def _error_detail(self, response: httpx.Response, deadline_at: float) -> str:
        # The rejection matters more than its wording: any trouble reading it gives no detail.
        try:
            body = self._read_body(
                response, min(self._max_body_bytes, _MAX_ERROR_BODY_BYTES), deadline_at
            )
            data = _load_json(body.decode("utf-8", errors="replace"))
        except (VendorError, _DeadlineExceeded, httpx.HTTPError, ValueError, RecursionError):
            return ""
        return _one_line(_error_message(data))
