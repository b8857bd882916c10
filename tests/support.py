"""Helpers and test doubles shared by several test modules; the fixtures that hand them out
are in ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

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


def cite_snapshots(
    session: Any, batch_pk: int, snapshot_ids: Iterable[int], *, at: datetime, tag: str
) -> None:
    """Store a quota failure of the batch, tagged, whose evidence cites ``snapshot_ids``
    (rows as the classifier would leave them): what retention must never delete."""
    from preflight.db.models import FailureTag, Outcome, TagSnapshot
    from preflight.domain.classify import CLASSIFIER_VERSION

    outcome = Outcome(
        batch_pk=batch_pk,
        job_id="j",
        attempt=1,
        status="failed",
        http_status=402,
        quota_failure=True,
        occurred_at=at,
        recorded_at=at,
    )
    session.add(outcome)
    session.flush()
    failure_tag = FailureTag(
        outcome_id=outcome.id,
        tag=tag,
        reason="test",
        evidence={},
        attribution=[],
        classifier_version=CLASSIFIER_VERSION,
        classified_at=at,
    )
    session.add(failure_tag)
    session.flush()
    for sid in snapshot_ids:
        session.add(TagSnapshot(tag_id=failure_tag.id, snapshot_id=sid))


def upgrade_schema(database_url: str) -> None:
    """Migrate the database to the newest revision, as ``preflight db upgrade`` does."""
    engine = build_engine(database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


class TcpProxy:
    """A loopback TCP proxy to ``upstream`` that a test can cut and restore, to simulate a
    database outage without touching the shared server.

    While cut, live connections are closed and new ones are accepted and closed at once
    (the client sees the server go away, as during a restart).
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket
        import threading

        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._live: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            live, self._live = self._live, []
        for sock in live:
            self._close(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stopping.set()
        self.cut()
        self._close(self._listener)
        self._acceptor.join(timeout=5)

    @staticmethod
    def _close(sock: object) -> None:
        import contextlib
        import socket

        assert isinstance(sock, socket.socket)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _accept(self) -> None:
        import socket
        import threading

        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                self._close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self._close(client)
                continue
            with self._lock:
                self._live += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: object, target: object) -> None:
        import socket

        assert isinstance(source, socket.socket)
        assert isinstance(target, socket.socket)
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(target)
