"""The API's routes, one router per area. Order matters once: the reports router comes
before the batches router, whose ``/v1/batches/{batch_id:path}`` would take
``.../report`` too."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter

from preflight.http.routes import accounts, audit, batches, health, reports

ROUTERS: Final[tuple[APIRouter, ...]] = (
    reports.router,
    batches.router,
    audit.router,
    accounts.router,
    health.router,
)
