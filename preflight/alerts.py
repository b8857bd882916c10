"""Audit findings POSTed as JSON to an operator's webhook. Never fatal.

One POST per audit run that found something of the chosen kinds
(``PREFLIGHT_ALERT_KINDS``)::

    {"source": "preflight", "event": "audit_findings", "findings": [{"kind": ..., ...}]}

Each finding has the same fields as ``preflight findings --format json``. Delivery is
bounded: ``alert_attempts`` tries, each within ``alert_timeout`` seconds per phase (and
three times that in all, on the hardened transport of :mod:`preflight.transport`), with
exponential backoff between them, or the receiver's ``Retry-After``, retrying only what
can succeed later (transport errors, 5xx, 408, 429). A failure is logged as
``alert_failed`` and the audit goes on: the findings are stored either way and
``preflight findings`` lists them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from preflight.logs import get_logger
from preflight.secret import scrub
from preflight.settings import Settings
from preflight.transport import RetryPolicy, build_client, describe, request_deadline, retry_after

__all__ = ["send_alerts"]

log = get_logger("preflight.alerts")

_BACKOFF_BASE: Final = 0.5
_BACKOFF_MAX: Final = 4.0
_RETRYABLE: Final = frozenset({408, 429})
#: A request's phases (connect, send, answer), each within the timeout: its whole.
_PHASES: Final = 3


def _target(url: str) -> str:
    # Webhook URLs often carry their secret in the path or query: log the host only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def send_alerts(
    settings: Settings,
    findings: Sequence[Mapping[str, Any]],
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST the findings of the chosen kinds; True if delivered (or nothing to send)."""
    url = settings.alert_webhook_url
    chosen = [dict(f) for f in findings if f.get("kind") in settings.alert_kinds]
    if not url or not chosen:
        return True
    body = {"source": "preflight", "event": "audit_findings", "findings": chosen}
    target = _target(url)
    error = "not attempted"
    attempt = 0
    policy = RetryPolicy(
        attempts=settings.alert_attempts,
        deadline=settings.alert_timeout * _PHASES,
        backoff_base=_BACKOFF_BASE,
        backoff_max=_BACKOFF_MAX,
        retry_after_max=settings.retry_after_max,
    )
    try:
        with build_client(
            connect=settings.alert_timeout, read=settings.alert_timeout, transport=transport
        ) as client:
            delay = 0.0
            for attempt in range(1, policy.attempts + 1):
                if attempt > 1:
                    sleep(delay)
                delay = policy.backoff(attempt)
                try:
                    with request_deadline(policy.deadline):
                        response = client.post(url, json=body)
                except httpx.HTTPError as exc:
                    error = describe(exc)
                    continue
                if response.is_success:
                    log.info("alert_sent", target=target, findings=len(chosen), attempts=attempt)
                    return True
                error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in _RETRYABLE:
                    break  # the receiver refused this payload: sending it again will not help
                # The receiver asked for a time: it replaces the backoff (capped).
                asked = retry_after(response, policy.retry_after_max)
                delay = delay if asked is None else asked
    except Exception as exc:  # never fatal: an alert is a courtesy, the finding is stored
        error = f"{type(exc).__name__}: {scrub(str(exc))[:200]}"
    log.warning("alert_failed", target=target, findings=len(chosen), attempts=attempt, error=error)
    return False
