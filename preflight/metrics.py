"""Prometheus metrics of every process that runs the verbs (server, worker, CLI).

The services and the vendor client call the small functions below at their boundary;
``preflight serve`` exposes the registry on ``GET /metrics`` and ``preflight worker`` on
``PREFLIGHT_METRICS_PORT``. A one-shot CLI command records into it too, and nobody scrapes
it: each update is a dictionary lookup and an addition, so that costs nothing to speak of.

Names follow Prometheus' conventions: the ``preflight_`` prefix, ``_total`` counters,
``_seconds`` histograms. No label carries a batch id or a job id (unbounded cardinality);
accounts and meters are configured, so few.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "REGISTRY",
    "CollectorRegistry",
    "VendorTimer",
    "audit_run",
    "balance_seen",
    "check_done",
    "http_request",
    "outcomes_counted",
    "outcomes_received",
    "quota_failures",
]

#: Vendor and HTTP latencies: from a loopback millisecond to a slow vendor's deadline.
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CHECKS = Counter("preflight_checks_total", "Checks answered, by verdict.", ["verdict"])
OUTCOMES = Counter(
    "preflight_outcomes_total",
    "Outcomes received (one or in bulk, repeats included), by status.",
    ["status"],
)
QUOTA_FAILURES = Counter(
    "preflight_quota_failures_total",
    "Quota failures recorded, by the tag they were given when recorded.",
    ["tag"],
)
VENDOR_REQUESTS = Counter(
    "preflight_vendor_requests_total",
    "Requests to the vendor's profile API (each attempt), by status class "
    "(2xx, 4xx, 5xx, or error: no response).",
    ["status_class"],
)
VENDOR_SECONDS = Histogram(
    "preflight_vendor_request_seconds",
    "Latency of one vendor request (one attempt), by status class.",
    ["status_class"],
    buckets=_BUCKETS,
)
BALANCE = Gauge(
    "preflight_balance",
    "The last balance read from the vendor, per account and meter.",
    ["account", "meter"],
)
AUDIT_RUNS = Counter(
    "preflight_audit_runs_total",
    "Audit runs per account and period, by result (ok, partial, auth_failed, skipped, ...).",
    ["result"],
)
FINDINGS = Counter("preflight_findings_total", "Audit findings reported, by kind.", ["kind"])
HTTP_REQUESTS = Counter(
    "preflight_http_requests_total",
    "Requests to the HTTP API, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "preflight_http_request_seconds",
    "Latency of the HTTP API, by route template and method.",
    ["route", "method"],
    buckets=_BUCKETS,
)


def check_done(verdict: str) -> None:
    CHECKS.labels(verdict=verdict).inc()


def outcomes_received(statuses: Iterable[str]) -> None:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    outcomes_counted(counts)


def outcomes_counted(counts: Mapping[str, int]) -> None:
    """Outcomes received, already counted by status (a bulk import counts as it reads)."""
    for status, count in counts.items():
        if count:
            OUTCOMES.labels(status=status).inc(count)


def quota_failures(tags: Mapping[str, int]) -> None:
    for tag, count in tags.items():
        QUOTA_FAILURES.labels(tag=tag).inc(count)


def balance_seen(account: str, meters: Mapping[str, Decimal | None]) -> None:
    for meter, value in meters.items():
        if value is not None:
            BALANCE.labels(account=account, meter=meter).set(float(value))


def audit_run(result: str, finding_kinds: Iterable[str]) -> None:
    AUDIT_RUNS.labels(result=result).inc()
    for kind in finding_kinds:
        FINDINGS.labels(kind=kind).inc()


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_SECONDS.labels(route=route, method=method).observe(seconds)


class VendorTimer:
    """Times one vendor request; ``status`` is set once a response's status is known."""

    __slots__ = ("started", "status")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.status: int | None = None

    def done(self) -> None:
        status_class = "error" if self.status is None else f"{self.status // 100}xx"
        VENDOR_REQUESTS.labels(status_class=status_class).inc()
        VENDOR_SECONDS.labels(status_class=status_class).observe(time.perf_counter() - self.started)
