"""uvicorn as `preflight serve` runs it: slow clients are timed out.

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``: ``PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT``), but it has no timeout on
reading a request's headers: a connection that sends half its headers, or nothing, stays
open for good, and a few thousand of them exhaust the server's file descriptors. The
protocol below adds one (``PREFLIGHT_HTTP_HEADER_TIMEOUT``): from the moment a connection
is made, or the first byte of a next request arrives on a kept-alive one, the request's
headers must be complete within the timeout, else the connection is closed. It subclasses
uvicorn's h11 protocol (the pure-Python parser uvicorn always ships), so
`preflight serve` speaks HTTP/1.1 through h11 whether or not httptools is installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from preflight.logs import get_logger
from preflight.settings import Settings

log = get_logger("preflight.http")


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers."""

    #: Seconds a request's headers may take; set by :func:`uvicorn_config`'s subclass.
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            # Closed, or the headers are complete (the request is in progress): the
            # body and the response are the application's business.
            self._disarm_header_deadline()
        else:
            # Bytes of a request's head (or the tail of a body nobody read): the head
            # must now be complete in time. uvicorn's keep-alive timer was just cancelled.
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout, self._header_deadline_passed
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.debug("http_header_timeout", client=str(self.client))
        self.transport.close()


def uvicorn_config(
    app: Any, settings: Settings, *, host: str, port: int, **extra: Any
) -> uvicorn.Config:
    """The uvicorn ``Config`` of `preflight serve` (and of the tests' live server)."""

    class Protocol(HeaderDeadlineProtocol):
        header_timeout = settings.http_header_timeout

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=Protocol,
        timeout_keep_alive=settings.http_keep_alive_timeout,
        **extra,
    )
