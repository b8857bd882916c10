"""Remote mode: the facade's verbs over a preflight server's HTTP API (``preflight serve``).

With ``PREFLIGHT_SERVER_URL`` and ``PREFLIGHT_SERVER_TOKEN`` (or ``Preflight.remote(...)``),
:class:`preflight.api.Preflight` hands its verbs to a :class:`RemoteClient` instead of the
local services; :class:`AsyncPreflight` is the same client for asyncio code. Each verb has
the name and the parameters of the service verb it stands for (without the runtime) and
returns the same result dataclass, read back through :mod:`preflight.contract`, so that
the CLI prints the same output and exits with the same codes.

As in httpx, the logic is written once, without I/O (:class:`Requests`: each verb as a
:class:`Call`, each answer read back, each problem made an error), and the two clients
differ only in how they send: :class:`RemoteClient` blocks, :class:`AsyncRemoteClient`
awaits.

Errors: a problem+json answer becomes the :class:`PreflightError` subclass of its ``type``
(the contract's table). A server that cannot be reached is a :class:`StorageError`
(exit 3), except for ``check``: there it is the verdict ``unavailable`` (exit 13, or 0
with fail-open), like a vendor that cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Concatenate, Final, Generic, ParamSpec, Self, TypeVar
from urllib.parse import quote

import httpx

from preflight import contract
from preflight.contract import ERROR_OF_TYPE, decode
from preflight.domain.outcome import OutcomeInput, build_outcome
from preflight.domain.verdict import Verdict
from preflight.domain.vocabulary import BatchStatus
from preflight.errors import (
    ConfigError,
    PreflightError,
    StorageError,
    UsageError,
    VendorUnavailableError,
)
from preflight.secret import Secret, scrub
from preflight.services.results import (
    AuditOutcome,
    BatchListing,
    BatchReport,
    CheckResult,
    FailureView,
    FindingView,
    FinishResult,
    GuardResult,
    ImportProgress,
    ImportResult,
    ProfileReading,
    RecordResult,
)
from preflight.settings import Settings, load_settings
from preflight.transport import (
    RetryPolicy,
    build_async_client,
    build_client,
    describe,
    retry_after,
)

__all__ = ["ERROR_OF_TYPE", "AsyncPreflight", "AsyncRemoteClient", "RemoteClient", "connect"]

T = TypeVar("T")
P = ParamSpec("P")

#: One JSON Lines upload chunk: lines are batched so the body is not thousands of tiny chunks.
_CHUNK_BYTES: Final = 64 * 1024
#: An audit runs every account, each with a vendor call and its retries.
_AUDIT_TIMEOUT_FACTOR: Final = 5
#: Answers to a read worth another try: the server (or a proxy before it) is busy.
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: Of the errors such an answer may name, those that may pass.
_PASSING: Final = (VendorUnavailableError, StorageError)

Lines = Iterable[str | bytes]


def connect(
    settings: Settings, server_url: str | None = None, server_token: str | Secret | None = None
) -> RemoteClient | None:
    """The remote client the settings (or the arguments) ask for; None: run locally."""
    url = server_url or settings.server_url
    if url is None:
        return None
    return RemoteClient(url, _token(settings, server_token), settings)


def _token(settings: Settings, token: str | Secret | None) -> Secret:
    token = token if token is not None else settings.server_token
    if token is None:
        raise ConfigError(
            "PREFLIGHT_SERVER_URL is set but no token: set PREFLIGHT_SERVER_TOKEN or "
            "PREFLIGHT_SERVER_TOKEN_FILE"
        )
    return token if isinstance(token, Secret) else Secret(token)


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else _json_default(value)


def _outcome_fields(outcome: OutcomeInput | Mapping[str, object]) -> dict[str, object]:
    if not isinstance(outcome, OutcomeInput):
        return dict(outcome)
    return {
        "job_id": outcome.job_id,
        "status": outcome.status.value,
        "attempt": outcome.attempt,
        "cost": outcome.cost,
        "expected_cost": outcome.expected_cost,
        "http_status": outcome.http_status,
        "error": outcome.error,
        "quota_failure": outcome.marked_quota,
        "at": outcome.at,
    }


def _batch_path(batch_id: str, verb: str = "") -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}{verb}"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One verb as an HTTP request, and how to read its answer: no I/O."""

    method: str
    path: str
    read: Callable[[Any], T]
    body: Any = None
    params: Mapping[str, object | None] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None
    #: The answer when the server cannot be reached (None: the StorageError is raised).
    unreachable: Callable[[StorageError], T] | None = None
    #: A JSON Lines body, streamed (record_many): the lines and who hears the progress.
    lines: Any = None
    progress: Callable[[ImportProgress], None] | None = None

    def query(self) -> dict[str, str]:
        return {k: _query_value(v) for k, v in self.params.items() if v is not None}

    def headers(self) -> dict[str, str]:
        if self.lines is not None:
            return {"Content-Type": "application/x-ndjson"}
        return {"Content-Type": "application/json"} if self.body is not None else {}

    def content(self) -> bytes | None:
        if self.body is None:
            return None
        return json.dumps(self.body, default=_json_default, ensure_ascii=False).encode("utf-8")


class _Chunker:
    """JSON Lines into upload chunks of about :data:`_CHUNK_BYTES`, counting the lines."""

    def __init__(self, progress: Callable[[ImportProgress], None] | None) -> None:
        self.pending = bytearray()
        self.sent = 0
        self.progress = progress

    def add(self, line: str | bytes) -> bytes | None:
        raw = line.encode("utf-8") if isinstance(line, str) else line
        self.pending += raw
        if not raw.endswith(b"\n"):
            self.pending += b"\n"
        self.sent += 1
        if len(self.pending) < _CHUNK_BYTES:
            return None
        chunk = bytes(self.pending)
        self.pending.clear()
        return chunk

    def sent_chunk(self) -> None:
        """After a full chunk went out: the lines sent so far (the server's counts come
        with the result)."""
        if self.progress is not None:
            self.progress(ImportProgress(self.sent, 0, 0))

    def rest(self) -> bytes | None:
        return bytes(self.pending) if self.pending else None


class Requests:
    """The I/O-free core both clients share: the verbs as :class:`Call` values, the
    answers read back through the contract, the problems made errors."""

    def __init__(
        self, base_url: str, settings: Settings, *, jitter: Callable[[], float] = random.random
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.policy = RetryPolicy.from_settings(settings)
        self._jitter = jitter
        self.connect = settings.connect_timeout
        # The server may itself wait for the vendor up to its deadline before answering.
        self.read = settings.deadline + settings.read_timeout
        self.write = settings.read_timeout
        self.timeout = httpx.Timeout(
            connect=self.connect, read=self.read, write=self.write, pool=self.connect
        )

    def headers(self, token: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.reveal()}", "Accept": "application/json"}

    # ------------------------------------------------------------ answers and errors

    def answer(self, call: Call[T], status: int, body: bytes) -> T:
        """The verb's result from the server's answer, or the error it stands for."""
        if status >= 400:
            raise self.error(status, body)
        try:
            data = json.loads(body)
        except ValueError:
            raise StorageError(
                f"preflight server {self.base_url} answered HTTP {status} "
                "with a body that is not JSON"
            ) from None
        try:
            return call.read(data)
        except KeyError as exc:
            # A server older than this client: its answer lacks a key added since.
            raise StorageError(
                f"preflight server {self.base_url} answered without {exc.args[0]!r}, which"
                " this client reads: is the server older than the client? (upgrade it)"
            ) from None
        except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise StorageError(
                f"preflight server {self.base_url} answered HTTP {status} with a body this"
                f" client cannot read: {exc}"
            ) from None

    @staticmethod
    def _problem(body: bytes) -> dict[str, Any]:
        """The problem object of an error answer (empty when its body is not one)."""
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def error(self, status: int, body: bytes) -> PreflightError:
        data = self._problem(body)
        detail = data.get("detail")
        kind = data.get("type")
        message = scrub(str(detail)) if detail else f"HTTP {status}"
        if status == 401:
            return ConfigError(
                f"preflight server refused the token ({message}): check PREFLIGHT_SERVER_TOKEN"
            )
        if status == 403:
            return ConfigError(f"preflight server: {message}")
        cls = ERROR_OF_TYPE.get(kind) if isinstance(kind, str) else None
        if cls is not None:
            return cls(message)
        if status >= 500:
            if status == 500:
                return PreflightError(f"preflight server internal error: {message}")
            return StorageError(f"preflight server {self.base_url} unavailable: {message}")
        return UsageError(f"preflight server: {message}")

    def unreachable(self, exc: httpx.HTTPError) -> StorageError:
        return StorageError(f"preflight server {self.base_url} unreachable: {describe(exc)}")

    def retry_delay(
        self, call: Call[Any], attempt: int, answer: httpx.Response | None
    ) -> float | None:
        """How long to wait before trying ``call`` again after ``attempt`` (its answer, or
        None when the server could not be reached); None: not again. Only reads are
        retried (a write may have been done before its answer was lost), as the settings'
        retry policy says: backoff with full jitter, or the server's ``Retry-After``."""
        if call.method != "GET" or attempt >= self.policy.attempts:
            return None
        if answer is not None:
            if answer.status_code not in _RETRY_STATUSES:
                return None
            # The server's own word that the vendor refused (a 401, a blocked account):
            # another try asks the vendor again for the same answer.
            refused = ERROR_OF_TYPE.get(str(self._problem(answer.content).get("type")))
            if refused is not None and not issubclass(refused, _PASSING):
                return None
            asked = retry_after(answer, self.policy.retry_after_max)
            if asked is not None:
                return asked
        return self.policy.backoff(attempt) * self._jitter()

    # ------------------------------------------------------------ verbs

    def check(
        self,
        batch_id: str,
        *,
        need: Decimal | str | int | None = None,
        meter: str | None = None,
        reserve: Decimal | str | int | None = None,
        fail_open: bool | None = None,
        account: str | None = None,
        labels: Mapping[str, str] | None = None,
        jobs: int | None = None,
        estimate_from: str | None = None,
        estimate: str | None = None,
        min_history: int | None = None,
    ) -> Call[CheckResult]:
        """Snapshot the balance on the server and answer go / no-go."""
        body = {
            "need": None if need is None else str(need),
            "meter": meter,
            "reserve": None if reserve is None else str(reserve),
            "fail_open": fail_open,
            "account": account,
            "labels": dict(labels) if labels else None,
            "jobs": jobs,
            "estimate_from": estimate_from,
            "estimate": estimate,
            "min_history": min_history,
        }

        def unavailable(exc: StorageError) -> CheckResult:
            # The server is the check's source of truth here: unreachable means unavailable.
            opened = self.settings.fail_open if fail_open is None else fail_open
            return CheckResult(
                batch_id=batch_id,
                account=account or self.settings.account,
                verdict=Verdict.UNAVAILABLE,
                reason=str(exc),
                meter=None,
                balance=None,
                need=None if need is None else Decimal(str(need)),
                reserve=Decimal(str(reserve)) if reserve is not None else self.settings.reserve,
                outstanding_other=None,
                snapshot_id=None,
                snapshot_kind=None,
                checked_at=datetime.now().astimezone(),
                status=(BatchStatus.OPEN if opened else BatchStatus.BLOCKED).value,
                verified=False,
                fail_open=opened,
                labels=dict(labels or {}),
            )

        return Call(
            "POST",
            _batch_path(batch_id, "/check"),
            lambda data: decode(contract.CHECK, data),
            body={k: v for k, v in body.items() if v is not None},
            unreachable=unavailable,
        )

    def record(
        self,
        batch_id: str,
        outcome: OutcomeInput | Mapping[str, object],
        *,
        snapshot: bool = True,
        account: str | None = None,
    ) -> Call[RecordResult]:
        """Record one outcome (idempotent on batch, job, attempt)."""
        item = outcome if isinstance(outcome, OutcomeInput) else build_outcome(outcome)
        return Call(
            "POST",
            _batch_path(batch_id, "/outcomes"),
            lambda data: decode(contract.RECORD, data, outcome=item),
            body={k: v for k, v in _outcome_fields(outcome).items() if v is not None},
            params={"snapshot": snapshot, "account": account},
        )

    def record_many(
        self,
        batch_id: str,
        lines: Any,
        *,
        account: str | None = None,
        chunk_size: int | None = None,
        progress: Callable[[ImportProgress], None] | None = None,
    ) -> Call[ImportResult]:
        """Outcomes as JSON Lines, streamed (``chunk_size`` is the server's own)."""
        return Call(
            "POST",
            _batch_path(batch_id, "/outcomes"),
            lambda data: decode(contract.IMPORT, data),
            params={"account": account},
            lines=lines,
            progress=progress,
        )

    def guard(
        self,
        batch_id: str,
        *,
        next_cost: Decimal | str | int | None = None,
        max_age: timedelta | None = None,
    ) -> Call[GuardResult]:
        """Between two dispatches: continue, at_risk or stop, answered by the server."""
        body: dict[str, object] = {}
        if next_cost is not None:
            body["next_cost"] = str(next_cost)
        if max_age is not None:
            # Whole seconds, as the API takes a duration: a fraction is dropped (the
            # stricter age: a recheck a little sooner, never a staler snapshot).
            body["max_age"] = f"{int(max_age.total_seconds())}s"
        return Call(
            "POST",
            _batch_path(batch_id, "/guard"),
            lambda data: decode(contract.GUARD, data),
            body=body,
        )

    def finish(self, batch_id: str, *, snapshot: bool = True) -> Call[FinishResult]:
        """Take a finish snapshot and report the foreign consumption."""
        return Call(
            "POST",
            _batch_path(batch_id, "/finish"),
            lambda data: decode(contract.FINISH, data),
            params={"snapshot": snapshot},
        )

    def classify(
        self, batch_id: str | None = None, *, only_inconclusive: bool = False
    ) -> Call[dict[str, int]]:
        """Rerun the classifier over stored quota failures (one batch, or all)."""
        body: dict[str, object] = {"only_inconclusive": only_inconclusive}
        if batch_id is not None:
            body["batch_id"] = batch_id
        return Call("POST", "/v1/classify", lambda data: dict(data["tags"]), body=body)

    def show(self, batch_id: str) -> Call[BatchReport]:
        """One batch: snapshots, outcome totals, tagged quota failures."""
        return Call("GET", _batch_path(batch_id), lambda data: decode(contract.REPORT, data))

    def failures(
        self, *, since: datetime | None = None, tag: str | None = None, account: str | None = None
    ) -> Call[list[FailureView]]:
        """Quota failures across batches, oldest first."""
        return Call(
            "GET",
            "/v1/failures",
            lambda data: [decode(contract.FAILURE, item) for item in data],
            params={"since": since, "tag": tag, "account": account},
        )

    def batches(
        self,
        *,
        since: datetime | None = None,
        status: str | None = None,
        account: str | None = None,
    ) -> Call[list[BatchListing]]:
        """Recent batches, newest first."""
        return Call(
            "GET",
            "/v1/batches",
            lambda data: [decode(contract.LISTING, item) for item in data],
            params={"since": since, "status": status, "account": account},
        )

    def findings(
        self, *, since: datetime | None = None, kind: str | None = None, account: str | None = None
    ) -> Call[list[FindingView]]:
        """Stored audit findings, oldest first."""
        return Call(
            "GET",
            "/v1/findings",
            lambda data: [decode(contract.FINDING, item) for item in data],
            params={"since": since, "kind": kind, "account": account},
        )

    def run_audit(
        self,
        *,
        account: str | None = None,
        force: bool = False,
        replica: str | None = None,
        stop: threading.Event | None = None,
        log_findings: bool = True,
    ) -> Call[list[AuditOutcome]]:
        """One audit run on the server (``replica``, ``stop`` and logging are the server's)."""
        body: dict[str, object] = {"force": force}
        if account is not None:
            body["account"] = account
        read = self.timeout.read
        return Call(
            "POST",
            "/v1/audit",
            lambda data: [decode(contract.AUDIT, item) for item in data],
            body=body,
            timeout=httpx.Timeout(
                read * _AUDIT_TIMEOUT_FACTOR if read else None, connect=self.timeout.connect
            ),
        )

    def read_profile(self, account: str | None = None) -> Call[ProfileReading]:
        """Read the vendor profile on the server (kept there as a manual snapshot)."""
        name = account or self.settings.account
        return Call(
            "GET",
            f"/v1/accounts/{quote(name, safe='')}/profile",
            lambda data: decode(contract.PROFILE, data),
        )

    def update_profile(self, /, webhook_url: str, **_options: object) -> Call[Any]:
        raise UsageError(
            "a profile update is not served by the preflight server: "
            "unset PREFLIGHT_SERVER_URL to run it with the vendor token locally"
        )


# ---------------------------------------------------------------- the two kinds of I/O


def _blocking(
    verb: Callable[Concatenate[Requests, P], Call[T]],
) -> Callable[Concatenate[RemoteClient, P], T]:
    def method(self: RemoteClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.send(verb(self.requests, *args, **kwargs))

    method.__name__, method.__doc__ = verb.__name__, verb.__doc__
    return method


def _awaiting(
    verb: Callable[Concatenate[Requests, P], Call[T]],
) -> Callable[Concatenate[AsyncRemoteClient, P], Awaitable[T]]:
    async def method(self: AsyncRemoteClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.send(verb(self.requests, *args, **kwargs))

    method.__name__, method.__doc__ = verb.__name__, verb.__doc__
    return method


class RemoteClient:
    """The verbs over HTTP, blocking, on one pooled httpx client with explicit timeouts."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requests = Requests(base_url, settings)
        self.base_url = self.requests.base_url
        self._http = build_client(
            base_url=self.base_url,
            connect=self.requests.connect,
            read=self.requests.read,
            write=self.requests.write,
            headers=self.requests.headers(token),
            transport=transport,
        )
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RemoteClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            content: bytes | Iterator[bytes] | None = call.content()
            if call.lines is not None:
                content = self._stream(call.lines, _Chunker(call.progress))
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    content=content,
                    params=call.query(),
                    headers=call.headers(),
                    timeout=call.timeout or self.requests.timeout,
                )
            except httpx.HTTPError as exc:
                delay = self.requests.retry_delay(call, attempt, None)
                if delay is not None:
                    self._sleep(delay)
                    continue
                error = self.requests.unreachable(exc)
                if call.unreachable is None:
                    raise error from exc
                return call.unreachable(error)
            delay = self.requests.retry_delay(call, attempt, response)
            if delay is None:
                return self.requests.answer(call, response.status_code, response.content)
            self._sleep(delay)

    @staticmethod
    def _stream(lines: Lines, chunker: _Chunker) -> Iterator[bytes]:
        for line in lines:
            chunk = chunker.add(line)
            if chunk is not None:
                yield chunk
                chunker.sent_chunk()
        rest = chunker.rest()
        if rest is not None:
            yield rest

    check = _blocking(Requests.check)
    guard = _blocking(Requests.guard)
    record = _blocking(Requests.record)
    finish = _blocking(Requests.finish)
    classify = _blocking(Requests.classify)
    show = _blocking(Requests.show)
    failures = _blocking(Requests.failures)
    batches = _blocking(Requests.batches)
    findings = _blocking(Requests.findings)
    run_audit = _blocking(Requests.run_audit)
    read_profile = _blocking(Requests.read_profile)
    update_profile = _blocking(Requests.update_profile)

    def record_many(
        self,
        batch_id: str,
        lines: Lines,
        *,
        account: str | None = None,
        chunk_size: int | None = None,
        progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportResult:
        """Stream ``lines`` as application/x-ndjson: never held whole in memory.

        ``progress`` hears the lines sent so far, after each chunk (what the server has
        recorded of them is in the result; ``chunk_size`` is the server's own).
        """
        return self.send(
            self.requests.record_many(
                batch_id, lines, account=account, chunk_size=chunk_size, progress=progress
            )
        )


class AsyncRemoteClient:
    """The verbs over HTTP, awaited, on one pooled ``httpx.AsyncClient``: the same calls,
    answers and errors as :class:`RemoteClient`."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.requests = Requests(base_url, settings)
        self.base_url = self.requests.base_url
        self._http = build_async_client(
            base_url=self.base_url,
            connect=self.requests.connect,
            read=self.requests.read,
            write=self.requests.write,
            headers=self.requests.headers(token),
            transport=transport,
        )
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            content: bytes | AsyncIterator[bytes] | None = call.content()
            if call.lines is not None:
                content = self._stream(call.lines, _Chunker(call.progress))
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    content=content,
                    params=call.query(),
                    headers=call.headers(),
                    timeout=call.timeout or self.requests.timeout,
                )
            except httpx.HTTPError as exc:
                delay = self.requests.retry_delay(call, attempt, None)
                if delay is not None:
                    await self._sleep(delay)
                    continue
                error = self.requests.unreachable(exc)
                if call.unreachable is None:
                    raise error from exc
                return call.unreachable(error)
            delay = self.requests.retry_delay(call, attempt, response)
            if delay is None:
                return self.requests.answer(call, response.status_code, response.content)
            await self._sleep(delay)

    @staticmethod
    async def _stream(
        lines: AsyncIterable[str | bytes] | Lines, chunker: _Chunker
    ) -> AsyncIterator[bytes]:
        async for line in _each(lines):
            chunk = chunker.add(line)
            if chunk is not None:
                yield chunk
                chunker.sent_chunk()
        rest = chunker.rest()
        if rest is not None:
            yield rest

    check = _awaiting(Requests.check)
    guard = _awaiting(Requests.guard)
    record = _awaiting(Requests.record)
    finish = _awaiting(Requests.finish)
    classify = _awaiting(Requests.classify)
    show = _awaiting(Requests.show)
    failures = _awaiting(Requests.failures)
    batches = _awaiting(Requests.batches)
    findings = _awaiting(Requests.findings)
    run_audit = _awaiting(Requests.run_audit)
    read_profile = _awaiting(Requests.read_profile)

    async def record_many(
        self,
        batch_id: str,
        lines: AsyncIterable[str | bytes] | Lines,
        *,
        account: str | None = None,
        chunk_size: int | None = None,
        progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportResult:
        """Stream ``lines`` (an async iterable, or a plain one) as application/x-ndjson,
        chunk by chunk as they come: never held whole in memory."""
        return await self.send(
            self.requests.record_many(
                batch_id, lines, account=account, chunk_size=chunk_size, progress=progress
            )
        )


async def _each(lines: AsyncIterable[str | bytes] | Lines) -> AsyncIterator[str | bytes]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


class AsyncPreflight(AsyncRemoteClient):
    """The facade's verbs for asyncio code, on a preflight server (``preflight serve``)::

        async with AsyncPreflight.remote(url, token) as pf:
            result = await pf.check("nightly", need="500")

    Every verb is awaited and returns what ``Preflight.remote(...)`` returns, raising the
    same errors; ``record_many`` streams an async iterable of JSON Lines. (Local mode's
    services are synchronous: an async caller reaches them through a server.)
    """

    @classmethod
    def remote(
        cls,
        server_url: str,
        server_token: str | Secret,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> AsyncPreflight:
        """The async facade of the server at ``server_url``, with an API token."""
        settings = settings or load_settings()
        token = _token(settings, server_token)
        return cls(server_url, token, settings, transport=transport, sleep=sleep)

    audit = AsyncRemoteClient.run_audit
    profile = AsyncRemoteClient.read_profile
