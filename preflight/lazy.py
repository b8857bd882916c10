"""The modules :mod:`preflight.api` calls, each imported when first used.

The facade names every service module and the remote client, but a process runs a verb or
two: a cold ``preflight check`` needs neither the audit's nor the outcomes' modules (nor
the repositories and the ORM behind them), nor remote mode unless a server is configured.
Each name here stands for its module and imports it when an attribute of it is first read;
type checkers see the modules themselves.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

__all__ = [
    "audit",
    "batches",
    "checks",
    "forecasts",
    "outcomes",
    "profile",
    "remote",
    "reports",
    "results",
]


class LazyModule:
    """Stands for the module ``name`` and imports it on first attribute access."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


if TYPE_CHECKING:
    from preflight import remote
    from preflight.services import (
        audit,
        batches,
        checks,
        forecasts,
        outcomes,
        profile,
        reports,
        results,
    )
else:
    remote = LazyModule("preflight.remote")
    audit, batches, checks, forecasts, outcomes, profile, reports, results = (
        LazyModule(f"preflight.services.{name}")
        for name in (
            "audit",
            "batches",
            "checks",
            "forecasts",
            "outcomes",
            "profile",
            "reports",
            "results",
        )
    )
