"""Celery integration (extra ``celery``): a gate before the chord, outcomes where the paid
call happens, the batch finished by the chord's callback. See docs/orchestrators.md.

- :class:`PreflightTask`: a ``celery.Task`` base class whose ``on_success`` /
  ``on_retry`` / ``on_failure`` record each attempt's outcome;
- :data:`preflight_gate`: a task that checks the batch and raises
  :class:`InsufficientBalance`, :class:`AuthFailed` … on a no-go (never retried), or
  :class:`PreflightUnavailable` (retried with backoff);
- :data:`preflight_finish`: a chord callback that finishes the batch, and
  :data:`preflight_finish_on_error`: its error callback, which finishes the batch when a
  header task failed (Celery then skips the callback).

Local mode, or remote mode with ``PREFLIGHT_SERVER_URL`` / ``PREFLIGHT_SERVER_TOKEN``, as the
CLI; or any :class:`~preflight.api.Preflight` given by the app's ``preflight_client`` setting.
"""

from __future__ import annotations

from preflight.celery.tasks import (
    PREFLIGHT_BATCH,
    PreflightClientTask,
    PreflightTask,
    preflight_finish,
    preflight_finish_on_error,
    preflight_gate,
)
from preflight.integrations.gate import (
    AtRisk,
    AuthFailed,
    BillingBlocked,
    GateClosed,
    InsufficientBalance,
    PreflightUnavailable,
)

__all__ = [
    "PREFLIGHT_BATCH",
    "AtRisk",
    "AuthFailed",
    "BillingBlocked",
    "GateClosed",
    "InsufficientBalance",
    "PreflightClientTask",
    "PreflightTask",
    "PreflightUnavailable",
    "preflight_finish",
    "preflight_finish_on_error",
    "preflight_gate",
]
