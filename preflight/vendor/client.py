"""The vendor's profile API: ``VendorClient`` reads ``GET /api/open/v1/profile`` (or the
account's adapter's endpoints) with bounded retries, one total deadline and a capped body;
``update_profile()`` posts to the same path.

Retries (5xx, 429, 408, timeouts, connection errors, unusable bodies) use
exponential backoff with *full jitter*: the n-th retry sleeps
``min(backoff_max, backoff_base * 2**(n-1)) * jitter()``, so that many workers
hitting a struggling vendor at once spread out instead of retrying in lockstep.
A ``Retry-After`` header (seconds or HTTP-date) replaces the backoff, capped at
``retry_after_max``, and is not jittered: the vendor asked for that time.

The deadline, the body cap, the bounded inflate and the reading of httpx errors are the
hardened transport's (:mod:`preflight.transport`).

The token only ever travels in the ``Authorization`` header of each request; it is
never stored in the httpx client, and no message built here can contain it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import httpx

from preflight import metrics
from preflight.adapters import DEFAULT_ADAPTER, Adapter
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
from preflight.secret import TOKEN_FORMAT, Secret, is_valid_token
from preflight.settings import Settings
from preflight.transport import (
    ACCEPT_ENCODING,
    DEFAULT_POLICY,
    REQUEST_DEADLINE,
    Deadline,
    DeadlineExceeded,
    RetryPolicy,
    bound_to_deadline,
    build_client,
    describe,
    one_line,
    read_capped,
    retry_after,
    unusable,
)
from preflight.vendor.profile import (
    Profile,
    decode,
    error_message,
    load_json,
    parse_profile,
    read_documents,
)

__all__ = ["VendorClient", "build_http_client"]

# An error body is only read for its message; no reason to accept a megabyte of it.
_MAX_ERROR_BODY_BYTES: Final = 16_384
# 408: the vendor gave up waiting for our request, which is as transient as a 503.
_RETRYABLE_4XX: Final = frozenset({408, 429})

_log = get_logger("preflight.vendor")

Method = Literal["GET", "POST"]


def build_http_client(settings: Settings, base_url: str) -> httpx.Client:
    """An httpx client for one vendor (:func:`preflight.transport.build_client`).

    The caller owns (and closes) the client; the token is added per request by
    :class:`VendorClient`, so this client can be shared and logged safely.
    """
    return build_client(
        base_url=base_url, connect=settings.connect_timeout, read=settings.read_timeout
    )


def _attempts_text(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


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
                raw, data = decode(text, status, attempt)
                elapsed.append(self._clock() - started)
                if not last:
                    raws.append(raw)
                    documents.append(data)
                    return None
                latency_ms = max(round(sum(elapsed) * 1000), 0)
                return read_documents(
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
            "Accept-Encoding": ACCEPT_ENCODING,
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
        deadline = Deadline(remaining)
        token = REQUEST_DEADLINE.set(deadline)
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
        except DeadlineExceeded:
            raise self._deadline_error(attempt, headers_received) from None
        except httpx.UnsupportedProtocol as exc:
            raise VendorUnavailableError(
                f"vendor URL is not usable: {one_line(str(exc), 200)}", attempts=attempt
            ) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            # Past the deadline, any timeout is the deadline (whichever fired first).
            if deadline.passed():
                raise self._deadline_error(attempt, headers_received) from None
            return _Failure(describe(exc), exc)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise VendorUnavailableError(
                f"vendor request failed: {one_line(str(exc), 200) or type(exc).__name__}",
                attempts=attempt,
            ) from exc
        finally:
            REQUEST_DEADLINE.reset(token)

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
                unusable("body is not UTF-8 text", status=status, attempts=attempt)
            return finish(text, status, attempt, started)
        except UnusableResponseError as exc:
            # Without its traceback: those frames hold the body and its text (up to twice
            # the body cap), which would stay alive through the next attempt's read.
            exc = exc.with_traceback(None)
            return _Failure(exc.message, exc, status=status, unusable=exc)

    def _read_body(self, response: httpx.Response, limit: int, deadline_at: float) -> bytes:
        return read_capped(response, limit, deadline_at, self._clock)

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
                retry_after=retry_after(response, self._policy.retry_after_max),
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
            data = load_json(body.decode("utf-8", errors="replace"))
        except (VendorError, DeadlineExceeded, httpx.HTTPError, ValueError, RecursionError):
            return ""
        return one_line(error_message(data))
