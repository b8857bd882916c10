"""Prometheus metrics of every process that runs the verbs (server, worker, CLI).

The services and the vendor client call the small functions below at their boundary;
``preflight serve`` exposes the registry on ``GET /metrics`` and ``preflight worker`` on
``PREFLIGHT_METRICS_PORT``. A one-shot CLI command records nothing (nobody could scrape
it): the CLI calls :func:`stop_recording`, and prometheus_client is never imported there.

Names follow Prometheus' conventions: the ``preflight_`` prefix, ``_total`` counters,
``_seconds`` histograms. No label carries a batch id or a job id (unbounded cardinality);
accounts and meters are configured, so few.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "VendorTimer",
    "audit_run",
    "balance_seen",
    "check_done",
    "http_request",
    "outcomes_counted",
    "outcomes_received",
    "quota_failures",
    "registry",
    "stop_recording",
]

#: Vendor and HTTP latencies: from a loopback millisecond to a slow vendor's deadline.
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_recording = True


def stop_recording() -> None:
    """Record nothing more in this process: a one-shot CLI command has no ``/metrics`` to
    serve, and importing prometheus_client alone costs a cold command ~35 ms."""
    global _recording
    _recording = False


def resume_recording() -> None:
    """Undo :func:`stop_recording` (for a process that runs commands in turn, e.g. tests)."""
    global _recording
    _recording = True


class _Metrics:
    """The metrics, built on first use (prometheus_client is imported then, not before)."""

    def __init__(self) -> None:
        # cold path: `preflight check` records nothing (prometheus_client costs ~35 ms)
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.registry = REGISTRY
        self.checks = Counter("preflight_checks_total", "Checks answered, by verdict.", ["verdict"])
        self.outcomes = Counter(
            "preflight_outcomes_total",
            "Outcomes received (one or in bulk, repeats included), by status.",
            ["status"],
        )
        self.quota_failures = Counter(
            "preflight_quota_failures_total",
            "Quota failures recorded, by the tag they were given when recorded.",
            ["tag"],
        )
        self.vendor_requests = Counter(
            "preflight_vendor_requests_total",
            "Requests to the vendor's balance API (each attempt), by status class "
            "(2xx, 4xx, 5xx, or error: no response).",
            ["status_class"],
        )
        self.vendor_seconds = Histogram(
            "preflight_vendor_request_seconds",
            "Latency of one vendor request (one attempt), by status class.",
            ["status_class"],
            buckets=_BUCKETS,
        )
        self.balance = Gauge(
            "preflight_balance",
            "The last balance read from the vendor, per account and meter.",
            ["account", "meter"],
        )
        self.audit_runs = Counter(
            "preflight_audit_runs_total",
            "Audit runs per account and period, by result (ok, partial, auth_failed, ...).",
            ["result"],
        )
        self.findings = Counter(
            "preflight_findings_total", "Audit findings reported, by kind.", ["kind"]
        )
        self.http_requests = Counter(
            "preflight_http_requests_total",
            "Requests to the HTTP API, by route template, method and status.",
            ["route", "method", "status"],
        )
        self.http_seconds = Histogram(
            "preflight_http_request_seconds",
            "Latency of the HTTP API, by route template and method.",
            ["route", "method"],
            buckets=_BUCKETS,
        )


_built: _Metrics | None = None
_building = threading.Lock()


def _metrics() -> _Metrics:
    """The process's one set of metrics, built by the first caller of any thread.

    A metric's name can be registered once per registry: two threads building at once
    (the first requests of a fresh server, threads sharing one ``Preflight``) would have
    the second fail with ``DuplicateTimeseries``. ``functools.cache`` does not prevent
    that (it may call the function twice), a lock does; after the first build the
    lock is never taken again.
    """
    global _built
    built = _built
    if built is None:
        with _building:
            built = _built
            if built is None:
                built = _built = _Metrics()
    return built


def registry() -> CollectorRegistry:
    """The registry ``GET /metrics`` and the worker's metrics port serve."""
    return _metrics().registry


def check_done(verdict: str) -> None:
    if _recording:
        _metrics().checks.labels(verdict=verdict).inc()


def outcomes_received(statuses: Iterable[str]) -> None:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    outcomes_counted(counts)


def outcomes_counted(counts: Mapping[str, int]) -> None:
    """Outcomes received, already counted by status (a bulk import counts as it reads)."""
    if not _recording:
        return
    for status, count in counts.items():
        if count:
            _metrics().outcomes.labels(status=status).inc(count)


def quota_failures(tags: Mapping[str, int]) -> None:
    if not _recording:
        return
    for tag, count in tags.items():
        _metrics().quota_failures.labels(tag=tag).inc(count)


def balance_seen(account: str, meters: Mapping[str, Decimal | None]) -> None:
    if not _recording:
        return
    for meter, value in meters.items():
        if value is not None:
            _metrics().balance.labels(account=account, meter=meter).set(float(value))


def audit_run(result: str, finding_kinds: Iterable[str]) -> None:
    if not _recording:
        return
    _metrics().audit_runs.labels(result=result).inc()
    for kind in finding_kinds:
        _metrics().findings.labels(kind=kind).inc()


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    if not _recording:
        return
    _metrics().http_requests.labels(route=route, method=method, status=str(status)).inc()
    _metrics().http_seconds.labels(route=route, method=method).observe(seconds)


class VendorTimer:
    """Times one vendor request; ``status`` is set once a response's status is known."""

    __slots__ = ("started", "status")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.status: int | None = None

    def done(self) -> None:
        if not _recording:
            return
        status_class = "error" if self.status is None else f"{self.status // 100}xx"
        measured = _metrics()
        measured.vendor_requests.labels(status_class=status_class).inc()
        measured.vendor_seconds.labels(status_class=status_class).observe(
            time.perf_counter() - self.started
        )
