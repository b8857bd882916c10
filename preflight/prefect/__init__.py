"""Prefect integration (extra ``prefect``): a connection Block, a gate task, a wait for
top-up, outcomes recorded by task hooks, a retry condition. See docs/orchestrators.md.

- :class:`PreflightConnection`: a Block (``url`` of a ``preflight serve``, ``token``,
  ``account``); no ``url`` is local mode, configured from ``PREFLIGHT_*`` as the CLI;
- tasks :data:`preflight_check`, :data:`wait_for_balance`, :data:`preflight_finish`;
- hooks :func:`record_on_completion` and :func:`record_on_failure` for
  ``@task(on_completion=[...], on_failure=[...])``; :func:`retry_if_unavailable` for
  ``@task(retry_condition_fn=...)``, and :func:`record_and_retry`, a retry condition that
  records each failed attempt Prefect retries.

Listed to Prefect by the ``prefect.collections`` entry point.
"""

from __future__ import annotations

from preflight.integrations.gate import (
    AtRisk,
    AuthFailed,
    BillingBlocked,
    GateClosed,
    InsufficientBalance,
    PreflightUnavailable,
)
from preflight.prefect.blocks import PreflightConnection
from preflight.prefect.hooks import (
    record_and_retry,
    record_on_completion,
    record_on_failure,
    retry_if_unavailable,
)
from preflight.prefect.tasks import (
    BalanceTimeout,
    preflight_check,
    preflight_finish,
    wait_for_balance,
)

__all__ = [
    "AtRisk",
    "AuthFailed",
    "BalanceTimeout",
    "BillingBlocked",
    "GateClosed",
    "InsufficientBalance",
    "PreflightConnection",
    "PreflightUnavailable",
    "preflight_check",
    "preflight_finish",
    "record_and_retry",
    "record_on_completion",
    "record_on_failure",
    "retry_if_unavailable",
    "wait_for_balance",
]
