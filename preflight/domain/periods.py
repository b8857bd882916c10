"""Audit periods: the same boundaries on every replica, whenever it started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from apscheduler.triggers.cron import CronTrigger

from preflight.domain.errors import ConfigError

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def period_start(now: datetime, *, interval: timedelta, cron: str | None = None) -> datetime:
    """The start of the period ``now`` falls in (UTC).

    With ``cron``: its most recent fire time at or before ``now``. Otherwise ``now``
    floored to a multiple of ``interval`` since the Unix epoch, so every replica computes
    the same periods (15m: :00, :15, :30, :45).
    """
    if cron:
        return _cron_period_start(cron, now)
    step = interval // _MICROSECOND
    elapsed = (now.astimezone(UTC) - _EPOCH) // _MICROSECOND
    return _EPOCH + timedelta(microseconds=elapsed - elapsed % step)


def _cron_period_start(expression: str, now: datetime) -> datetime:
    # Crontab arithmetic only (no scheduler runs): APScheduler's trigger parses it.
    trigger = CronTrigger.from_crontab(expression, timezone=UTC)
    # APScheduler 3 only looks forward: walk from a little before now, widening the
    # look-back until it holds a fire time (a yearly crontab needs a year).
    for look_back in (
        timedelta(hours=1),
        timedelta(days=2),
        timedelta(days=32),
        timedelta(days=400),
    ):
        latest: datetime | None = None
        fire: datetime | None = trigger.get_next_fire_time(None, now - look_back)
        while fire is not None and fire <= now:
            latest = fire
            fire = trigger.get_next_fire_time(fire, fire + _MICROSECOND)
        if latest is not None:
            return latest.astimezone(UTC)
    raise ConfigError(f"audit_cron {expression!r} has not fired in the last 400 days")
