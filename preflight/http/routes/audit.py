"""The audit over HTTP: run it now, rerun the classifier, list its findings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from preflight import contract
from preflight.domain.vocabulary import FindingKind
from preflight.http import schemas
from preflight.http.auth import runtime_of
from preflight.http.routes.common import (
    SCOPED,
    AccountFilter,
    Since,
    answer,
    answers,
    errors,
    known_account,
    parse_since,
)
from preflight.services import audit, batches, outcomes

router = APIRouter()


@router.get(
    "/v1/findings",
    operation_id="list_findings",
    tags=["audit"],
    summary="Stored audit findings, oldest first",
    responses={200: answers(contract.FINDING, many=True), **errors()},
    dependencies=[SCOPED["read"]],
)
def list_findings(
    request: Request,
    since: Since = None,
    kind: Annotated[FindingKind | None, Query()] = None,
    account: AccountFilter = None,
) -> JSONResponse:
    found = batches.findings(
        runtime_of(request),
        since=parse_since(since),
        kind=kind.value if kind else None,
        account=account,
    )
    return answer([item.to_dict() for item in found])


@router.post(
    "/v1/audit",
    operation_id="run_audit",
    tags=["audit"],
    summary="One audit run now, claiming the current period as the worker does",
    responses={200: answers(contract.AUDIT, many=True), **errors(404, 413)},
    dependencies=[SCOPED["audit"]],
)
def run_audit(request: Request, body: schemas.AuditIn | None = None) -> JSONResponse:
    rt = runtime_of(request)
    body = body or schemas.AuditIn()
    ran = audit.run_audit(rt, account=known_account(rt, body.account), force=body.force)
    return answer([item.to_dict() for item in ran])


@router.post(
    "/v1/classify",
    operation_id="classify",
    tags=["audit"],
    summary="Rerun the classifier over stored quota failures (one batch, or all)",
    responses={200: {"model": schemas.ClassifyOut}, **errors(404, 413)},
    dependencies=[SCOPED["audit"]],
)
def classify(request: Request, body: schemas.ClassifyIn | None = None) -> JSONResponse:
    body = body or schemas.ClassifyIn()
    counts = outcomes.classify(
        runtime_of(request), body.batch_id, only_inconclusive=body.only_inconclusive
    )
    return answer({"classified": sum(counts.values()), "tags": counts})
