"""The HTTP API: the CLI's verbs over JSON, on the same services (``preflight serve``).

An edge beside the CLI: routes parse and authenticate, call :mod:`preflight.services` with
the app's one :class:`~preflight.services.runtime.Runtime`, and send the results'
``to_dict()``, the JSON every interface prints. Errors are RFC 9457 problem details
(:mod:`preflight.http.problems` holds the one status table). Handlers are plain functions
run in the server's thread pool (the services are synchronous); only the outcomes route is
async, to stream a JSON Lines body into the bulk import without reading it whole.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from importlib.metadata import version
from typing import Annotated, Any, Final, TypeVar

import anyio
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preflight import metrics
from preflight.domain.outcome import MAX_LINE_BYTES
from preflight.domain.verdict import exit_code
from preflight.errors import NotFoundError, PreflightError, UsageError
from preflight.http import bodies, schemas
from preflight.http.auth import AuthProblem, require, runtime_of
from preflight.http.edge import EdgeGuard, problem_response, streams_body
from preflight.http.openapi import document
from preflight.http.problems import (
    HTTP_KINDS,
    INTERNAL,
    UNSUPPORTED_MEDIA,
    VALIDATION,
    Kind,
    kind_of,
)
from preflight.logs import get_logger
from preflight.services import audit, batches, checks, outcomes, profile, reports, schema
from preflight.services.runtime import Runtime
from preflight.settings import parse_since as settings_parse_since

log = get_logger("preflight.http")

T = TypeVar("T")

BatchId = Annotated[str, Path(pattern=schemas.BATCH_ID_PATTERN, description="The batch id.")]
AccountFilter = Annotated[
    str | None, Query(pattern=schemas.ACCOUNT_PATTERN, description="Only this account.")
]
Since = Annotated[
    str | None,
    Query(max_length=64, description="Only newer: an ISO 8601 time, or a duration (24h, 7d)."),
]

#: Answers every authenticated route may give, besides its own (documented per route).
_COMMON: Final = (400, 401, 403, 422, 503)


def _errors(*extra: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": schemas.Problem} for status in sorted({*_COMMON, *extra})}


_problem_response = problem_response


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data)


async def _run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(partial(func, *args, **kwargs))


def _known_account(rt: Runtime, account: str | None) -> str | None:
    """``account`` if configured; NotFoundError (404) otherwise (None: the default)."""
    if account is not None and account not in rt.settings.accounts:
        raise NotFoundError(f"no account {account!r} is configured on this server")
    return account


def parse_since(value: str | None) -> datetime | None:
    """``since``: a duration back from now (24h, 7d) or an ISO 8601 time, as in the CLI."""
    return None if value is None else settings_parse_since(value, "since")


# ---------------------------------------------------------------- metrics middleware


class _Metrics:
    """preflight_http_requests_total / _seconds by route template (never a batch id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.http_request(route, scope["method"], status, time.perf_counter() - started)


# ---------------------------------------------------------------- the application


def create_app(runtime: Runtime, *, close_runtime: bool = False) -> FastAPI:
    """The API on ``runtime`` (its settings, database and vendor clients).

    ``close_runtime``: release the runtime when the server stops (``preflight serve``).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_warm_up, runtime)
        try:
            yield
        finally:
            if close_runtime:
                runtime.close()

    app = FastAPI(
        title="preflight",
        version=version("preflight"),
        summary="Batch preflight and balance snapshots for paid API jobs.",
        description=(
            "The CLI's verbs over JSON. Amounts are decimal strings, times ISO 8601 UTC. "
            "Errors are RFC 9457 problem details with a stable `type`. Every route but "
            "`/healthz` (and this document) needs `Authorization: Bearer <token>`, from "
            "`preflight token create`."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    _install_error_handlers(app)
    # The edge runs before any route reads a body; the metrics, outermost, count its answers.
    app.add_middleware(EdgeGuard, runtime=runtime)
    app.add_middleware(_Metrics)
    _routes(app)
    document(app)
    return app


def _warm_up(rt: Runtime) -> None:
    """Build the engine and the vendor clients once, before requests share them."""
    try:
        rt.database  # noqa: B018 - the engine, and the schema checked
    except PreflightError as exc:
        log.warning("database_not_ready", error=str(exc))
    for name, account in rt.settings.accounts.items():
        if account.token is not None:
            rt.vendor(name)


def _install_error_handlers(app: FastAPI) -> None:
    async def preflight_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PreflightError)
        kind = kind_of(exc)
        event = log.warning if kind.status >= 500 else log.info
        event("request_failed", status=kind.status, type=kind.type, error=str(exc))
        return _problem_response(kind, str(exc))

    async def auth_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthProblem)
        return _problem_response(exc.kind, exc.detail)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Never the input itself: it may be anything, secrets included.
        errors = [
            {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg"))}
            for error in exc.errors()
        ][:20]
        shown = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
        return _problem_response(VALIDATION, shown or "invalid request", errors=errors)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = HTTP_KINDS.get(exc.status_code) or Kind(exc.status_code, "http", "HTTP error")
        response = _problem_response(kind, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    async def internal_error(_request: Request, exc: Exception) -> Response:
        log.error("internal_error", error=type(exc).__name__, exc_info=exc)
        return _problem_response(INTERNAL, "internal error: the server log has the details")

    app.add_exception_handler(PreflightError, preflight_error)
    app.add_exception_handler(AuthProblem, auth_problem)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


def _routes(app: FastAPI) -> None:
    scoped = {scope: Depends(require(scope)) for scope in ("check", "record", "read", "audit")}

    # ------------------------------------------------------------ batch lifecycle

    @app.post(
        "/v1/batches/{batch_id:path}/check",
        operation_id="check_batch",
        tags=["batches"],
        summary="Snapshot the balance for a batch and answer go / no-go",
        responses={200: {"model": schemas.CheckOut}, **_errors(404, 413)},
        dependencies=[scoped["check"]],
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
            account=_known_account(rt, body.account),
            labels=body.labels,
        )
        data = result.to_dict()
        data["exit_code"] = exit_code(
            result.verdict, strict=body.strict, fail_open=result.fail_open
        )
        return _json(data)

    @app.post(
        "/v1/batches/{batch_id:path}/outcomes",
        operation_id="record_outcomes",
        tags=["batches"],
        summary="Record one outcome, an array of them, or a JSON Lines stream",
        responses={
            200: {"model": schemas.RecordOut | schemas.ImportOut},
            **_errors(404, 409, 413, 415),
        },
        dependencies=[scoped["record"]],
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
        _known_account(rt, account)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media in bodies.NDJSON_TYPES:
            imported = await _ingest_stream(rt, request, batch_id, account)
            return _json(imported.to_dict())
        if media != "application/json":
            return _problem_response(
                UNSUPPORTED_MEDIA, "send application/json or application/x-ndjson"
            )
        data = bodies.load_exact_json(await request.body())  # capped by the edge
        if isinstance(data, dict):
            recorded = await _run(
                outcomes.record, rt, batch_id, data, snapshot=snapshot, account=account
            )
            return _json(recorded.to_dict())
        if isinstance(data, list):
            imported = await _run(
                outcomes.record_many, rt, batch_id, bodies.as_lines(data), account=account
            )
            return _json(imported.to_dict())
        raise UsageError("the body must be one outcome (a JSON object) or a JSON array of them")

    @app.post(
        "/v1/batches/{batch_id:path}/finish",
        operation_id="finish_batch",
        tags=["batches"],
        summary="Take a finish snapshot and report foreign consumption",
        responses={200: {"model": schemas.FinishOut}, **_errors(404)},
        dependencies=[scoped["record"]],
    )
    def finish_batch(
        request: Request,
        batch_id: BatchId,
        snapshot: Annotated[bool, Query(description="Take a finish snapshot.")] = True,
    ) -> JSONResponse:
        return _json(batches.finish(runtime_of(request), batch_id, snapshot=snapshot).to_dict())

    # ------------------------------------------------------------ post-mortems

    # Registered before show_batch, whose {batch_id:path} would take ".../report" too.
    @app.get(
        "/v1/batches/{batch_id:path}/report",
        operation_id="batch_report",
        tags=["post-mortems"],
        summary="The batch's post-mortem as one self-contained HTML page (preflight report)",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}}, **_errors(404)},
        dependencies=[scoped["read"]],
    )
    def batch_report(request: Request, batch_id: BatchId) -> HTMLResponse:
        from preflight.report.render import render_batch

        return HTMLResponse(render_batch(reports.batch_timeline(runtime_of(request), batch_id)))

    @app.get(
        "/v1/accounts/{account}/report",
        operation_id="account_report",
        tags=["post-mortems"],
        summary="The account's balance, batches and findings over a period, as HTML",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}}, **_errors(404)},
        dependencies=[scoped["read"]],
    )
    def account_report(
        request: Request,
        account: Annotated[str, Path(pattern=schemas.ACCOUNT_PATTERN)],
        since: Since = None,
    ) -> HTMLResponse:
        from preflight.report.render import render_account

        rt = runtime_of(request)
        known = _known_account(rt, account)
        timeline = reports.account_timeline(rt, known, since=parse_since(since))  # default 7d
        return HTMLResponse(render_account(timeline))

    @app.get(
        "/v1/batches/{batch_id:path}",
        operation_id="show_batch",
        tags=["post-mortems"],
        summary="One batch: snapshots, outcome totals, tagged quota failures",
        responses={200: {"model": schemas.ReportOut}, **_errors(404)},
        dependencies=[scoped["read"]],
    )
    def show_batch(request: Request, batch_id: BatchId) -> JSONResponse:
        return _json(batches.show(runtime_of(request), batch_id).to_dict())

    @app.get(
        "/v1/batches",
        operation_id="list_batches",
        tags=["post-mortems"],
        summary="Recent batches, newest first",
        responses={200: {"model": list[schemas.ListingOut]}, **_errors()},
        dependencies=[scoped["read"]],
    )
    def list_batches(
        request: Request,
        since: Since = None,
        status: Annotated[schemas.StatusName | None, Query()] = None,
        account: AccountFilter = None,
    ) -> JSONResponse:
        found = batches.batches(
            runtime_of(request), since=parse_since(since), status=status, account=account
        )
        return _json([item.to_dict() for item in found])

    @app.get(
        "/v1/failures",
        operation_id="list_failures",
        tags=["post-mortems"],
        summary="Quota failures across batches, oldest first",
        responses={200: {"model": list[schemas.FailureOut]}, **_errors()},
        dependencies=[scoped["read"]],
    )
    def list_failures(
        request: Request,
        since: Since = None,
        tag: Annotated[schemas.TagName | None, Query()] = None,
        account: AccountFilter = None,
    ) -> JSONResponse:
        found = batches.failures(
            runtime_of(request), since=parse_since(since), tag=tag, account=account
        )
        return _json([item.to_dict() for item in found])

    @app.get(
        "/v1/findings",
        operation_id="list_findings",
        tags=["audit"],
        summary="Stored audit findings, oldest first",
        responses={200: {"model": list[schemas.FindingOut]}, **_errors()},
        dependencies=[scoped["read"]],
    )
    def list_findings(
        request: Request,
        since: Since = None,
        kind: Annotated[schemas.FindingKindName | None, Query()] = None,
        account: AccountFilter = None,
    ) -> JSONResponse:
        found = batches.findings(
            runtime_of(request), since=parse_since(since), kind=kind, account=account
        )
        return _json([item.to_dict() for item in found])

    # ------------------------------------------------------------ audit, classify, profile

    @app.post(
        "/v1/audit",
        operation_id="run_audit",
        tags=["audit"],
        summary="One audit run now, claiming the current period as the worker does",
        responses={200: {"model": list[schemas.AuditOut]}, **_errors(404, 413)},
        dependencies=[scoped["audit"]],
    )
    def run_audit(request: Request, body: schemas.AuditIn | None = None) -> JSONResponse:
        rt = runtime_of(request)
        body = body or schemas.AuditIn()
        ran = audit.run_audit(rt, account=_known_account(rt, body.account), force=body.force)
        return _json([item.to_dict() for item in ran])

    @app.post(
        "/v1/classify",
        operation_id="classify",
        tags=["audit"],
        summary="Rerun the classifier over stored quota failures (one batch, or all)",
        responses={200: {"model": schemas.ClassifyOut}, **_errors(404, 413)},
        dependencies=[scoped["audit"]],
    )
    def classify(request: Request, body: schemas.ClassifyIn | None = None) -> JSONResponse:
        body = body or schemas.ClassifyIn()
        counts = outcomes.classify(
            runtime_of(request), body.batch_id, only_inconclusive=body.only_inconclusive
        )
        return _json({"classified": sum(counts.values()), "tags": counts})

    @app.get(
        "/v1/accounts/{account}/profile",
        operation_id="read_profile",
        tags=["audit"],
        summary="Read the vendor profile now (kept as a manual snapshot)",
        responses={200: {"model": schemas.ProfileOut}, **_errors(404, 502)},
        dependencies=[scoped["read"]],
    )
    def read_profile(
        request: Request, account: Annotated[str, Path(pattern=schemas.ACCOUNT_PATTERN)]
    ) -> JSONResponse:
        rt = runtime_of(request)
        reading = profile.read_profile(rt, _known_account(rt, account))
        return _json(reading.to_dict())

    # ------------------------------------------------------------ operations

    @app.get(
        "/healthz",
        operation_id="healthz",
        tags=["operations"],
        summary="The process is alive (no token needed)",
        responses={200: {"model": schemas.Health}},
    )
    def healthz() -> JSONResponse:
        return _json({"status": "ok"})

    @app.get(
        "/readyz",
        operation_id="readyz",
        tags=["operations"],
        summary="The database is reachable and its schema at head",
        responses={200: {"model": schemas.Ready}, **_errors()},
        dependencies=[Depends(require(None))],
    )
    def readyz(request: Request) -> JSONResponse:
        revision = schema.ready_revision(runtime_of(request))
        return _json({"status": "ready", "schema_revision": revision})

    async def metrics_access(request: Request) -> None:
        if not runtime_of(request).settings.metrics_public:
            await require("metrics")(request, _bearer_of(request))

    @app.get(
        "/metrics",
        operation_id="metrics",
        tags=["operations"],
        summary="Prometheus metrics (the metrics scope, unless PREFLIGHT_METRICS_PUBLIC)",
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(),
        },
        response_class=Response,
        dependencies=[Depends(metrics_access)],
    )
    def metrics_route() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry()), media_type=CONTENT_TYPE_LATEST)


def _bearer_of(request: Request) -> Any:
    from fastapi.security.utils import get_authorization_scheme_param

    scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
    if not scheme or not credentials:
        return None
    from fastapi.security import HTTPAuthorizationCredentials

    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


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
        return await _run(outcomes.record_many, rt, batch_id, lines(), account=account)
    finally:
        # A bad line stops the import; read (and drop) the rest of what the client sends,
        # so that it gets the answer instead of a connection reset.
        try:
            while await next_chunk() is not None:
                pass
        except ClientDisconnect:
            pass
