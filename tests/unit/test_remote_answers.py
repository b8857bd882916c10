"""Remote mode reading a server's answer it cannot use: one clear StorageError, never a
KeyError or a traceback (a server older than the client lacks keys added since)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from preflight import contract
from preflight.domain.classify import Reading
from preflight.errors import StorageError
from preflight.remote import Requests
from preflight.services.results import FinishResult, SpendSummary
from preflight.settings import load_settings
from tests.support import CLOCK_START

SERVER = "http://preflight.test"


@pytest.fixture
def requests() -> Requests:
    return Requests(SERVER, load_settings({}))


def _finish_answer(requests: Requests) -> dict[str, object]:
    """A finish answer as this client's server writes it (round-tripped below)."""

    summary = SpendSummary(
        "credits",
        Decimal("2.5"),
        Reading(1, CLOCK_START, Decimal(100)),
        Reading(2, CLOCK_START, Decimal("97.5")),
        None,
    )
    result = FinishResult("b1", CLOCK_START, summary, None)
    answer = contract.encode(contract.FINISH, result)
    assert requests.answer(requests.finish("b1"), 200, json.dumps(answer).encode()) == result
    return answer


def test_an_answer_without_a_key_the_client_reads_names_the_key(requests: Requests) -> None:
    answer = _finish_answer(requests)
    del answer["finish_snapshot"]
    with pytest.raises(StorageError) as raised:
        requests.answer(requests.finish("b1"), 200, json.dumps(answer).encode())
    message = str(raised.value)
    assert "'finish_snapshot'" in message
    assert "older than the client" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value"), [("own_cost", "lots"), ("finished_at", 7), ("own_cost", None)]
)
def test_an_answer_with_a_value_the_client_cannot_read_is_one_storage_error(
    requests: Requests, key: str, value: object
) -> None:
    answer = _finish_answer(requests)
    answer[key] = value
    with pytest.raises(StorageError, match="with a body this client cannot read"):
        requests.answer(requests.finish("b1"), 200, json.dumps(answer).encode())
