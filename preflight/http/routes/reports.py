"""The post-mortem pages: a batch's, an account's, as self-contained HTML."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from preflight.http.auth import runtime_of
from preflight.http.routes.common import (
    SCOPED,
    AccountName,
    BatchId,
    Since,
    errors,
    known_account,
    parse_since,
)
from preflight.report.render import render_account, render_batch
from preflight.services import reports

router = APIRouter()

_HTML: dict[str, Any] = {"content": {"text/html": {}}}


@router.get(
    "/v1/batches/{batch_id:path}/report",
    operation_id="batch_report",
    tags=["post-mortems"],
    summary="The batch's post-mortem as one self-contained HTML page (preflight report)",
    response_class=HTMLResponse,
    responses={200: _HTML, **errors(404)},
    dependencies=[SCOPED["read"]],
)
def batch_report(request: Request, batch_id: BatchId) -> HTMLResponse:
    return HTMLResponse(render_batch(reports.batch_timeline(runtime_of(request), batch_id)))


@router.get(
    "/v1/accounts/{account}/report",
    operation_id="account_report",
    tags=["post-mortems"],
    summary="The account's balance, batches and findings over a period, as HTML",
    response_class=HTMLResponse,
    responses={200: _HTML, **errors(404)},
    dependencies=[SCOPED["read"]],
)
def account_report(request: Request, account: AccountName, since: Since = None) -> HTMLResponse:
    rt = runtime_of(request)
    known = known_account(rt, account)
    timeline = reports.account_timeline(rt, known, since=parse_since(since))  # default 7d
    return HTMLResponse(render_account(timeline))
