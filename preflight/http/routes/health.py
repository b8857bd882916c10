"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from preflight import metrics
from preflight.http import schemas
from preflight.http.auth import require, runtime_of
from preflight.http.routes.common import answer, errors
from preflight.services import schema

router = APIRouter()


@router.get(
    "/healthz",
    operation_id="healthz",
    tags=["operations"],
    summary="The process is alive (no token needed)",
    responses={200: {"model": schemas.Health}},
)
def healthz() -> JSONResponse:
    return answer({"status": "ok"})


@router.get(
    "/readyz",
    operation_id="readyz",
    tags=["operations"],
    summary="The database is reachable and its schema at head",
    responses={200: {"model": schemas.Ready}, **errors()},
    dependencies=[Depends(require(None))],
)
def readyz(request: Request) -> JSONResponse:
    revision = schema.ready_revision(runtime_of(request))
    return answer({"status": "ready", "schema_revision": revision})


def _bearer_of(request: Request) -> Any:
    scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
    if not scheme or not credentials:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


async def _metrics_access(request: Request) -> None:
    if not runtime_of(request).settings.metrics_public:
        await require("metrics")(request, _bearer_of(request))


@router.get(
    "/metrics",
    operation_id="metrics",
    tags=["operations"],
    summary="Prometheus metrics (the metrics scope, unless PREFLIGHT_METRICS_PUBLIC)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors()},
    response_class=Response,
    dependencies=[Depends(_metrics_access)],
)
def metrics_route() -> Response:
    return Response(generate_latest(metrics.registry()), media_type=CONTENT_TYPE_LATEST)
