"""What the concurrency suite shares: a gate that releases K checks together, the stored
rows of one account, and the oracle that replays its checks one after another.

The gate is a barrier where every check has to pass anyway: the vendor's profile read,
which a check makes outside its write transaction, right before it. Threads, CLI processes
and server replicas all read the profile through it, so K checks reach their write
transactions at the same moment however they were started; nothing waits on a clock.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa

from preflight.domain.verdict import NO_GO, Verdict, assess, outstanding_need

T = TypeVar("T")

#: How long a barrier waits for the last party before the round fails (a broken barrier,
#: never a hang): K CLI processes have to start on a busy two-core machine first.
BARRIER_TIMEOUT = 180.0

PROFILE_PATH = "/api/open/v1/profile"


class VendorGate:
    """A loopback proxy in front of the sandbox vendor. Once :meth:`arm`-ed for K parties,
    each profile read waits until K parties have arrived (profile reads, and threads of the
    test calling :meth:`wait`), then all go on at once. Unarmed, it just forwards."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._barrier: threading.Barrier | None = None
        self._lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Silent, as the sandbox itself."""

            def do_GET(self) -> None:
                if urlsplit(self.path).path == PROFILE_PATH:
                    gate.wait()
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(*gate._upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in {"content-length", "connection", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def arm(self, parties: int) -> None:
        """Hold the next ``parties`` arrivals until the last of them comes."""
        with self._lock:
            self._barrier = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)

    def disarm(self) -> None:
        with self._lock:
            self._barrier = None

    def wait(self) -> None:
        """Arrive at the barrier (a no-op when unarmed)."""
        with self._lock:
            barrier = self._barrier
        if barrier is not None:
            barrier.wait()

    def __enter__(self) -> VendorGate:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._barrier is not None:
            self._barrier.abort()  # a round that failed midway releases its waiters
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def run_together(calls: Sequence[Callable[[], T]], *, timeout: float = 300) -> list[T]:
    """Run each call in a thread of its own; their results in order, or the first error.

    The calls synchronise themselves (through a :class:`VendorGate` they meet); ``timeout``
    only turns a deadlock into a failure instead of a hung suite."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            results[index] = call()
        except BaseException as error:  # reported to the test below
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = sum(thread.is_alive() for thread in threads)
    assert not stuck, f"{stuck} of {len(threads)} calls still running after {timeout} s"
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------- the stored rows


@dataclass(frozen=True)
class StoredCheck:
    """One checked batch as stored: what its check read and decided, and when (the id of
    its preflight snapshot: ids are handed out inside the check's write transaction)."""

    batch_id: str
    snapshot_id: int
    balance: Decimal
    need: Decimal
    reserve: Decimal
    verdict: Verdict


@dataclass(frozen=True)
class AccountRows:
    held_need: Decimal
    #: Sum of max(need − consumed cost, 0) over the account's open batches with a need.
    outstanding: Decimal
    checks: tuple[StoredCheck, ...]  # in the order the database serialised them


def _amount(value: object) -> Decimal:
    return Decimal(str(value))


@contextmanager
def _connection(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def account_rows(url: str, account: str, *, batch_prefix: str = "") -> AccountRows:
    """The account's held need, its open batches' outstanding need, and the checks of its
    batches whose id starts with ``batch_prefix``, ordered by their preflight snapshot."""
    with _connection(url) as connection:
        held = connection.execute(
            sa.text("SELECT held_need FROM accounts WHERE name = :name"), {"name": account}
        ).scalar_one()
        batches = connection.execute(
            sa.text(
                "SELECT b.batch_id, b.need, b.reserve, b.status, b.verdict, b.consumed_cost,"
                " s.id, s.credits FROM batches AS b JOIN accounts AS a ON a.id = b.account_id"
                " LEFT JOIN snapshots AS s ON s.batch_pk = b.id AND s.kind = 'preflight'"
                " WHERE a.name = :name"
            ),
            {"name": account},
        ).all()
    outstanding = sum(
        (
            outstanding_need(_amount(need), _amount(consumed))
            for _, need, _, status, _, consumed, _, _ in batches
            if status == "open" and need is not None
        ),
        Decimal(0),
    )
    checks = sorted(
        (
            StoredCheck(
                batch_id,
                snapshot,
                _amount(credits),
                _amount(need),
                _amount(reserve),
                Verdict(verdict),
            )
            for batch_id, need, reserve, _, verdict, _, snapshot, credits in batches
            if snapshot is not None and need is not None and batch_id.startswith(batch_prefix)
        ),
        key=lambda check: check.snapshot_id,
    )
    return AccountRows(_amount(held), outstanding, tuple(checks))


def replay(checks: Sequence[StoredCheck], *, held_before: Decimal) -> dict[str, Verdict]:
    """The verdicts of these checks (new batches, no outcomes yet) decided one after another
    in the given order, by the domain's own rule: each sees what the account held before the
    round plus the need of every earlier check that let its batch go ahead."""
    held = held_before
    verdicts: dict[str, Verdict] = {}
    for check in checks:
        verdict = assess(check.balance, check.need, check.reserve, held).verdict
        verdicts[check.batch_id] = verdict
        if verdict not in NO_GO:
            held += outstanding_need(check.need, Decimal(0))
    return verdicts


def assert_serialised(
    url: str, account: str, answered: dict[str, Verdict], *, batch_prefix: str, held_before: Decimal
) -> AccountRows:
    """The round's properties: every check answered what it stored; the stored verdicts are
    those of the same checks run one after another in the order the database serialised
    them; the account's held need is the sum of its open batches' outstanding need."""
    rows = account_rows(url, account, batch_prefix=batch_prefix)
    stored = {check.batch_id: check.verdict for check in rows.checks}
    assert stored == answered
    assert stored == replay(rows.checks, held_before=held_before)
    assert rows.held_need == rows.outstanding
    return rows
