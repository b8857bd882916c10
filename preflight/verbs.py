"""The verbs, declared once: each name, the service function that runs it locally, and
whether a preflight server serves it.

:class:`preflight.api.Preflight` runs every verb through this table: locally, the
function named here, imported and resolved once, on first use (a cold ``preflight check``
imports the check's service and nothing of the other verbs'); in remote mode, the method
of the same name of the remote client (:mod:`preflight.remote`), which imports no service
at all. tests/unit/test_verbs.py holds both remote clients and the facade to this table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

if TYPE_CHECKING:
    from preflight.services.profile import ProfileUpdate
    from preflight.services.results import (
        AccountTimeline,
        AuditOutcome,
        BatchListing,
        BatchReport,
        BatchTimeline,
        CheckResult,
        FailureView,
        FindingView,
        FinishResult,
        GuardResult,
        ImportResult,
        ProfileReading,
        RecordResult,
    )

__all__ = ["VERBS", "Verb", "local"]

R = TypeVar("R")


@dataclass(frozen=True)
class Verb(Generic[R]):
    """Where a verb runs locally (module, function: also the remote clients' method name),
    whether a server serves it, and (for the type checker) what it returns."""

    module: str
    function: str
    remote: bool = True


_CHECKS, _OUTCOMES, _BATCHES = (
    "preflight.services.checks",
    "preflight.services.outcomes",
    "preflight.services.batches",
)
CHECK: Final[Verb[CheckResult]] = Verb(_CHECKS, "check")
RECORD: Final[Verb[RecordResult]] = Verb(_OUTCOMES, "record")
RECORD_MANY: Final[Verb[ImportResult]] = Verb(_OUTCOMES, "record_many")
FINISH: Final[Verb[FinishResult]] = Verb(_BATCHES, "finish")
GUARD: Final[Verb[GuardResult]] = Verb("preflight.services.forecasts", "guard")
CLASSIFY: Final[Verb[dict[str, int]]] = Verb(_OUTCOMES, "classify")
SHOW: Final[Verb[BatchReport]] = Verb(_BATCHES, "show")
FAILURES: Final[Verb[list[FailureView]]] = Verb(_BATCHES, "failures")
BATCHES: Final[Verb[list[BatchListing]]] = Verb(_BATCHES, "batches")
FINDINGS: Final[Verb[list[FindingView]]] = Verb(_BATCHES, "findings")
RUN_AUDIT: Final[Verb[list[AuditOutcome]]] = Verb("preflight.services.audit", "run_audit")
READ_PROFILE: Final[Verb[ProfileReading]] = Verb("preflight.services.profile", "read_profile")
UPDATE_PROFILE: Final[Verb[ProfileUpdate]] = Verb("preflight.services.profile", "update_profile")
# The reports draw on the database's timeline: a server serves them as HTML, not as verbs.
BATCH_TIMELINE: Final[Verb[BatchTimeline]] = Verb(
    "preflight.services.reports", "batch_timeline", remote=False
)
ACCOUNT_TIMELINE: Final[Verb[AccountTimeline]] = Verb(
    "preflight.services.reports", "account_timeline", remote=False
)

#: Every verb by name.
VERBS: Final[Mapping[str, Verb[Any]]] = {
    verb.function: verb
    for verb in (
        CHECK,
        RECORD,
        RECORD_MANY,
        GUARD,
        FINISH,
        CLASSIFY,
        SHOW,
        FAILURES,
        BATCHES,
        FINDINGS,
        RUN_AUDIT,
        READ_PROFILE,
        UPDATE_PROFILE,
        BATCH_TIMELINE,
        ACCOUNT_TIMELINE,
    )
}


@cache
def local(name: str) -> Callable[..., Any]:
    """The service function of verb ``name``, its module imported on first use."""
    verb = VERBS[name]
    function: Callable[..., Any] = getattr(importlib.import_module(verb.module), verb.function)
    return function
