"""Helpers and test doubles shared by several test modules; the fixtures that hand them out
are in ``tests/conftest.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from preflight.db import migrate
from preflight.db.session import build_engine

#: Where a :class:`Clock` starts unless told otherwise.
CLOCK_START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    """The time the code under test sees (``clock=``): it moves only when the test moves it,
    by setting :attr:`now` or with :meth:`advance`, so times and windows are exact."""

    def __init__(self, now: datetime = CLOCK_START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move on by ``timedelta(**delta)``; the new time."""
        self.now += timedelta(**delta)
        return self.now


def upgrade_schema(database_url: str) -> None:
    """Migrate the database to the newest revision, as ``preflight db upgrade`` does."""
    engine = build_engine(database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
