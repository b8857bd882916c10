"""``preflight worker``: the audit on a schedule, in as many replicas as you like.

Each replica runs its own in-memory APScheduler 3 scheduler: APScheduler 3 cannot share
a job store between schedulers, so "once per tick" is not the scheduler's job. Every
tick calls :func:`preflight.audit.run_audit`, which claims the period in the database;
only the replica that wins the claim audits it (docs/audit.md).

Scheduler settings, on purpose:

- timezone UTC: periods and crontabs mean the same on every host;
- the interval trigger starts on a multiple of the interval since the epoch, so ticks
  fall right after each period starts, on every replica alike;
- ``coalesce=True``: ticks missed while a run was slow become one run, not a burst;
- ``max_instances=1``: a replica never overlaps itself (another replica can take the
  next period meanwhile);
- ``misfire_grace_time`` = half the period: a tick later than that belongs to a period
  that is nearly over; skip it rather than audit the wrong one late;
- job id ``preflight-audit`` with ``replace_existing``: one job, even if added twice;
- the first tick runs at start, so a fresh replica audits the current period if nobody has.

SIGTERM / SIGINT: no new ticks; a run in progress stops at its next step boundary and
gives its claim up as ``abandoned`` (nothing half-written: a run's rows are written in
one final transaction), another replica takes the period over, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import start_http_server

from preflight import metrics
from preflight.errors import PreflightError
from preflight.logs import get_logger
from preflight.services.audit import accounts_to_audit, current_period, replica_id, run_audit

if TYPE_CHECKING:
    from preflight.services.runtime import Runtime
    from preflight.settings import Settings

__all__ = ["JOB_ID", "build_trigger", "run_worker"]

log = get_logger("preflight.worker")

JOB_ID: Final = "preflight-audit"
# How often the main thread looks at signals received (the handler only records them).
_POLL_SECONDS: Final = 0.2


def build_trigger(settings: Settings, now: datetime) -> Any:
    """The APScheduler trigger for the settings: the crontab if set, else the interval."""

    if settings.audit_cron:
        return CronTrigger.from_crontab(settings.audit_cron, timezone=UTC)
    return IntervalTrigger(
        seconds=settings.audit_interval.total_seconds(),
        start_date=current_period(settings, now),
        timezone=UTC,
    )


def _period_length(trigger: Any, now: datetime) -> timedelta:
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1))
    return second - first if first and second else timedelta(minutes=1)


def _tick(rt: Runtime, replica: str, stop: threading.Event) -> None:
    if stop.is_set():
        return
    try:
        run_audit(rt, replica=replica, stop=stop)
    except PreflightError as exc:
        # The next tick tries again; the scheduler must outlive a database hiccup.
        log.error("audit_tick_failed", replica=replica, error=str(exc))
    except Exception as exc:
        log.error("audit_tick_failed", replica=replica, error=repr(exc), exc_info=True)


def run_worker(
    rt: Runtime,
    *,
    stop_event: threading.Event | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the audit on the configured schedule until ``stop_event`` is set or a signal comes.

    Signal handlers (SIGTERM, SIGINT) are installed when called from the main thread.
    Returns once the scheduler is shut down and any run in progress has ended.
    ``announce`` hears one line when the worker has started and one when it stopped,
    whatever the log level (the CLI prints them on stderr).
    """

    settings = rt.settings
    stop = stop_event or threading.Event()
    replica = replica_id()
    accounts = accounts_to_audit(settings)  # bad settings fail now, not at every tick
    rt.database  # noqa: B018 - a missing PostgreSQL schema fails now, too
    if settings.audit_lease.total_seconds() <= settings.deadline:
        log.warning(
            "audit_lease_short",
            lease_seconds=settings.audit_lease.total_seconds(),
            vendor_deadline_seconds=settings.deadline,
            hint="a lease shorter than a slow vendor call lets another replica take over",
        )
    if settings.log_level != "debug":
        # APScheduler logs every job start and end at INFO: noise at one tick a period.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    now = datetime.now(UTC)
    trigger = build_trigger(settings, now)
    grace = max(1, int(_period_length(trigger, now).total_seconds() / 2))
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        _tick,
        trigger,
        args=(rt, replica, stop),
        id=JOB_ID,
        name="preflight audit",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=grace,
        next_run_time=now,
    )

    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only a list append: a handler must not take a lock the interrupted code may hold.
        received.append(signum)

    if settings.metrics_port is not None:
        # The same registry `preflight serve` exposes on /metrics (audits, vendor calls).

        start_http_server(settings.metrics_port, registry=metrics.registry())
        log.info("metrics_serving", port=settings.metrics_port)

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    scheduler.start()
    log.info(
        "worker_started",
        replica=replica,
        accounts=accounts,
        schedule=settings.audit_cron or f"every {settings.audit_interval}",
        lease_seconds=settings.audit_lease.total_seconds(),
    )
    if announce is not None:
        schedule = settings.audit_cron or f"every {settings.audit_interval}"
        announce(
            f"preflight worker started: replica {replica}, accounts {', '.join(accounts)}, "
            f"{schedule}; stop with SIGTERM or Ctrl-C"
        )
    try:
        while not received and not stop.wait(_POLL_SECONDS):
            pass
    finally:
        stop.set()  # a run in progress abandons at its next step boundary
        scheduler.shutdown(wait=True)
        for restored, handler in previous.items():
            signal.signal(restored, signal.SIG_DFL if handler is None else handler)
        log.info(
            "worker_stopped",
            replica=replica,
            signal=signal.Signals(received[0]).name if received else None,
        )
        if announce is not None:
            announce(f"preflight worker stopped: replica {replica}")
