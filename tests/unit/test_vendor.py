"""The vendor profile client against a fake vendor (httpx.MockTransport), instantly.

Time is faked: ``FakeClock.sleep`` records each sleep and advances ``FakeClock.now``,
so retries, backoff and deadlines are asserted exactly without waiting. One test
talks to a real loopback server to prove the drip cut-off works on real sockets.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest
from structlog.testing import capture_logs

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
from preflight.secret import Secret
from preflight.settings import Settings
from preflight.vendor import (
    PROFILE_PATH,
    Profile,
    RetryPolicy,
    VendorClient,
    build_http_client,
    parse_profile,
)

TOKEN = "sk-test-0123456789abcdef-very-secret"
BASE_URL = "https://vendor.test"
SAMPLE = '{"user_id": "user_123", "api_quota_remaining": 988000, "tier": "pro", "credits": 1200}'

Step = Callable[[httpx.Request], httpx.Response]


# ---------------------------------------------------------------- fakes


class FakeClock:
    """Monotonic time that only moves when told to (or when someone sleeps)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeVendor:
    """Answers with planned steps in order (the last one repeats) and records what it saw."""

    def __init__(self, *steps: Step) -> None:
        assert steps
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.authorization: list[str | None] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.authorization.append(request.headers.get("Authorization"))
        self.bodies.append(request.read())
        step = self.steps[min(len(self.requests) - 1, len(self.steps) - 1)]
        return step(request)

    @property
    def count(self) -> int:
        return len(self.requests)


def ok(body: str | bytes = SAMPLE, status: int = 200, **headers: str) -> Step:
    return lambda request: httpx.Response(status, content=body, headers=headers)


def status(code: int, body: str | bytes = "", **headers: str) -> Step:
    return lambda request: httpx.Response(code, content=body, headers=headers)


def raises(exc_type: type[httpx.TransportError], message: str = "boom") -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return step


def stream(body: httpx.SyncByteStream, headers: dict[str, str] | None = None) -> Step:
    return lambda request: httpx.Response(200, stream=body, headers=headers)


class ChunkStream(httpx.SyncByteStream):
    """A body of ``count`` chunks; counts how many were actually pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield self.chunk


class DripStream(httpx.SyncByteStream):
    """One byte per iteration, each taking ``step`` seconds of fake time: a slow-loris body."""

    def __init__(self, clock: FakeClock, body: bytes, step: float) -> None:
        self.clock = clock
        self.body = body
        self.step = step
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for index in range(len(self.body)):
            self.clock.now += self.step
            self.pulled += 1
            yield self.body[index : index + 1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., tuple[VendorClient, FakeVendor]]]:
    opened: list[httpx.Client] = []

    def make(
        *steps: Step,
        policy: RetryPolicy | None = None,
        max_body_bytes: int = 1_048_576,
        jitter: float = 1.0,
        timeout: httpx.Timeout | None = None,
    ) -> tuple[VendorClient, FakeVendor]:
        vendor = FakeVendor(*steps)
        http = httpx.Client(
            base_url=BASE_URL,
            transport=httpx.MockTransport(vendor),
            timeout=timeout or httpx.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0),
            follow_redirects=False,
        )
        opened.append(http)
        client = VendorClient(
            http,
            Secret(TOKEN),
            policy=policy or RetryPolicy(),
            max_body_bytes=max_body_bytes,
            sleep=clock.sleep,
            clock=clock,
            jitter=lambda: jitter,
        )
        return client, vendor

    yield make
    for opened_client in opened:
        opened_client.close()


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("body", "credits", "quota", "user_id", "tier"),
    [
        pytest.param(SAMPLE, Decimal(1200), Decimal(988000), "user_123", "pro", id="numbers"),
        pytest.param('{"credits": "12.50"}', Decimal("12.50"), None, None, None, id="string"),
        pytest.param('{"credits": " 7 "}', Decimal(7), None, None, None, id="padded-string"),
        pytest.param('{"credits": 0.1}', Decimal("0.1"), None, None, None, id="exact-decimal"),
        pytest.param('{"credits": 1e3}', Decimal("1E+3"), None, None, None, id="exponent"),
        pytest.param(
            '{"api_quota_remaining": 5, "tier": "free"}',
            None,
            Decimal(5),
            None,
            "free",
            id="credits-missing",
        ),
        pytest.param(
            '{"credits": null, "api_quota_remaining": null}',
            None,
            None,
            None,
            None,
            id="both-null",
        ),
        pytest.param('{"user_id": 123, "credits": 0}', Decimal(0), None, "123", None, id="int-id"),
        pytest.param('{"user_id": null, "tier": null}', None, None, None, None, id="null-labels"),
        pytest.param("{}", None, None, None, None, id="empty-object"),
        pytest.param('\ufeff{"credits": 3}', Decimal(3), None, None, None, id="bom"),
        pytest.param('{"credits": "-0"}', Decimal(0), None, None, None, id="minus-zero"),
        pytest.param(
            '{"credits": "' + "9" * 40 + "." + "9" * 20 + '"}',
            Decimal("9" * 40 + "." + "9" * 20),
            None,
            None,
            None,
            id="largest-amount",
        ),
    ],
)
def test_parse_tolerates_vendor_variations(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    body: str,
    credits: Decimal | None,
    quota: Decimal | None,
    user_id: str | None,
    tier: str | None,
) -> None:
    client, vendor = make_client(ok(body))

    profile = client.get_profile()

    assert (profile.credits, profile.api_quota_remaining) == (credits, quota)
    assert (profile.user_id, profile.tier) == (user_id, tier)
    for value in (profile.credits, profile.api_quota_remaining):
        assert value is None or type(value) is Decimal
    if credits is not None:
        assert str(profile.credits) == str(credits)  # exact digits, not a float round-trip
    assert profile.raw == body
    assert (profile.http_status, profile.attempts) == (200, 1)
    assert vendor.count == 1


def test_unknown_fields_are_kept_in_raw_exactly(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    body = (
        '{"user_id": "u1",  "credits": 1.10,\n "plan": {"name": "pro", "limits": [1, 2.50]},'
        ' "nested": {"deep": {"x": null}}}'
    )
    client, _ = make_client(ok(body))

    profile = client.get_profile()

    assert profile.raw == body
    assert profile.credits == Decimal("1.10")
    assert str(profile.credits) == "1.10"
    assert json.loads(profile.raw)["plan"] == {"name": "pro", "limits": [1, 2.5]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param("<html><body>Bad gateway</body></html>", "not valid JSON", id="html"),
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param('{"credits": 1', "not valid JSON", id="truncated"),
        pytest.param("[1, 2]", "array", id="array"),
        pytest.param('"credits"', "scalar", id="string-body"),
        pytest.param('{"credits": "abc"}', "credits", id="meter-abc"),
        pytest.param('{"credits": ""}', "credits", id="meter-empty-string"),
        pytest.param('{"credits": -1}', "credits", id="meter-negative"),
        pytest.param('{"api_quota_remaining": "-0.5"}', "api_quota_remaining", id="neg-string"),
        pytest.param('{"credits": NaN}', "not valid JSON", id="nan"),
        pytest.param('{"credits": Infinity}', "not valid JSON", id="infinity"),
        pytest.param('{"credits": "NaN"}', "credits", id="nan-string"),
        pytest.param('{"credits": "Infinity"}', "credits", id="infinity-string"),
        pytest.param('{"credits": true}', "credits", id="meter-bool"),
        pytest.param('{"credits": [1]}', "credits", id="meter-list"),
        pytest.param('{"credits": {"amount": 1}}', "credits", id="meter-object"),
        pytest.param('{"user_id": true}', "user_id", id="user-id-bool"),
        pytest.param('{"user_id": ["u"]}', "user_id", id="user-id-list"),
        pytest.param('{"tier": 3}', "tier", id="tier-number"),
        pytest.param(b'{"tier": "\xff"}', "UTF-8", id="not-utf8"),
        # Issue 10: absurd numbers, deep nesting and unstorable labels.
        pytest.param('{"credits": 1e999999999}', "credits: more than 40 digits", id="exp"),
        pytest.param('{"credits": "1e999999999"}', "credits: more than 40", id="exp-string"),
        pytest.param('{"credits": "1e999999999999"}', "credits: more than 40", id="exp-12"),
        pytest.param('{"credits": 1' + "0" * 400 + "}", "number longer than 100", id="10^400"),
        pytest.param('{"credits": 1' + "0" * 40 + "}", "credits: more than 40", id="10^40"),
        pytest.param('{"credits": 1e-21}', "more than 20 digits after", id="tiny"),
        pytest.param('{"x": ' + "9" * 5000 + "}", "number longer than", id="unknown-huge-int"),
        pytest.param('{"credits": -Infinity}', "not valid JSON", id="minus-infinity"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON", id="deep-array"),
        pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, "not valid JSON", id="deep-object"),
        pytest.param('{"user_id": "\\ud800"}', "user_id contains", id="lone-surrogate"),
        pytest.param('{"tier": "a\\u0000b"}', "tier contains NUL", id="nul"),
        pytest.param('{"tier": "' + "t" * 101 + '"}', "tier is longer than 100", id="long-tier"),
        pytest.param('{"user_id": "' + "u" * 201 + '"}', "user_id is longer", id="long-user"),
    ],
)
def test_unusable_bodies_are_retried_then_raised(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    clock: FakeClock,
    body: str | bytes,
    detail: str,
) -> None:
    client, vendor = make_client(ok(body))

    with pytest.raises(UnusableResponseError) as info:
        client.get_profile()

    assert vendor.count == 3
    assert len(clock.sleeps) == 2
    assert str(info.value).startswith("unusable response: ")
    assert detail in str(info.value)
    assert "after 3 attempts" in str(info.value)
    assert info.value.attempts == 3
    assert info.value.status == 200
    assert isinstance(info.value.__cause__, UnusableResponseError)
    assert "\n" not in str(info.value)


def test_unusable_body_then_good_body_succeeds(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    client, vendor = make_client(ok("<html>oops</html>"), ok(SAMPLE))

    profile = client.get_profile()

    assert profile.attempts == 2
    assert vendor.count == 2


def test_parse_profile_is_usable_on_its_own() -> None:
    profile = parse_profile('{"credits": "5"}', http_status=200, latency_ms=7, attempts=2)

    assert profile == Profile(
        raw='{"credits": "5"}',
        user_id=None,
        tier=None,
        credits=Decimal(5),
        api_quota_remaining=None,
        http_status=200,
        latency_ms=7,
        attempts=2,
    )
    with pytest.raises(UnusableResponseError, match=r"^unusable response: body is an array"):
        parse_profile("[]")


def test_profile_meter_by_name() -> None:
    profile = parse_profile('{"credits": 1, "api_quota_remaining": "2"}')

    assert profile.meter("credits") == Decimal(1)
    assert profile.meter("api_quota_remaining") == Decimal(2)
    with pytest.raises(ValueError, match="unknown meter"):
        profile.meter("balance")


# ---------------------------------------------------------------- status handling


@pytest.mark.parametrize(
    ("code", "error", "fragment"),
    [
        pytest.param(401, AuthError, "HTTP 401", id="401-auth"),
        pytest.param(402, BillingBlockedError, "HTTP 402", id="402-billing"),
        pytest.param(404, VendorUnavailableError, "vendor answered HTTP 404", id="404"),
        pytest.param(400, VendorUnavailableError, "vendor answered HTTP 400", id="400"),
        pytest.param(403, VendorUnavailableError, "vendor answered HTTP 403", id="403"),
        pytest.param(302, VendorUnavailableError, "redirects are not followed", id="302"),
    ],
)
def test_non_retryable_statuses_make_exactly_one_request(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    clock: FakeClock,
    code: int,
    error: type[VendorError],
    fragment: str,
) -> None:
    client, vendor = make_client(status(code, '{"error": "nope"}'), ok())

    with pytest.raises(error) as info:
        client.get_profile()

    assert type(info.value) is error
    assert vendor.count == 1
    assert clock.sleeps == []
    assert fragment in str(info.value)
    assert (info.value.status, info.value.attempts) == (code, 1)
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)


def test_500_500_200_succeeds_after_three_requests_and_two_sleeps(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    client, vendor = make_client(status(500), status(500), ok())

    profile = client.get_profile()

    assert vendor.count == 3
    assert clock.sleeps == [0.5, 1.0]
    assert profile.attempts == 3
    assert profile.credits == Decimal(1200)


@pytest.mark.parametrize(
    ("jitter", "policy", "sleeps"),
    [
        pytest.param(1.0, RetryPolicy(attempts=5, deadline=100), [0.5, 1.0, 2.0, 4.0], id="max"),
        pytest.param(0.5, RetryPolicy(attempts=4, deadline=100), [0.25, 0.5, 1.0], id="half"),
        pytest.param(0.0, RetryPolicy(attempts=3), [0.0, 0.0], id="zero"),
        pytest.param(
            1.0,
            RetryPolicy(attempts=6, deadline=100, backoff_base=1.0, backoff_max=3.0),
            [1.0, 2.0, 3.0, 3.0, 3.0],
            id="capped",
        ),
    ],
)
def test_backoff_is_exponential_capped_with_full_jitter(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    clock: FakeClock,
    jitter: float,
    policy: RetryPolicy,
    sleeps: list[float],
) -> None:
    client, vendor = make_client(status(503), policy=policy, jitter=jitter)

    with pytest.raises(VendorUnavailableError):
        client.get_profile()

    assert clock.sleeps == sleeps
    assert vendor.count == policy.attempts


@pytest.mark.parametrize("code", [500, 502, 503, 504, 429, 408])
def test_retryable_status_forever_stops_after_the_configured_attempts(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock, code: int
) -> None:
    client, vendor = make_client(status(code, "<html>down</html>"))

    with pytest.raises(VendorUnavailableError) as info:
        client.get_profile()

    assert type(info.value) is VendorUnavailableError
    assert vendor.count == 3
    assert len(clock.sleeps) == 2
    assert str(info.value) == f"vendor unavailable after 3 attempts: HTTP {code}"
    assert (info.value.attempts, info.value.status) == (3, code)
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)


def test_a_single_attempt_policy_never_sleeps(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    client, vendor = make_client(status(500), policy=RetryPolicy(attempts=1))

    with pytest.raises(VendorUnavailableError, match="after 1 attempt: HTTP 500"):
        client.get_profile()

    assert (vendor.count, clock.sleeps) == (1, [])


# ---------------------------------------------------------------- Retry-After


def _http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


_NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "2"}, 2.0, id="seconds"),
        pytest.param({"Retry-After": " 7 "}, 7.0, id="padded"),
        pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
        pytest.param({"Retry-After": "3600"}, 10.0, id="capped"),
        pytest.param(
            {"Retry-After": _http_date(_NOW + timedelta(seconds=4)), "Date": _http_date(_NOW)},
            4.0,
            id="http-date",
        ),
        pytest.param(
            {"Retry-After": _http_date(_NOW + timedelta(hours=1)), "Date": _http_date(_NOW)},
            10.0,
            id="http-date-capped",
        ),
        pytest.param(
            {"Retry-After": _http_date(_NOW - timedelta(seconds=30)), "Date": _http_date(_NOW)},
            0.0,
            id="http-date-past",
        ),
        pytest.param(
            {"Retry-After": _http_date(datetime.now(UTC) + timedelta(days=1))},
            10.0,
            id="http-date-no-date-header",
        ),
        pytest.param({"Retry-After": "soon"}, 0.5, id="garbage-falls-back-to-backoff"),
        pytest.param({"Retry-After": "-5"}, 0.5, id="negative-falls-back-to-backoff"),
    ],
)
def test_retry_after_is_honoured_and_capped(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    clock: FakeClock,
    headers: dict[str, str],
    expected: float,
) -> None:
    client, vendor = make_client(status(429, **headers), ok())

    profile = client.get_profile()

    assert clock.sleeps == [pytest.approx(expected)]
    assert vendor.count == 2
    assert profile.attempts == 2


def test_retry_after_is_not_jittered(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    client, _ = make_client(status(503, **{"Retry-After": "3"}), ok(), jitter=0.1)

    client.get_profile()

    assert clock.sleeps == [3.0]


# ---------------------------------------------------------------- deadline


def test_retries_stop_when_the_next_sleep_would_pass_the_deadline(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    policy = RetryPolicy(attempts=10, deadline=2.5, backoff_base=1.0, backoff_max=8.0)
    client, vendor = make_client(status(500), policy=policy)

    with pytest.raises(VendorUnavailableError) as info:
        client.get_profile()

    # t=0 request, sleep 1 → t=1 request, next sleep 2 would end at t=3 > 2.5: stop.
    assert clock.sleeps == [1.0]
    assert vendor.count == 2
    assert info.value.attempts == 2
    assert str(info.value) == (
        "vendor unavailable after 2 attempts: HTTP 500; "
        "the next retry would pass the deadline of 2.5s"
    )


def test_slow_requests_count_against_the_deadline(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    def slow_500(request: httpx.Request) -> httpx.Response:
        clock.now += 4.0
        return httpx.Response(500)

    policy = RetryPolicy(attempts=5, deadline=10.0)
    client, vendor = make_client(slow_500, policy=policy)

    with pytest.raises(VendorUnavailableError, match="would pass the deadline of 10s"):
        client.get_profile()

    # 4 + 0.5 + 4 = 8.5, then sleeping 1.0 and requesting again is allowed (9.5), then
    # 9.5 + 4 = 13.5 and another sleep would end past 10.
    assert vendor.count == 3
    assert clock.sleeps == [0.5, 1.0]


def test_retry_after_past_the_deadline_is_not_slept(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    policy = RetryPolicy(deadline=5.0, retry_after_max=60.0)
    client, vendor = make_client(status(503, **{"Retry-After": "30"}), ok(), policy=policy)

    with pytest.raises(VendorUnavailableError, match="deadline of 5s") as info:
        client.get_profile()

    assert vendor.count == 1
    assert clock.sleeps == []
    assert info.value.status == 503


def test_each_request_timeout_is_shrunk_to_the_remaining_deadline(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    seen: list[dict[str, float]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(500)

    policy = RetryPolicy(attempts=3, deadline=7.0, backoff_base=2.0)
    client, _ = make_client(record, policy=policy)

    with pytest.raises(VendorUnavailableError):
        client.get_profile()

    # Sleeps of 2 and 4 leave 5 and then 1 second of the 7-second deadline.
    assert seen == [
        {"connect": 5.0, "read": 7.0, "write": 7.0, "pool": 5.0},
        {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0},
        {"connect": 1.0, "read": 1.0, "write": 1.0, "pool": 1.0},
    ]


def test_a_dripping_body_is_cut_off_at_the_deadline(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    drip = DripStream(clock, SAMPLE.encode(), step=0.25)
    client, vendor = make_client(
        stream(drip, {"Content-Length": str(len(SAMPLE))}),
        policy=RetryPolicy(deadline=1.0),
    )

    with pytest.raises(VendorUnavailableError) as info:
        client.get_profile()

    assert type(info.value) is VendorUnavailableError
    assert str(info.value).endswith("deadline of 1s exceeded")
    assert info.value.attempts == 1
    assert vendor.count == 1
    assert clock.sleeps == []
    # Stopped right after the first chunk that arrived past the deadline (at 1.25 s).
    assert drip.pulled == 5
    assert drip.pulled < len(SAMPLE)


def test_a_body_completed_exactly_at_the_deadline_is_kept(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    body = b'{"credits": 1}'
    drip = DripStream(clock, body, step=1.0)
    client, _ = make_client(
        stream(drip, {"Content-Length": str(len(body))}),
        policy=RetryPolicy(deadline=len(body) - 0.5),
    )

    profile = client.get_profile()

    assert profile.credits == Decimal(1)
    assert profile.latency_ms == len(body) * 1000


# ---------------------------------------------------------------- body size


def test_a_body_over_the_declared_limit_is_refused_unread(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    big = ChunkStream(b"x" * 100, 50)
    client, vendor = make_client(stream(big, {"Content-Length": "5000"}), max_body_bytes=1000)

    with pytest.raises(UnusableResponseError, match=r"^unusable response: body of 5000 bytes"):
        client.get_profile()

    assert vendor.count == 3
    assert big.pulled == 0


def test_a_body_without_length_is_cut_once_over_the_limit(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    chunks = [ChunkStream(b"x" * 100, 1000) for _ in range(3)]
    steps = [stream(chunk) for chunk in chunks]
    client, vendor = make_client(*steps, max_body_bytes=1000)

    with pytest.raises(UnusableResponseError, match="exceeds the limit of 1000 bytes") as info:
        client.get_profile()

    assert vendor.count == 3
    assert info.value.attempts == 3
    # Reading stopped at the 11th chunk of each body, far before its 1000 chunks.
    assert [chunk.pulled for chunk in chunks] == [11, 11, 11]


def test_a_body_exactly_at_the_limit_is_accepted(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    client, _ = make_client(ok(SAMPLE), max_body_bytes=len(SAMPLE))

    assert client.get_profile().raw == SAMPLE


def _gzip(data_chunks: Iterator[bytes], wbits: int = 31) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(compressor.compress(chunk) for chunk in data_chunks) + compressor.flush()


def test_a_gzip_bomb_is_cut_at_the_cap_while_inflating(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    # 64 MiB of zeros in ~64 KiB of gzip, sent in 16 KiB reads (each inflating to 16 MiB).
    bomb = _gzip(bytes(1 << 20) for _ in range(64))
    assert len(bomb) < 100_000
    reads = [bomb[i : i + 16_384] for i in range(0, len(bomb), 16_384)]

    class Reads(httpx.SyncByteStream):
        pulled = 0

        def __iter__(self) -> Iterator[bytes]:
            for read in reads:
                Reads.pulled += 1
                yield read

    client, _ = make_client(
        stream(Reads(), {"Content-Encoding": "gzip"}),
        policy=RetryPolicy(attempts=1),
        max_body_bytes=65_536,
    )

    tracemalloc.start()
    try:
        with pytest.raises(UnusableResponseError, match="exceeds the limit of 65536 bytes"):
            client.get_profile()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert Reads.pulled == 1  # the first read already inflates past the cap
    assert peak < 1_000_000  # the cap plus an inflate step, not 16 MiB per read


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", 31), ("x-gzip", 31), ("deflate", 15), ("deflate", -15), ("identity, gzip", 31)],
)
def test_compressed_bodies_are_inflated(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], encoding: str, wbits: int
) -> None:
    compressed = _gzip(iter([SAMPLE.encode()]), wbits)
    client, vendor = make_client(stream(ChunkStream(compressed, 1), {"Content-Encoding": encoding}))

    profile = client.get_profile()

    assert profile.raw == SAMPLE
    assert vendor.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "body", "detail"),
    [
        ("br", b"whatever", "Content-Encoding 'br' is not supported"),
        ("gzip, gzip", b"whatever", "is not supported"),
        ("gzip", b"not gzip at all", "body cannot be decoded"),
    ],
)
def test_undecodable_encodings_are_unusable(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    encoding: str,
    body: bytes,
    detail: str,
) -> None:
    client, vendor = make_client(stream(ChunkStream(body, 1), {"Content-Encoding": encoding}))

    with pytest.raises(UnusableResponseError, match=detail):
        client.get_profile()

    assert vendor.count == 3


# ---------------------------------------------------------------- transport errors


@pytest.mark.parametrize(
    ("exc_type", "message", "description"),
    [
        pytest.param(httpx.ReadTimeout, "The read operation timed out", "timed out", id="read"),
        pytest.param(httpx.ConnectTimeout, "timed out", "connect timed out", id="connect-to"),
        pytest.param(httpx.PoolTimeout, "pool", "timed out", id="pool"),
        pytest.param(
            httpx.ConnectError, "[Errno 111] Connection refused", "connection refused", id="refused"
        ),
        pytest.param(
            httpx.ConnectError,
            "[Errno -2] Name or service not known",
            "connection failed ([Errno -2] Name or service not known)",
            id="dns",
        ),
        pytest.param(
            httpx.RemoteProtocolError,
            "Server disconnected\nwithout sending a response.",
            "connection error (Server disconnected without sending a response.)",
            id="disconnected",
        ),
    ],
)
def test_transport_errors_are_retried_then_raised(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    clock: FakeClock,
    exc_type: type[httpx.TransportError],
    message: str,
    description: str,
) -> None:
    client, vendor = make_client(raises(exc_type, message))

    with pytest.raises(VendorUnavailableError) as info:
        client.get_profile()

    assert vendor.count == 3
    assert clock.sleeps == [0.5, 1.0]
    assert str(info.value) == f"vendor unavailable after 3 attempts: {description}"
    assert (info.value.attempts, info.value.status) == (3, None)
    assert isinstance(info.value.__cause__, exc_type)


def test_timeouts_then_success(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    client, vendor = make_client(raises(httpx.ReadTimeout), raises(httpx.ReadTimeout), ok())

    assert client.get_profile().attempts == 3
    assert vendor.count == 3


def test_a_timeout_reading_the_body_is_retried(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    class StallingStream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'{"cred'
            raise httpx.ReadTimeout("stalled")

    client, vendor = make_client(stream(StallingStream()), ok())

    assert client.get_profile().attempts == 2
    assert vendor.count == 2


# ---------------------------------------------------------------- the token


def test_the_token_travels_only_in_the_authorization_header(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    client, vendor = make_client(status(500), ok())

    with capture_logs() as logs:
        client.get_profile()

    assert vendor.authorization == [f"Bearer {TOKEN}"] * 2
    assert all(TOKEN not in str(request.url) for request in vendor.requests)
    assert TOKEN not in repr(client)
    assert TOKEN not in str(vars(client))
    assert [entry["event"] for entry in logs] == ["vendor_request_retry"]
    assert logs[0]["attempt"] == 2
    assert logs[0]["status"] == 500
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize(
    "step",
    [
        status(401, f'{{"error": "bad token {TOKEN}"}}'),
        status(402),
        status(404),
        status(500, f"Bearer {TOKEN}"),
        ok(f'{{"credits": "{TOKEN}"}}'),
        raises(httpx.ConnectError, f"Authorization: Bearer {TOKEN}"),
        raises(httpx.ReadTimeout, TOKEN),
    ],
)
def test_the_token_never_appears_in_an_error(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], step: Step
) -> None:
    client, _ = make_client(step)

    with pytest.raises(VendorError) as info:
        client.get_profile()

    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert TOKEN not in repr(client)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f'{{"user_id": "{TOKEN}", "credits": 5}}', id="user-id"),
        pytest.param(f'{{"user_id": "u1", "tier": "Bearer {TOKEN}", "credits": 5}}', id="tier"),
        pytest.param(f'{{"credits": 5, "echo": {{"headers": ["{TOKEN}"]}}}}', id="nested"),
        pytest.param(f'{{"credits": 5, "{TOKEN}": 1}}', id="key"),
        pytest.param(
            '{"credits": 5, "user_id": "\\u0073k-test-0123456789abcdef-very-secret"}',
            id="escaped",
        ),
        pytest.param(
            f'{{"credits": 5, "tier": "x{TOKEN[:5]}\\u{ord(TOKEN[5]):04x}{TOKEN[6:]}y"}}',
            id="escaped-middle",
        ),
    ],
)
def test_a_token_echoed_anywhere_in_the_body_is_scrubbed_before_anyone_sees_it(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], body: str
) -> None:
    client, _ = make_client(ok(body))

    profile = client.get_profile()

    assert profile.credits == Decimal(5)
    for text in (profile.raw, profile.user_id, profile.tier, repr(profile)):
        assert TOKEN not in str(text)
    assert TOKEN not in json.dumps(json.loads(profile.raw))  # nor in any decoded string
    assert "[REDACTED]" in profile.raw


def test_scrubbing_keeps_everything_else_byte_for_byte() -> None:
    body = f'{{ "credits":1.50 ,"user_id":"{TOKEN}",\n "plan": {{"x": [1, 2.0e3]}}}}'

    profile = parse_profile(body)

    assert profile.raw == body.replace(TOKEN, "[REDACTED]")
    assert str(profile.credits) == "1.50"
    assert profile.user_id == "[REDACTED]"


def test_the_http_client_never_holds_the_token(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    client, _ = make_client(ok())
    client.get_profile()

    http: httpx.Client = client._http
    assert "authorization" not in http.headers
    assert http.auth is None


def test_a_plain_string_token_is_refused() -> None:
    with httpx.Client() as http, pytest.raises(TypeError, match="Secret"):
        VendorClient(http, TOKEN)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["tök-123456", "abc123\ndef456", "abc123\r\n X-Injected: 1"])
def test_a_malformed_token_never_reaches_a_header(token: str) -> None:
    with httpx.Client() as http, pytest.raises(ConfigError, match="printable ASCII") as info:
        VendorClient(http, Secret(token))

    assert "abc" not in str(info.value)


# ---------------------------------------------------------------- profile updates


def test_update_success_returns_the_profile(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    answer = '{"user_id": "u1", "credits": 5, "webhookUrl": "https://example.com/hook"}'
    client, vendor = make_client(ok(answer))

    profile = client.update_profile({"webhookUrl": "https://example.com/hook"})

    assert profile.raw == answer
    assert profile.credits == Decimal(5)
    request = vendor.requests[0]
    assert (request.method, request.url.path) == ("POST", PROFILE_PATH)
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(vendor.bodies[0]) == {"webhookUrl": "https://example.com/hook"}
    assert vendor.authorization == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize(
    ("code", "body", "message"),
    [
        pytest.param(
            422,
            '{"message": "webhookUrl must be an https URL"}',
            "vendor rejected the update (HTTP 422): webhookUrl must be an https URL",
            id="message",
        ),
        pytest.param(
            400,
            '{"error": {"code": "bad_field", "message": "unknown field: colour"}}',
            "vendor rejected the update (HTTP 400): unknown field: colour",
            id="nested-error",
        ),
        pytest.param(
            422,
            '{"detail": [{"loc": ["body", "webhookUrl"], "msg": "not https"}, {"msg": "x"}]}',
            "vendor rejected the update (HTTP 422): not https; x",
            id="detail-list",
        ),
        pytest.param(
            422,
            '{"detail": "line one\\n  line two"}',
            "vendor rejected the update (HTTP 422): line one line two",
            id="multiline",
        ),
        pytest.param(
            400, "<html>Bad Request</html>", "vendor rejected the update (HTTP 400)", id="html"
        ),
        pytest.param(
            409, '{"status": "conflict"}', "vendor rejected the update (HTTP 409)", id="no-text"
        ),
    ],
)
def test_update_validation_errors_are_rejections_without_retry(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    clock: FakeClock,
    code: int,
    body: str,
    message: str,
) -> None:
    client, vendor = make_client(status(code, body), ok())

    with pytest.raises(VendorRejectedError) as info:
        client.update_profile({"webhookUrl": "http://example.com/hook"})

    assert str(info.value) == message
    assert (info.value.status, info.value.attempts) == (code, 1)
    assert vendor.count == 1
    assert clock.sleeps == []


def test_update_rejection_message_is_one_short_line(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    long_text = "bad value\n" * 200
    client, _ = make_client(status(422, json.dumps({"message": long_text})))

    with pytest.raises(VendorRejectedError) as info:
        client.update_profile({"webhookUrl": "x"})

    text = str(info.value)
    assert "\n" not in text
    assert len(text) <= 350
    assert text.endswith("...")


@pytest.mark.parametrize(("code", "error"), [(401, AuthError), (402, BillingBlockedError)])
def test_update_auth_and_billing_errors(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
    code: int,
    error: type[VendorError],
) -> None:
    client, vendor = make_client(status(code), ok())

    with pytest.raises(error):
        client.update_profile({"webhookUrl": "https://example.com/hook"})

    assert vendor.count == 1


def test_update_is_retried_on_5xx_and_transport_errors(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]], clock: FakeClock
) -> None:
    client, vendor = make_client(status(503), raises(httpx.ConnectError), ok())

    profile = client.update_profile({"webhookUrl": "https://example.com/hook"})

    assert profile.attempts == 3
    assert [request.method for request in vendor.requests] == ["POST"] * 3
    assert len({bytes(body) for body in vendor.bodies}) == 1
    assert clock.sleeps == [0.5, 1.0]


def test_update_with_unserialisable_fields_is_a_usage_error(
    make_client: Callable[..., tuple[VendorClient, FakeVendor]],
) -> None:
    client, vendor = make_client(ok())

    with pytest.raises(UsageError, match="not plain JSON"):
        client.update_profile({"when": object()})

    assert vendor.count == 0


# ---------------------------------------------------------------- construction


def test_build_http_client_from_settings() -> None:
    settings = Settings(database_url="sqlite://", connect_timeout=2.0, read_timeout=7.0)

    with build_http_client(settings, "https://vendor.example") as http:
        assert http.base_url == httpx.URL("https://vendor.example")
        assert http.timeout == httpx.Timeout(connect=2.0, read=7.0, write=7.0, pool=2.0)
        assert http.follow_redirects is False
        assert http.headers["User-Agent"].startswith("preflight/")
        assert "authorization" not in http.headers


def test_retry_policy_from_settings() -> None:
    settings = Settings(
        database_url="sqlite://",
        attempts=5,
        deadline=12.0,
        backoff_base=0.25,
        backoff_max=4.0,
        retry_after_max=6.0,
    )

    assert RetryPolicy.from_settings(settings) == RetryPolicy(
        attempts=5, deadline=12.0, backoff_base=0.25, backoff_max=4.0, retry_after_max=6.0
    )


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"deadline": 0.0}, {"backoff_base": -1.0}])
def test_retry_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|cannot be negative"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- real loopback


class _DripHandler(http.server.BaseHTTPRequestHandler):
    """Declares a full body, then sends it one byte every 0.2 s (a slow-loris vendor)."""

    stop: threading.Event

    def do_GET(self) -> None:
        body = SAMPLE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for index in range(len(body)):
                if self.stop.wait(0.2):
                    return
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def drip_server() -> Iterator[str]:
    stop = threading.Event()
    handler = type("Handler", (_DripHandler,), {"stop": stop})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        thread.join(5)
        server.server_close()


def test_real_dripping_server_is_cut_off_at_the_deadline(drip_server: str) -> None:
    # The whole body would take 18 s; only the deadline path raises this error (no wall
    # clock is asserted: a broken deadline would read the body and fail the raises).
    settings = Settings(database_url="sqlite://", read_timeout=10.0, deadline=1.0)

    with build_http_client(settings, drip_server) as http:
        client = VendorClient(http, Secret(TOKEN), policy=RetryPolicy.from_settings(settings))
        with pytest.raises(VendorUnavailableError, match="deadline of 1s exceeded"):
            client.get_profile()


class _RawServer:
    """A loopback TCP server whose every connection runs ``script(conn, stop)`` in a thread."""

    def __init__(self, script: Callable[[socket.socket, threading.Event], None]) -> None:
        self.script = script
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.threads: list[threading.Thread] = []
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepter = threading.Thread(target=self._accept)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._run, args=(conn,))
            thread.start()
            self.threads.append(thread)

    def _run(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096) or b"\r\n\r\n"
                self.script(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.accepter.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def _drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    # A status line, then header bytes 0.1 s apart for 4 s at most: each byte restarts
    # httpx's read timeout, so only a bound on the whole request can end it sooner.
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for byte in b"X-Slow: " + b"a" * 39:
        if stop.wait(0.1):
            return
        conn.sendall(bytes([byte]))


def _silence(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(4)


@pytest.mark.parametrize(
    ("script", "phase"),
    [(_drip_headers, "no complete response headers"), (_silence, "no complete response headers")],
)
def test_the_deadline_bounds_the_response_headers_too(
    script: Callable[[socket.socket, threading.Event], None], phase: str
) -> None:
    server = _RawServer(script)
    settings = Settings(database_url="sqlite://", read_timeout=10.0, deadline=1.0)
    try:
        with build_http_client(settings, server.url) as http:
            client = VendorClient(http, Secret(TOKEN), policy=RetryPolicy.from_settings(settings))
            with pytest.raises(VendorUnavailableError) as info:
                client.get_profile()
    finally:
        server.close()

    # Without the bound the server gives up first (after 4 s) and the error is a
    # disconnection, not the deadline.
    assert str(info.value) == (
        f"vendor unavailable after 1 attempt: {phase}, deadline of 1s exceeded"
    )
