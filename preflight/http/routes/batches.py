"""A batch's life over HTTP: check, record outcomes, finish, show; and the listings of
batches and of their quota failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from preflight import contract
from preflight.domain.outcome import MAX_LINE_BYTES
from preflight.domain.vocabulary import BatchStatus, Tag
from preflight.errors import UsageError
from preflight.http import bodies, schemas
from preflight.http.auth import runtime_of
from preflight.http.edge import problem_response, streams_body
from preflight.http.problems import UNSUPPORTED_MEDIA
from preflight.http.routes.common import (
    SCOPED,
    AccountFilter,
    BatchId,
    Since,
    answer,
    answers,
    errors,
    known_account,
    parse_since,
    run,
)
from preflight.services import batches, checks, forecasts, outcomes
from preflight.services.runtime import Runtime
from preflight.settings import parse_duration

router = APIRouter()


@router.post(
    "/v1/batches/{batch_id:path}/check",
    operation_id="check_batch",
    tags=["batches"],
    summary="Snapshot the balance for a batch and answer go / no-go",
    responses={200: answers(contract.CHECK_ANSWER), **errors(404, 413)},
    dependencies=[SCOPED["check"]],
)
def check_batch(
    request: Request, batch_id: BatchId, body: schemas.CheckIn | None = None
) -> JSONResponse:
    """Every verdict is a 200: ``verdict`` says go / no-go, ``exit_code`` is the CLI's."""
    rt = runtime_of(request)
    body = body or schemas.CheckIn()
    result = checks.check(
        rt,
        batch_id,
        need=body.need,
        meter=body.meter,
        reserve=body.reserve,
        fail_open=body.fail_open,
        account=known_account(rt, body.account),
        labels=body.labels,
        jobs=body.jobs,
        estimate_from=body.estimate_from,
        estimate=body.estimate,
        min_history=body.min_history,
    )
    data = result.to_dict()
    data["exit_code"] = contract.exit_code(
        result.verdict, strict=body.strict, fail_open=result.fail_open
    )
    return answer(data)


@router.post(
    "/v1/batches/{batch_id:path}/guard",
    operation_id="guard_batch",
    tags=["batches"],
    summary="Between two dispatches: continue, at_risk or stop",
    responses={200: answers(contract.GUARD_ANSWER), **errors(404, 413)},
    dependencies=[SCOPED["check"]],
)
def guard_batch(
    request: Request, batch_id: BatchId, body: schemas.GuardIn | None = None
) -> JSONResponse:
    """Every decision is a 200: ``decision`` says what to do, ``exit_code`` is the CLI's."""
    body = body or schemas.GuardIn()
    max_age = None
    if body.max_age is not None:
        try:
            max_age = parse_duration(body.max_age)
        except ValueError as exc:
            raise UsageError(f"max_age: {exc}") from None
    result = forecasts.guard(
        runtime_of(request), batch_id, next_cost=body.next_cost, max_age=max_age
    )
    return answer({**result.to_dict(), "exit_code": result.exit_code(strict=body.strict)})


@router.post(
    "/v1/batches/{batch_id:path}/outcomes",
    operation_id="record_outcomes",
    tags=["batches"],
    summary="Record one outcome, an array of them, or a JSON Lines stream",
    responses={
        200: {
            "description": "OK",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            answers(shape)["content"]["application/json"]["schema"]
                            for shape in (contract.RECORD, contract.IMPORT)
                        ]
                    }
                }
            },
        },
        **errors(404, 409, 413, 415),
    },
    dependencies=[SCOPED["record"]],
)
@streams_body
async def record_outcomes(
    request: Request,
    batch_id: BatchId,
    account: AccountFilter = None,
    snapshot: Annotated[
        bool, Query(description="One outcome: take a live failure snapshot on a 402.")
    ] = True,
) -> Response:
    """A JSON object is one outcome (idempotent on batch, job, attempt). A JSON array or
    ``application/x-ndjson`` is a bulk import: the first bad line stops it and is named
    in the problem's ``detail`` (``line N``, 1-based; for an array, its N-th element);
    every line before it is kept."""
    rt = runtime_of(request)
    known_account(rt, account)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in bodies.NDJSON_TYPES:
        imported = await _ingest_stream(rt, request, batch_id, account)
        return answer(imported.to_dict())
    if media != "application/json":
        return problem_response(UNSUPPORTED_MEDIA, "send application/json or application/x-ndjson")
    data = bodies.load_exact_json(await request.body())  # capped by the edge
    if isinstance(data, dict):
        recorded = await run(
            outcomes.record, rt, batch_id, data, snapshot=snapshot, account=account
        )
        return answer(recorded.to_dict())
    if isinstance(data, list):
        imported = await run(
            outcomes.record_many, rt, batch_id, bodies.as_lines(data), account=account
        )
        return answer(imported.to_dict())
    raise UsageError("the body must be one outcome (a JSON object) or a JSON array of them")


@router.post(
    "/v1/batches/{batch_id:path}/finish",
    operation_id="finish_batch",
    tags=["batches"],
    summary="Take a finish snapshot and report foreign consumption",
    responses={200: answers(contract.FINISH), **errors(404)},
    dependencies=[SCOPED["record"]],
)
def finish_batch(
    request: Request,
    batch_id: BatchId,
    snapshot: Annotated[bool, Query(description="Take a finish snapshot.")] = True,
) -> JSONResponse:
    return answer(batches.finish(runtime_of(request), batch_id, snapshot=snapshot).to_dict())


# (The reports router is included first: this route's {batch_id:path} would take
# ".../report" too.)
@router.get(
    "/v1/batches/{batch_id:path}",
    operation_id="show_batch",
    tags=["post-mortems"],
    summary="One batch: snapshots, outcome totals, tagged quota failures",
    responses={200: answers(contract.REPORT), **errors(404)},
    dependencies=[SCOPED["read"]],
)
def show_batch(request: Request, batch_id: BatchId) -> JSONResponse:
    return answer(batches.show(runtime_of(request), batch_id).to_dict())


@router.get(
    "/v1/batches",
    operation_id="list_batches",
    tags=["post-mortems"],
    summary="Recent batches, newest first",
    responses={200: answers(contract.LISTING, many=True), **errors()},
    dependencies=[SCOPED["read"]],
)
def list_batches(
    request: Request,
    since: Since = None,
    status: Annotated[BatchStatus | None, Query()] = None,
    account: AccountFilter = None,
) -> JSONResponse:
    found = batches.batches(
        runtime_of(request),
        since=parse_since(since),
        status=status.value if status else None,
        account=account,
    )
    return answer([item.to_dict() for item in found])


@router.get(
    "/v1/failures",
    operation_id="list_failures",
    tags=["post-mortems"],
    summary="Quota failures across batches, oldest first",
    responses={200: answers(contract.FAILURE, many=True), **errors()},
    dependencies=[SCOPED["read"]],
)
def list_failures(
    request: Request,
    since: Since = None,
    tag: Annotated[Tag | None, Query()] = None,
    account: AccountFilter = None,
) -> JSONResponse:
    found = batches.failures(
        runtime_of(request),
        since=parse_since(since),
        tag=tag.value if tag else None,
        account=account,
    )
    return answer([item.to_dict() for item in found])


async def _ingest_stream(rt: Runtime, request: Request, batch_id: str, account: str | None) -> Any:
    """Stream the body, line by line, into ``record_many`` in a worker thread."""
    chunks = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    def pull() -> bytes | None:
        return anyio.from_thread.run(next_chunk)

    def lines() -> Iterator[bytes]:
        return bodies.split_lines(pull, MAX_LINE_BYTES)

    try:
        return await run(outcomes.record_many, rt, batch_id, lines(), account=account)
    finally:
        # A bad line stops the import; read (and drop) the rest of what the client sends,
        # so that it gets the answer instead of a connection reset.
        try:
            while await next_chunk() is not None:
                pass
        except ClientDisconnect:
            pass
