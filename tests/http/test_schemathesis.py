"""The API against its own OpenAPI document, with schemathesis (in-process, over ASGI).

Every operation gets a few derandomized examples and every default check: no 5xx, each
response matches its documented schema and content type, every status is documented, auth
is not ignored, schema-valid data is accepted (but for the cases named in UNSAYABLE, which
docs/http.md lists). The state machine follows the document's links: check → outcomes →
show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.specs.openapi.checks import positive_data_acceptance

from preflight import contract
from preflight.domain.vocabulary import METERS
from preflight.http.app import create_app
from preflight.sandbox import SandboxServer
from preflight.services.runtime import Runtime
from preflight.services.tokens import create_token
from tests.http.conftest import api_settings


def _outcomes(case: Any) -> list[dict[str, Any]]:
    body = case.body if isinstance(case.body, list) else [case.body]
    return [item for item in body if isinstance(item, dict)]


def _integer_valued_float(case: Any) -> bool:
    return any(
        isinstance(item.get(key), float) for item in _outcomes(case) for key in INTEGER_FIELDS
    )


def _unprintable_job_id(case: Any) -> bool:
    return any(
        isinstance(item.get("job_id"), str) and not item["job_id"].isprintable()
        for item in _outcomes(case)
    )


def _meter_of_another_vendor(case: Any) -> bool:
    meter = case.body.get("meter") if isinstance(case.body, dict) else None
    return meter is not None and meter != "auto" and meter not in METERS


def _need_from_history(case: Any) -> bool:
    return isinstance(case.body, dict) and any(
        key in case.body for key in ("jobs", "estimate_from", "estimate", "min_history")
    )


def _guard(case: Any) -> bool:
    return str(case.path).endswith("/guard")


#: What JSON Schema cannot say, by name (docs/http.md, "What the schema cannot say"): a case
#: that meets one of these is schema-valid and still refused with a 400 naming the field,
#: which is the contract; for it alone the "schema-valid data is accepted" check is not
#: run. Every other check runs on every case.
INTEGER_FIELDS = ("http_status", "attempt")
UNSAYABLE: dict[str, Callable[[Any], bool]] = {
    # 402.0 is a JSON Schema integer, but not an http_status (README, Bounds).
    "an integer-valued float in an integer field": _integer_valued_float,
    # Printable is a set of Unicode categories (no format, private-use, unassigned or
    # separator characters but the space, no lone surrogates); the pattern only refuses
    # the control characters.
    "a job_id that is not printable": _unprintable_job_id,
    # The meters are those of the account's vendor: the server's settings, not the API's.
    "a meter the account's vendor does not have": _meter_of_another_vendor,
    # Whether the account's finished batches hold enough jobs is the database's to say.
    "a need estimated from history": _need_from_history,
    # A guard reads the batch as stored: finished, never checked, or without a need.
    "a guard of a batch that cannot be guarded": _guard,
}


def _excluded(case: Any) -> list[Any]:
    return [positive_data_acceptance] if any(meets(case) for meets in UNSAYABLE.values()) else []


SETTINGS = hypothesis.settings(
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@pytest.fixture
def api(tmp_path: Path, sandbox: SandboxServer) -> Iterator[tuple[Any, dict[str, str]]]:
    runtime = Runtime(api_settings(f"sqlite:///{tmp_path / 'api.db'}", sandbox))
    token = create_token(runtime, "schemathesis", "admin").token.reveal()
    try:
        yield create_app(runtime), {"Authorization": f"Bearer {token}"}
    finally:
        runtime.close()


@pytest.fixture
def api_schema(api: tuple[Any, dict[str, str]]) -> Any:
    app, _headers = api
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def auth(api: tuple[Any, dict[str, str]]) -> dict[str, str]:
    return api[1]


OPERATIONS = [
    "check_batch",
    "guard_batch",
    "record_outcomes",
    "finish_batch",
    "show_batch",
    "batch_report",
    "account_report",
    "list_batches",
    "list_failures",
    "list_findings",
    "run_audit",
    "classify",
    "read_profile",
    "healthz",
    "readyz",
    "metrics",
]


def test_every_operation_is_tested(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    found = {operation.definition.raw["operationId"] for operation in operations}
    assert found == set(OPERATIONS)


# (schemathesis' own pytest loader, from_fixture, does not run on pytest 9: each operation
# is driven here through its Hypothesis strategy instead.)
@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_every_operation_keeps_its_documented_contract(
    api_schema: Any, auth: dict[str, str], operation_id: str
) -> None:
    operation = api_schema.find_operation_by_id(operation_id)

    @hypothesis.given(case=operation.as_strategy())
    @SETTINGS
    def examples(case: Any) -> None:
        case.call_and_validate(headers=auth, excluded_checks=_excluded(case))

    examples()


def test_links_from_check_to_outcomes_to_show(api_schema: Any, auth: dict[str, str]) -> None:
    machine = api_schema.as_state_machine()

    class Stateful(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": auth}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(
                response, excluded_checks=_excluded(case), transport_kwargs=kwargs
            )

    Stateful.run(
        settings=hypothesis.settings(
            max_examples=8,
            stateful_step_count=5,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_the_document_declares_the_links_and_problem_answers(api_schema: Any) -> None:
    raw = api_schema.raw_schema
    check = raw["paths"]["/v1/batches/{batch_id}/check"]["post"]
    links = check["responses"]["200"]["links"]
    assert {link["operationId"] for link in links.values()} >= {"record_outcomes", "show_batch"}
    record = raw["paths"]["/v1/batches/{batch_id}/outcomes"]["post"]
    assert set(record["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    for item in raw["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert set(response["content"]) == {"application/problem+json"}


def test_the_documented_answers_are_the_contracts_shapes(api_schema: Any) -> None:
    components = api_schema.raw_schema["components"]["schemas"]
    for shape in contract.SHAPES:
        assert components[shape.name] == contract.json_schema(shape), shape.name
    check = api_schema.raw_schema["paths"]["/v1/batches/{batch_id}/check"]["post"]
    answer = check["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/CheckAnswer"}
    (batch_id,) = (p for p in check["parameters"] if p["name"] == "batch_id")
    assert batch_id["schema"]["pattern"] == contract.BATCH_ID


def test_the_exclusions_are_the_ones_the_docs_name() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "http.md").read_text(encoding="utf-8")
    section = docs.split("## What the schema cannot say")[1].split("\n## ")[0]
    named = [line[4:].split("**")[0] for line in section.splitlines() if line.startswith("- **")]
    assert named == list(UNSAYABLE)
