"""The rules every orchestrator integration reads a task's result and exception by
(preflight.integrations.outcome): one table each, so Celery, Prefect and Airflow agree."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import requests

from preflight.errors import StorageError, UsageError
from preflight.integrations.outcome import (
    cost_of,
    error_text,
    failure_fields,
    http_status_of,
    success_fields,
)
from preflight.integrations.recorder import record_failure, record_success
from preflight.secret import Secret


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        (5, Decimal(5)),
        (0, Decimal(0)),
        (Decimal("12.50"), Decimal("12.50")),
        (0.1, Decimal("0.1")),  # a float's shortest text, not its binary expansion
        (2.5e-05, Decimal("0.000025")),
        ("7.25", Decimal("7.25")),
        (" 3 ", Decimal(3)),
        ({"cost": "4.5", "text": "..."}, Decimal("4.5")),
        ({"cost": 6}, Decimal(6)),
        ({"cost": 0.2}, Decimal("0.2")),
        ({"cost": None}, None),
        ({"tokens": 10}, None),  # a mapping declares only its "cost"
        (None, None),
        (True, None),  # a flag is not a number here
        ("done", None),
        ("NaN", None),
        ("Infinity", None),
        ([1, 2], None),
        ({"cost": "abc"}, UsageError),
        ({"cost": -1}, UsageError),
        (-3, UsageError),
        ("-3", UsageError),
        (float("inf"), UsageError),
        ({"cost": True}, UsageError),
        ("1" * 120, UsageError),
    ],
)
def test_cost_of_a_return_value(value: object, cost: Decimal | type[Exception] | None) -> None:
    if isinstance(cost, type):
        with pytest.raises(cost, match=r"^cost: "):
            cost_of(value)
    else:
        assert cost_of(value) == cost


def _httpx_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://vendor.example/jobs?key=sk-in-the-query-123")
    response = httpx.Response(status, request=request)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError("raise_for_status did not raise")


def _requests_error(status: int | None) -> requests.HTTPError:
    if status is None:
        return requests.HTTPError("no response")
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} Client Error", response=response)


class _Tagged(Exception):
    def __init__(self, status: object) -> None:
        super().__init__("vendor said no")
        self.http_status = status


def _wrapped(inner: BaseException) -> BaseException:
    try:
        raise RuntimeError("job failed") from inner
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (_httpx_error(402), 402),
        (_httpx_error(503), 503),
        (_requests_error(402), 402),
        (_requests_error(None), None),  # raised by hand, without a response
        (_Tagged(402), 402),
        (_Tagged("402"), None),  # an attribute that is not an int is no status
        (_Tagged(True), None),
        (_Tagged(99), None),
        (_wrapped(_httpx_error(402)), 402),  # raise ... from the client's error
        (_wrapped(_wrapped(_Tagged(429))), 429),
        (ValueError("boom"), None),
        (httpx.ConnectError("refused"), None),
    ],
)
def test_http_status_of_an_exception(error: BaseException, status: int | None) -> None:
    assert http_status_of(error) == status


def test_error_text_is_one_line_without_secrets_or_query_strings() -> None:
    secret = Secret("sk-live-abcdef123456")
    text = error_text(RuntimeError(f"token {secret.reveal()} refused\nsecond line"))
    assert text == "RuntimeError: token [REDACTED] refused"
    httpx_text = error_text(_httpx_error(402))
    assert httpx_text.startswith("HTTPStatusError: Client error '402 Payment Required'")
    assert "sk-in-the-query" not in httpx_text
    assert "https://vendor.example/jobs?…" in httpx_text
    assert error_text(ValueError()) == "ValueError"


def test_outcome_fields_of_a_success_and_a_failure() -> None:
    assert success_fields("j1", 2, {"cost": "5"}) == {
        "job_id": "j1",
        "status": "succeeded",
        "attempt": 2,
        "cost": Decimal(5),
    }
    assert success_fields("j1", 1, None) == {"job_id": "j1", "status": "succeeded", "attempt": 1}
    assert failure_fields("j2", 3, _Tagged(402)) == {
        "job_id": "j2",
        "status": "failed",
        "attempt": 3,
        "error": "_Tagged: vendor said no",
        "http_status": 402,
    }
    assert "http_status" not in failure_fields("j3", 1, ValueError("x"))


class _Unreachable:
    """A facade whose preflight cannot be reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def record(self, batch_id: str, outcome: object, **_: object) -> object:
        self.calls.append((batch_id, outcome))
        raise StorageError("preflight server unreachable: connection refused")


def test_an_unreachable_preflight_is_logged_not_raised_unless_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _Unreachable()
    with caplog.at_level("WARNING", logger="preflight.integrations"):
        assert record_success(client, "B", "j1", 1, {"cost": 5}) is None  # type: ignore[arg-type]
    assert client.calls == [
        ("B", {"job_id": "j1", "status": "succeeded", "attempt": 1, "cost": Decimal(5)})
    ]
    assert "outcome not recorded" in caplog.text
    assert "StorageError" in caplog.text
    with pytest.raises(StorageError):
        record_failure(client, "B", "j1", 1, ValueError("x"), raise_errors=True)  # type: ignore[arg-type]


def test_a_declared_cost_that_is_no_amount_is_logged_and_nothing_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _Unreachable()
    with caplog.at_level("WARNING", logger="preflight.integrations"):
        assert record_success(client, "B", "j1", 1, {"cost": "lots"}) is None  # type: ignore[arg-type]
    assert client.calls == []
    assert "cost: not a decimal amount" in caplog.text
