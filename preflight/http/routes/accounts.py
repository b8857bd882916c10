"""An account's vendor profile, read now (kept as a manual snapshot)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from preflight import contract
from preflight.http.auth import runtime_of
from preflight.http.routes.common import SCOPED, AccountName, answer, answers, errors, known_account
from preflight.services import profile

router = APIRouter()


@router.get(
    "/v1/accounts/{account}/profile",
    operation_id="read_profile",
    tags=["audit"],
    summary="Read the vendor profile now (kept as a manual snapshot)",
    responses={200: answers(contract.PROFILE), **errors(404, 502)},
    dependencies=[SCOPED["read"]],
)
def read_profile(request: Request, account: AccountName) -> JSONResponse:
    rt = runtime_of(request)
    reading = profile.read_profile(rt, known_account(rt, account))
    return answer(reading.to_dict())
