"""The bundled sandbox vendor, over real loopback HTTP: balance, faults, shape, control API."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer

PROFILE = "/api/open/v1/profile"
JOBS = "/api/open/v1/jobs"
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def exact(response: httpx.Response) -> object:
    """The body with JSON numbers as exact Decimals, as preflight itself must read them."""
    return json.loads(response.content, parse_float=Decimal, parse_int=Decimal)


def connect(
    base_url: str, *, headers: dict[str, str] | None = None, timeout: float = 5
) -> httpx.Client:
    # Plain HTTP on loopback: verify=False only skips loading the CA bundle (~30 ms a client).
    return httpx.Client(
        base_url=base_url,
        headers=AUTH if headers is None else headers,
        timeout=timeout,
        verify=False,
    )


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with connect(sandbox.url) as http:
        yield http


# ---------------------------------------------------------------- profile


def test_profile_is_the_vendor_example_with_numbers_as_exact_text(client: httpx.Client) -> None:
    response = client.get(PROFILE)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.json() == {
        "user_id": "user_123",
        "api_quota_remaining": 988000,
        "tier": "pro",
        "credits": 1200,
    }
    assert b'"credits": 1200' in response.content
    assert b'"api_quota_remaining": 988000' in response.content


def test_decimal_meters_keep_their_digits(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_balance(credits=Decimal("12.50"), quota=Decimal("0.000001"))

    response = client.get(PROFILE)

    assert b'"credits": 12.50,' not in response.content  # credits is last: no comma
    assert b'"credits": 12.50}' in response.content
    assert b'"api_quota_remaining": 0.000001,' in response.content
    body = exact(response)
    assert isinstance(body, dict)
    assert body["credits"] == Decimal("12.50")
    assert str(body["credits"]) == "12.50"


def test_a_meter_set_to_none_is_left_out(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_balance(quota=None)

    assert "api_quota_remaining" not in client.get(PROFILE).json()
    assert sandbox.balance == {"credits": Decimal("1200"), "api_quota_remaining": None}


def test_server_built_without_a_meter() -> None:
    with (
        SandboxServer(credits=None, quota=Decimal("5"), token="t", user_id="u9", tier="free") as s,
        connect(s.url, headers={"Authorization": "Bearer t"}) as http,
    ):
        assert http.get(PROFILE).json() == {
            "user_id": "u9",
            "api_quota_remaining": 5,
            "tier": "free",
        }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {DEFAULT_TOKEN}"}],
)
def test_bad_or_missing_token_is_401(sandbox: SandboxServer, headers: dict[str, str]) -> None:
    with connect(sandbox.url, headers=headers) as http:
        for response in (
            http.get(PROFILE),
            http.post(PROFILE, json={}),
            http.post(JOBS, json={"cost": "1"}),
        ):
            assert response.status_code == 401
            assert response.json() == {"error": "unauthorized"}
    assert sandbox.balance["credits"] == Decimal("1200")


def test_keep_alive_serves_many_requests_on_one_connection(client: httpx.Client) -> None:
    for _ in range(5):
        assert client.get(PROFILE).status_code == 200
        assert client.get("/nowhere").status_code == 404


# ---------------------------------------------------------------- jobs


def test_a_job_consumes_the_balance(sandbox: SandboxServer, client: httpx.Client) -> None:
    response = client.post(JOBS, json={"cost": "5"})

    assert response.status_code == 200
    assert response.json() == {"ok": True, "charged": "5", "meter": "credits", "balance": "1195"}
    assert sandbox.balance["credits"] == Decimal("1195")
    assert client.get(PROFILE).json()["credits"] == 1195

    by_number = client.post(JOBS, json={"cost": 0.25, "meter": "api_quota_remaining"})
    assert by_number.json()["balance"] == "987999.75"
    assert sandbox.balance["api_quota_remaining"] == Decimal("987999.75")


def test_insufficient_balance_is_402_and_nothing_is_charged(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_balance(credits=Decimal("3"))

    response = client.post(JOBS, json={"cost": "3.01"})

    assert response.status_code == 402
    assert response.json() == {"error": "insufficient_quota"}
    assert sandbox.balance["credits"] == Decimal("3")
    assert client.post(JOBS, json={"cost": "3"}).json()["balance"] == "0"


def test_job_meter_defaults_to_quota_when_credits_are_absent(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_balance(credits=None)

    assert client.post(JOBS, json={"cost": "1"}).json()["meter"] == "api_quota_remaining"
    explicit = client.post(JOBS, json={"cost": "1", "meter": "credits"})
    assert explicit.status_code == 402


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"cost": "abc"},
        {"cost": "-1"},
        {"cost": True},
        {"cost": "NaN"},
        {"cost": "1", "meter": "x"},
    ],
)
def test_a_bad_job_is_400(sandbox: SandboxServer, client: httpx.Client, body: object) -> None:
    response = client.post(JOBS, json=body)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert sandbox.balance["credits"] == Decimal("1200")


# ---------------------------------------------------------------- control API


def test_consume_is_clamped_at_zero(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_balance(credits=Decimal("7"))

    response = client.post("/_sandbox/consume", json={"amount": "10", "meter": "credits"})

    assert response.status_code == 200
    assert response.json()["consumed"] == "7"
    assert sandbox.balance["credits"] == Decimal("0")
    assert sandbox.balance["api_quota_remaining"] == Decimal("988000")

    sandbox.consume(Decimal("1000"))  # both meters
    assert sandbox.balance == {"credits": Decimal("0"), "api_quota_remaining": Decimal("987000")}


def test_topup_and_set_balance(sandbox: SandboxServer, client: httpx.Client) -> None:
    topped = client.post("/_sandbox/topup", json={"amount": "100.5", "meter": "credits"})
    assert topped.json()["balance"]["credits"] == "1300.5"

    client.post("/_sandbox/balance", json={"credits": "500", "api_quota_remaining": None})
    assert sandbox.balance == {"credits": Decimal("500"), "api_quota_remaining": None}

    client.post("/_sandbox/topup", json={"amount": "2", "meter": "api_quota_remaining"})
    state = client.get("/_sandbox/state").json()
    assert state["balance"] == {"credits": "500", "api_quota_remaining": "2"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sandbox/consume", {"amount": "x"}),
        ("/_sandbox/consume", {"amount": "1", "meter": "gold"}),
        ("/_sandbox/consume", {"amount": "1e999"}),
        ("/_sandbox/balance", {"credits": "-1"}),
        ("/_sandbox/balance", {"gold": "1"}),
        ("/_sandbox/topup", {"meter": "credits"}),
        ("/_sandbox/faults", {"status": 200}),
        ("/_sandbox/faults", {"kind": "latency"}),
        ("/_sandbox/faults", {"status": 500, "count": 0}),
        ("/_sandbox/faults", [{"status": 500}, {"kind": "nope"}]),
        ("/_sandbox/shape", {"drop": "credits"}),
        ("/_sandbox/shape", {"colour": "red"}),
    ],
)
def test_bad_control_input_is_400(
    sandbox: SandboxServer, client: httpx.Client, path: str, body: object
) -> None:
    response = client.post(path, json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert client.get("/_sandbox/state").json()["faults_queued"] == 0  # all or nothing
    assert sandbox.balance["credits"] == Decimal("1200")


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    assert client.get("/_sandbox/nope").status_code == 404
    assert client.get("/").json() == {"error": "not_found", "message": "no /"}
    assert client.get("/_sandbox/reset").status_code == 405
    wrong = client.get(JOBS)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert client.post("/_sandbox/faults", content=b"{not json").status_code == 400


def test_in_process_helpers_reject_bad_input(sandbox: SandboxServer) -> None:
    with pytest.raises(ValueError, match="negative"):
        sandbox.set_balance(credits=Decimal("-1"))
    with pytest.raises(ValueError, match="fault"):
        sandbox.inject({"kind": "latency", "secs": 1})
    with pytest.raises(ValueError, match="decimal"):
        sandbox.consume(1.5)  # type: ignore[arg-type]
    sandbox.set_balance(quota=None)
    with pytest.raises(ValueError, match="no api_quota_remaining meter"):
        sandbox.consume(Decimal("1"), meter="api_quota_remaining")


# ---------------------------------------------------------------- faults


def test_faults_are_queued_in_order_with_counts(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    queued = client.post("/_sandbox/faults", json=[{"status": 500, "count": 2}, {"status": 402}])
    assert queued.json() == {"faults_queued": 2}

    statuses = [client.get(PROFILE).status_code for _ in range(4)]

    assert statuses == [500, 500, 402, 200]
    assert client.get("/_sandbox/state").json()["faults_queued"] == 0


def test_fault_bodies_and_retry_after(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.inject({"status": 503, "headers": {"Retry-After": "1"}})
    sandbox.inject({"status": 401})
    sandbox.inject({"status": 500, "body": "boom", "content_type": "text/plain"})

    unavailable = client.get(PROFILE)
    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"] == "1"
    assert unavailable.json() == {"error": "service_unavailable"}
    assert client.get(PROFILE).json() == {"error": "unauthorized"}
    custom = client.get(PROFILE)
    assert (custom.status_code, custom.text, custom.headers["content-type"]) == (
        500,
        "boom",
        "text/plain",
    )


def test_a_forever_fault_lasts_until_reset(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.inject({"status": 500, "count": -1})

    assert [client.get(PROFILE).status_code for _ in range(3)] == [500, 500, 500]
    # Faults answer jobs too, and a failed job charges nothing.
    assert client.post(JOBS, json={"cost": "1"}).status_code == 500
    assert sandbox.balance["credits"] == Decimal("1200")

    client.post("/_sandbox/reset")
    assert client.get(PROFILE).status_code == 200


def test_malformed_body(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.inject([{"kind": "malformed"}, {"kind": "malformed", "body": '{"credits": '}])

    gateway = client.get(PROFILE)
    assert gateway.status_code == 200
    assert gateway.headers["content-type"] == "text/html"
    assert gateway.text == "<html><body>502 Bad Gateway</body></html>"
    truncated = client.get(PROFILE)
    assert truncated.text == '{"credits": '
    with pytest.raises(json.JSONDecodeError):
        truncated.json()


def test_latency_delays_a_normal_answer(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.inject({"kind": "latency", "seconds": 0.2})

    started = time.monotonic()
    response = client.get(PROFILE)

    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200


def test_drip_delivers_the_whole_body_slowly(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_shape({"drop": ["user_id", "tier", "api_quota_remaining"]})  # {"credits": 1200}
    sandbox.inject({"kind": "drip", "interval": 0.02})

    started = time.monotonic()
    response = client.get(PROFILE)
    elapsed = time.monotonic() - started

    assert response.content == b'{"credits": 1200}'
    assert elapsed >= 0.02 * (len(response.content) - 1) * 0.9
    assert client.get(PROFILE).status_code == 200  # the connection is still usable


def test_a_client_leaving_a_drip_causes_no_traceback(
    sandbox: SandboxServer, client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    sandbox.inject({"kind": "drip", "interval": 0.05})

    # Leaving the stream early closes the connection under the server's writes.
    with (
        connect(sandbox.url) as impatient,
        impatient.stream("GET", PROFILE) as response,
    ):
        next(response.iter_raw(1))
    time.sleep(0.3)

    assert client.get(PROFILE).status_code == 200
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_hang_times_out_the_client_and_is_released_on_stop() -> None:
    sandbox = SandboxServer().start()
    try:
        sandbox.inject({"kind": "hang", "count": 2})
        with (
            connect(sandbox.url, timeout=0.2) as http,
            pytest.raises(httpx.ReadTimeout),
        ):
            http.get(PROFILE)

        outcome: list[BaseException] = []

        def wait_for_answer() -> None:
            with connect(sandbox.url, timeout=10) as http:
                try:
                    http.get(PROFILE)
                except httpx.HTTPError as exc:
                    outcome.append(exc)

        waiter = threading.Thread(target=wait_for_answer)
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive()  # hanging
    finally:
        sandbox.stop()
    waiter.join(timeout=2)  # a bound on the wait, not an assertion on the clock

    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.RemoteProtocolError)
    sandbox.stop()  # idempotent


# ---------------------------------------------------------------- shape


def test_shape_drop_strings_and_extra(sandbox: SandboxServer, client: httpx.Client) -> None:
    client.post("/_sandbox/shape", json={"drop": ["api_quota_remaining"], "as_strings": True})
    sandbox.set_shape({"extra": {"plan": {"nested": [1, 2]}, "x": 1.5}})

    response = client.get(PROFILE)

    assert response.json() == {
        "user_id": "user_123",
        "tier": "pro",
        "credits": "1200",
        "plan": {"nested": [1, 2]},
        "x": 1.5,
    }
    assert b'"credits": "1200"' in response.content
    assert client.get("/_sandbox/state").json()["shape"]["drop"] == ["api_quota_remaining"]

    sandbox.reset()
    assert client.get(PROFILE).json()["api_quota_remaining"] == 988000


# ---------------------------------------------------------------- profile update


@pytest.mark.parametrize(
    "url",
    ["http://example.com/hook", "ftp://x", "https://", "https://" + "a" * 2048, 42, None],
)
def test_profile_update_validation(
    sandbox: SandboxServer, client: httpx.Client, url: object
) -> None:
    response = client.post(PROFILE, json={"webhookUrl": url})

    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["field"]) == ("validation_error", "webhookUrl")
    assert "webhookUrl" not in client.get(PROFILE).json()


def test_profile_update_success(sandbox: SandboxServer, client: httpx.Client) -> None:
    response = client.post(
        PROFILE, json={"webhookUrl": "https://example.com/hook", "somethingElse": 1}
    )

    assert response.status_code == 200
    assert response.json() == {
        "user_id": "user_123",
        "api_quota_remaining": 988000,
        "tier": "pro",
        "credits": 1200,
        "webhookUrl": "https://example.com/hook",
    }
    assert client.get("/_sandbox/state").json()["webhookUrl"] == "https://example.com/hook"


@pytest.mark.parametrize("content", [b"", b"{oops", b"[1, 2]", b"\xff"])
def test_profile_update_needs_a_json_object(client: httpx.Client, content: bytes) -> None:
    response = client.post(PROFILE, content=content)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_a_fault_answers_a_profile_update_too(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.inject({"status": 500})

    assert client.post(PROFILE, json={"webhookUrl": "https://e.com"}).status_code == 500
    assert client.get("/_sandbox/state").json()["webhookUrl"] is None


# ---------------------------------------------------------------- counters


def test_request_counts(sandbox: SandboxServer, client: httpx.Client) -> None:
    client.get(PROFILE)
    client.get(PROFILE)
    client.post(JOBS, json={"cost": "1"})
    client.get("/_sandbox/state")  # control requests are not vendor requests

    expected = {
        "GET /api/open/v1/profile": 2,
        "POST /api/open/v1/profile": 0,
        "POST /api/open/v1/jobs": 1,
    }
    assert sandbox.request_counts == expected
    assert client.get("/_sandbox/state").json()["requests"] == expected

    client.post("/_sandbox/reset")
    assert set(sandbox.request_counts.values()) == {0}
    assert sandbox.balance["credits"] == Decimal("1199")  # reset keeps the balance


# ---------------------------------------------------------------- serve_forever


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_forever_stops_cleanly_on_a_signal(signum: signal.Signals) -> None:
    code = (
        "from decimal import Decimal\n"
        "from preflight.sandbox import serve_forever\n"
        "serve_forever(host='127.0.0.1', port=0, credits=Decimal('7.5'), quota=None, token='tok')\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "serve_forever did not announce itself"
            line = process.stdout.readline()
            assert line.startswith("sandbox vendor listening on http://127.0.0.1:")
            assert line.endswith(" (token: tok)\n")
            # The balances it starts with, so a new user knows what a check will read.
            assert process.stdout.readline() == (
                "starting balance: credits 7.5, api_quota_remaining absent\n"
            )
            url = line.split()[4]
            with connect(url, headers={"Authorization": "Bearer tok"}) as http:
                assert exact(http.get(PROFILE)) == {
                    "user_id": "user_123",
                    "tier": "pro",
                    "credits": Decimal("7.5"),
                }

            process.send_signal(signum)
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert process.returncode == 0
    assert (out, err) == ("", "")
