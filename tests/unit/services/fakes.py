"""The fake vendor behind ``httpx.MockTransport``, and the small steps the service tests share.

No socket is opened: :class:`FakeVendor` answers the requests of the vendor client in
process, so every request it saw can be asserted on (``vendor.requests``).
"""

from __future__ import annotations

import json
from collections import deque
from decimal import Decimal
from typing import Any, Final

import httpx
import sqlalchemy as sa

from preflight.db.models import Snapshot
from preflight.services import checks, outcomes
from preflight.services.results import RecordResult
from preflight.services.runtime import Runtime
from tests.support import Clock

PROFILE_PATH: Final = "/api/open/v1/profile"
TOKEN: Final = "unit-token"
TEAM_B_TOKEN: Final = "team-b-token"


class FakeVendor:
    """``GET``/``POST /api/open/v1/profile`` of one vendor account.

    ``credits`` / ``api_quota_remaining`` are the balance (None: the field is absent);
    :meth:`fail` queues answers that replace the next profile reads (402, 500, a
    malformed body ...). A wrong bearer token gets 401.
    """

    def __init__(
        self,
        token: str = TOKEN,
        *,
        credits: Decimal | str | None = "1000",
        api_quota_remaining: Decimal | str | None = None,
        user_id: str = "user-1",
    ) -> None:
        self.token = token
        self.credits = None if credits is None else Decimal(credits)
        self.api_quota_remaining = (
            None if api_quota_remaining is None else Decimal(api_quota_remaining)
        )
        self.user_id = user_id
        self.webhook_url: str | None = None
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.posted: list[dict[str, Any]] = []  # the JSON body of every accepted POST
        self._failures: deque[httpx.Response] = deque()
        self.transport = httpx.MockTransport(self.handle)

    # ------------------------------------------------------------ what a test changes

    def consume(self, amount: Decimal | str, meter: str = "credits") -> None:
        """Someone spends ``amount`` of ``meter`` (recorded by nobody unless a test says so)."""
        setattr(self, meter, getattr(self, meter) - Decimal(amount))

    def fail(self, status: int, body: str | None = None, *, times: int = 1) -> None:
        """The next ``times`` profile reads answer ``status`` with ``body`` (JSON by default)."""
        text = json.dumps({"message": f"HTTP {status} from the fake"}) if body is None else body
        for _ in range(times):
            self._failures.append(httpx.Response(status, text=text))

    @property
    def reads(self) -> int:
        """How many profile reads (GET) the vendor has answered."""
        return sum(1 for method, _ in self.requests if method == "GET")

    # ------------------------------------------------------------ the HTTP side

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.url.path != PROFILE_PATH:
            return httpx.Response(404, json={"message": "not found"})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"message": "invalid token"})
        if request.method == "POST":
            return self._update(json.loads(request.content))
        if self._failures:
            return self._failures.popleft()
        return httpx.Response(200, text=self._profile_body())

    def _update(self, fields: dict[str, Any]) -> httpx.Response:
        url = fields.get("webhookUrl")
        if not isinstance(url, str) or not url.startswith("https://"):
            return httpx.Response(422, json={"detail": [{"msg": "webhookUrl must use https"}]})
        self.posted.append(fields)
        self.webhook_url = url
        return httpx.Response(200, text=self._profile_body())

    def _profile_body(self) -> str:
        fields: dict[str, Any] = {"user_id": self.user_id, "tier": "pro"}
        if self.webhook_url is not None:
            fields["webhookUrl"] = self.webhook_url
        # Meters as JSON numbers, written out exactly (json.dumps has no Decimal).
        meters = [
            f'"{name}": {value}'
            for name, value in (
                ("credits", self.credits),
                ("api_quota_remaining", self.api_quota_remaining),
            )
            if value is not None
        ]
        return json.dumps(fields)[:-1] + "".join(f", {meter}" for meter in meters) + "}"


# ---------------------------------------------------------------- steps shared by the tests


def succeeded(
    rt: Runtime,
    batch_id: str,
    job_id: str,
    cost: str,
    vendor: FakeVendor | None = None,
    *,
    account: str | None = None,
) -> RecordResult:
    """Record a succeeded job of ``cost``; with ``vendor``, the vendor charges it too."""
    if vendor is not None:
        vendor.consume(cost)
    job = {"job_id": job_id, "status": "succeeded", "cost": cost}
    return outcomes.record(rt, batch_id, job, account=account)


def quota_failure(
    rt: Runtime, batch_id: str, job_id: str, *, account: str | None = None, **fields: Any
) -> RecordResult:
    """Record a failed job with HTTP 402 (a quota failure)."""
    job = {"job_id": job_id, "status": "failed", "http_status": 402, **fields}
    return outcomes.record(rt, batch_id, job, account=account)


def snapshot_row(rt: Runtime, snapshot_id: int | None) -> Snapshot:
    """The stored snapshot ``snapshot_id``."""
    assert snapshot_id is not None
    with rt.database.read() as session:
        return session.execute(sa.select(Snapshot).where(Snapshot.id == snapshot_id)).scalar_one()


def snapshot_kinds(rt: Runtime) -> list[tuple[str, str | None]]:
    """Every stored snapshot as (kind, credits), in the order taken."""
    with rt.database.read() as session:
        rows = session.execute(sa.select(Snapshot.kind, Snapshot.credits).order_by(Snapshot.id))
        return [(kind, None if credits is None else str(credits)) for kind, credits in rows]


def concurrent_failure(rt: Runtime, vendor: FakeVendor, clock: Clock) -> RecordResult:
    """The README's story, a minute a step: ``b`` is checked at credits 1000 (12:00), ``other``
    too (12:01); b spends 30 (12:02); other records 600 and 300 more goes unrecorded (12:03);
    b's next job fails with a 402 (12:04), its live failure snapshot reading 70."""
    checks.check(rt, "b", need="100")
    clock.advance(minutes=1)
    checks.check(rt, "other", need="700")
    clock.advance(minutes=1)
    succeeded(rt, "b", "j1", "30", vendor)
    clock.advance(minutes=1)
    succeeded(rt, "other", "o1", "600", vendor)
    vendor.consume("300")
    clock.advance(minutes=1)
    return quota_failure(rt, "b", "j2")
