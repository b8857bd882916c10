"""One call's ride through a database outage: a window that opens once and closes on time.

A call (one transaction, or a unit of work re-run from the start) retries transient
connection errors with backoff for ``PREFLIGHT_DATABASE_OUTAGE_WINDOW``. The window opens
at the first transient failure the call meets and is the same for everything the call
retries: opening a transaction, and re-running work whose connection broke midway. No
sleep goes past its end, so the call gives up at the window's end (plus the one last
attempt), not a window later: a work re-run used to open a fresh window for its
transaction, and the last backoff overshot the end by up to its 2 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

#: Backoff between attempts: 0.1 s doubling, at most this.
MAX_BACKOFF_SECONDS: Final = 2.0


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
    return float(min(0.1 * 2**attempt, MAX_BACKOFF_SECONDS))


class Outage:
    """The outage window of one call; the clock and the sleep are injectable (tests)."""

    __slots__ = ("_deadline", "_monotonic", "_sleep", "_window", "attempts")

    def __init__(
        self, window: float, *, monotonic: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._window = window
        self._monotonic = monotonic
        self._sleep = sleep
        self._deadline: float | None = None
        #: Transient failures met so far.
        self.attempts = 0

    def retry(self) -> bool:
        """After a transient failure: wait before the next attempt and say True, or say
        False (give up) when the window has closed."""
        now = self._monotonic()
        if self._deadline is None:
            self._deadline = now + self._window
        remaining = self._deadline - now
        if remaining <= 0:
            return False
        self._sleep(min(backoff(self.attempts), remaining))
        self.attempts += 1
        return True
