"""The HTTP API: the CLI's verbs over JSON, on the same services (``preflight serve``).

An edge beside the CLI: routes (:mod:`preflight.http.routes`, one module per area) parse
and authenticate, call :mod:`preflight.services` with the app's one
:class:`~preflight.services.runtime.Runtime`, and send the results' JSON form, declared
once in :mod:`preflight.contract`. Errors are RFC 9457 problem details
(:mod:`preflight.http.problems` holds the one status table, :mod:`preflight.http.handlers`
sends them). Handlers are plain functions run in the server's thread pool (the services
are synchronous); only the outcomes route is async, to stream a JSON Lines body into the
bulk import without reading it whole.

:func:`create_app` only assembles: the routers, the error handlers, the middleware and the
finished OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import anyio
from fastapi import FastAPI

from preflight.errors import PreflightError
from preflight.http import handlers
from preflight.http.edge import EdgeGuard
from preflight.http.middleware import RequestMetrics
from preflight.http.openapi import document
from preflight.http.routes import ROUTERS
from preflight.logs import get_logger
from preflight.services.runtime import Runtime

log = get_logger("preflight.http")


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
    handlers.install(app)
    # The edge runs before any route reads a body; the metrics, outermost, count its answers.
    app.add_middleware(EdgeGuard, runtime=runtime)
    app.add_middleware(RequestMetrics)
    for router in ROUTERS:
        # Their routes themselves, not include_router's one matcher in front of each router:
        # the edge picks a request's route before the app dispatches it.
        app.router.routes.extend(router.routes)
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
