"""The OpenAPI document, finished by hand where the framework cannot know.

- the results' answers are the contract's shapes (:func:`preflight.contract.components`);
- every 4xx/5xx answer is ``application/problem+json`` with the ``Problem`` schema;
- the outcomes route takes a JSON object, a JSON array, or ``application/x-ndjson``
  (it parses its body itself, to keep numbers exact and to stream);
- links: from a check to recording outcomes, finishing and showing the same batch, and
  from recording outcomes to showing the batch (schemathesis' stateful tests follow them).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from preflight import contract
from preflight.http import schemas
from preflight.http.problems import PROBLEM_JSON

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_OUTCOME_REF = {"$ref": "#/components/schemas/OutcomeIn"}
_BATCH_FROM_BODY = {"batch_id": "$response.body#/batch_id"}
_BATCH_FROM_PATH = {"batch_id": "$request.path.batch_id"}


def _links(**targets: tuple[str, dict[str, str]]) -> dict[str, Any]:
    return {
        name: {"operationId": operation, "parameters": parameters}
        for name, (operation, parameters) in targets.items()
    }


def _finish(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(contract.components())
    outcome = schemas.OutcomeIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(outcome.pop("$defs", {}))
    components["OutcomeIn"] = outcome
    operations: dict[str, dict[str, Any]] = {}
    for item in document["paths"].values():
        for operation in item.values():
            operations[operation["operationId"]] = operation
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}

    record = operations["record_outcomes"]
    record["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [_OUTCOME_REF, {"type": "array", "items": _OUTCOME_REF}],
                }
            },
            "application/x-ndjson": {
                "schema": {"type": "array", "items": _OUTCOME_REF},
                "description": "JSON Lines: one outcome object per line, streamed.",
            },
        },
    }
    operations["check_batch"]["responses"]["200"]["links"] = _links(
        RecordOutcomes=("record_outcomes", _BATCH_FROM_BODY),
        FinishBatch=("finish_batch", _BATCH_FROM_BODY),
        ShowBatch=("show_batch", _BATCH_FROM_BODY),
    )
    record["responses"]["200"]["links"] = _links(ShowBatch=("show_batch", _BATCH_FROM_PATH))
    operations["finish_batch"]["responses"]["200"]["links"] = _links(
        ShowBatch=("show_batch", _BATCH_FROM_BODY)
    )
    return document


def document(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the finished document (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _finish(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
