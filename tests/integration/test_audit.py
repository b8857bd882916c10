"""The audit through the Python API, against the real sandbox vendor, on SQLite and PostgreSQL.

Time is a settable clock, so periods, leases and windows are exact and no test waits.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from preflight.api import Preflight
from preflight.db.models import (
    Account,
    AuditClaim,
    AuditRun,
    Batch,
    Finding,
    Snapshot,
)
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.services.audit import ALREADY_AUDITED, AUTH_SKIP
from preflight.settings import load_settings
from tests.support import Clock, cite_snapshots, upgrade_schema

PROFILE = "GET /api/open/v1/profile"
# One minute into a 15-minute period: a few minutes of work stay in the same period.
START = datetime(2026, 3, 2, 10, 1, tzinfo=UTC)


@pytest.fixture
def url(database_url: str) -> str:
    upgrade_schema(database_url)
    return database_url


@pytest.fixture
def clock_start() -> datetime:
    return START


AppFactory = Callable[..., Preflight]


@pytest.fixture
def make_app(url: str, sandbox: SandboxServer, clock: Clock) -> Iterator[AppFactory]:
    apps: list[Preflight] = []

    def make(token: str = DEFAULT_TOKEN, **env: str) -> Preflight:
        settings = load_settings(
            {
                "PREFLIGHT_DATABASE_URL": url,
                "PREFLIGHT_VENDOR_URL": sandbox.url,
                "PREFLIGHT_API_TOKEN": token,
                "PREFLIGHT_BACKOFF_BASE": "0.01",
                "PREFLIGHT_BACKOFF_MAX": "0.02",
                **{f"PREFLIGHT_{k.upper()}": v for k, v in env.items()},
            }
        )
        app = Preflight(settings, clock=clock)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: AppFactory) -> Preflight:
    return make_app()


def _count(app: Preflight, model: type[Any], *where: Any) -> int:
    with app.database.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


def _audit_snapshots(app: Preflight) -> int:
    return _count(app, Snapshot, Snapshot.kind == "audit")


# ---------------------------------------------------------------- once per period


def test_a_second_run_in_the_period_is_a_no_op_and_force_runs_anyway(
    app: Preflight, clock: Clock, sandbox: SandboxServer
) -> None:
    [first] = app.audit(replica="a")
    assert not first.skipped
    assert first.status == "ok"
    assert first.snapshot_id is not None
    assert first.period_start == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    clock.advance(minutes=5)
    [second] = app.audit(replica="b")
    assert second.skipped
    assert second.reason == ALREADY_AUDITED
    assert second.audit_run_id is None

    [forced] = app.audit(replica="b", force=True)
    assert not forced.skipped
    assert forced.snapshot_id != first.snapshot_id

    clock.advance(minutes=10)
    [next_period] = app.audit(replica="b")
    assert next_period.period_start == first.period_start + timedelta(minutes=15)
    assert not next_period.skipped
    assert sandbox.request_counts[PROFILE] == 3
    assert _count(app, AuditRun) == 3
    assert _audit_snapshots(app) == 3


def test_a_replica_whose_lease_lapsed_stops_writing(
    make_app: AppFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow, other = make_app(), make_app()
    real_vendor = slow.runtime.vendor
    taken_over: list[Any] = []

    class StalledVendor:
        def get_profile(self) -> Any:
            # While replica A waits on the vendor, its lease (2m) lapses and B takes over.
            clock.advance(minutes=3)
            taken_over.extend(other.audit(replica="replica-b"))
            return real_vendor().get_profile()

    monkeypatch.setattr(slow.runtime, "vendor", lambda _name=None: StalledVendor())
    [outcome] = slow.audit(replica="replica-a")
    assert outcome.skipped
    assert "lease" in (outcome.reason or "")
    [b_outcome] = taken_over
    assert b_outcome.takeover
    assert b_outcome.status == "ok"
    # A wrote nothing: one run, one audit snapshot, the claim done by B.
    assert _count(slow, AuditRun) == 1
    assert _audit_snapshots(slow) == 1
    with slow.database.read() as session:
        claim = session.scalars(sa.select(AuditClaim)).one()
        assert (claim.status, claim.holder) == ("done", "replica-b")


def test_stop_abandons_at_a_step_boundary_and_another_replica_takes_over(
    app: Preflight, make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    real_vendor = app.runtime.vendor

    class SignalledDuringFetch:
        def get_profile(self) -> Any:
            stop.set()  # SIGTERM arrives while the vendor call is in flight
            return real_vendor().get_profile()

    monkeypatch.setattr(app.runtime, "vendor", lambda _name=None: SignalledDuringFetch())
    [outcome] = app.audit(replica="a", stop=stop)
    assert outcome.skipped
    assert "abandoned" in (outcome.reason or "")
    assert _count(app, AuditRun) == 0
    assert _audit_snapshots(app) == 0
    assert _count(app, AuditClaim, AuditClaim.status == "abandoned") == 1

    [resumed] = make_app().audit(replica="b")
    assert resumed.takeover
    assert resumed.status == "ok"
    assert _count(app, AuditClaim, AuditClaim.status == "done") == 1


def test_a_lapsed_claim_of_an_earlier_period_is_completed_at_the_next_tick(
    app: Preflight, clock: Clock
) -> None:
    # Replica "dead" claimed the period and was killed before writing anything.
    with app.database.write() as session:
        account = Account(name="default", created_at=clock.now)
        session.add(account)
        session.flush()
        session.add(
            AuditClaim(
                account_id=account.id,
                period_start=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
                status="running",
                holder="dead:1:x",
                lease_expires_at=clock.now + timedelta(minutes=2),
                started_at=clock.now,
            )
        )
    [busy] = app.audit(replica="b")  # same period, lease still valid
    assert busy.skipped
    assert "another replica" in (busy.reason or "")
    clock.advance(minutes=15)
    current, recovered = app.audit(replica="b")
    assert current.period_start == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    assert recovered.period_start == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert recovered.takeover
    assert recovered.status == "ok"
    assert _count(app, AuditClaim, AuditClaim.status == "done") == 2
    assert _count(app, AuditRun) == 2


# ---------------------------------------------------------------- findings


def test_unexplained_consumption_has_the_exact_amount_and_window(
    app: Preflight, clock: Clock, sandbox: SandboxServer
) -> None:
    app.audit()  # the first audit snapshot
    clock.advance(minutes=1)
    check = app.check("render-1", need="300")
    clock.advance(minutes=1)
    sandbox.consume(Decimal("120"), "credits")  # the batch's own jobs...
    app.record("render-1", {"job_id": "j1", "status": "succeeded", "cost": "120"})
    sandbox.consume(Decimal("37.25"), "credits")  # ...and spend nobody recorded
    clock.advance(minutes=13)
    [second] = app.audit()

    [finding] = second.findings
    assert finding.to_dict()["kind"] == "unexplained_consumption"
    assert finding.to_dict()["amount"] == "37.25"
    assert finding.to_dict()["window_start"] == check.checked_at.isoformat()
    assert finding.to_dict()["window_end"] == clock.now.isoformat()
    assert finding.to_dict()["batches"] == ["render-1"]
    assert finding.to_dict()["detail"]["meter"] == "credits"
    assert finding.to_dict()["audit_run_id"] == second.audit_run_id

    # Spend that the batch recorded is not reported.
    clock.advance(minutes=1)
    sandbox.consume(Decimal("50"), "credits")
    app.record("render-1", {"job_id": "j2", "status": "succeeded", "cost": "50"})
    clock.advance(minutes=14)
    [third] = app.audit()
    assert third.findings == ()
    assert [f.to_dict()["amount"] for f in app.findings(kind="unexplained_consumption")] == [
        "37.25"
    ]


def test_a_late_inconclusive_failure_is_reclassified_once_the_audit_snapshot_exists(
    app: Preflight, clock: Clock, sandbox: SandboxServer
) -> None:
    app.check("late-1", need="100")  # b0 = 1200
    clock.advance(minutes=5)
    sandbox.consume(Decimal("1150"), "credits")  # another process spends it
    failed_at = clock.now
    clock.advance(minutes=10)
    line = {"job_id": "j1", "status": "failed", "http_status": 402, "at": failed_at.isoformat()}
    imported = app.record_many("late-1", [json.dumps(line)])
    assert imported.tags == {"inconclusive": 1}

    [outcome] = app.audit()
    assert outcome.steps["reclassify"] == {
        "ok": True,
        "batches": 1,
        "tags": {"concurrent_consumption": 1},
    }
    [failure] = [f.to_dict() for f in app.failures()]
    assert failure["tag"] == "concurrent_consumption"
    assert outcome.snapshot_id in failure["evidence"]["snapshot_ids"]


def test_stale_batches_are_reported_once_and_optionally_finished(
    make_app: AppFactory, clock: Clock
) -> None:
    app = make_app()
    app.check("forgotten", need="10")
    clock.advance(hours=7)
    [first] = app.audit()
    [stale] = [f for f in first.findings if f.to_dict()["kind"] == "stale_batch"]
    assert stale.to_dict()["batches"] == ["forgotten"]
    assert stale.to_dict()["amount"] is None
    clock.advance(minutes=15)
    [second] = app.audit()
    assert not [f for f in second.findings if f.to_dict()["kind"] == "stale_batch"]
    assert app.show("forgotten").to_dict()["status"] == "open"

    finishing = make_app(auto_finish_stale="true")
    clock.advance(minutes=15)
    finishing.audit()
    assert finishing.show("forgotten").to_dict()["status"] == "finished"
    assert len(app.findings(kind="stale_batch")) == 1


def test_low_balance_is_reported_when_it_becomes_low_not_every_tick(
    make_app: AppFactory, clock: Clock, sandbox: SandboxServer
) -> None:
    app = make_app(low_balance_threshold="1000")
    sandbox.set_balance(credits=Decimal("900"))
    [low] = app.audit()
    [finding] = low.findings
    assert (finding.to_dict()["kind"], finding.to_dict()["amount"]) == ("low_balance", "900")
    clock.advance(minutes=15)
    [still_low] = app.audit()
    assert still_low.findings == ()
    assert still_low.steps["low_balance"]["already_reported"]
    sandbox.set_balance(credits=Decimal("5000"))
    clock.advance(minutes=15)
    app.audit()
    sandbox.set_balance(credits=Decimal("800"))
    clock.advance(minutes=15)
    [low_again] = app.audit()
    assert [
        f.to_dict()["amount"] for f in low_again.findings if f.to_dict()["kind"] == "low_balance"
    ] == ["800"]


# ---------------------------------------------------------------- vendor errors


def test_a_rejected_token_is_loud_and_skipped_until_the_token_changes(
    make_app: AppFactory, clock: Clock, sandbox: SandboxServer
) -> None:
    bad = make_app(token="not-the-token-4711")
    with capture_logs() as logs:
        [failed] = bad.audit()
    assert failed.status == "auth_failed"
    [event] = [e for e in logs if e["event"] == "audit_auth_failed"]
    assert event["log_level"] == "error"
    fingerprint = failed.steps["snapshot"]["token_fingerprint"]
    assert fingerprint.startswith("sha256:")

    clock.advance(minutes=15)
    [skipped] = bad.audit()
    assert skipped.skipped
    assert skipped.reason == AUTH_SKIP
    assert sandbox.request_counts[PROFILE] == 1  # the bad token was not sent again

    clock.advance(minutes=15)
    [fixed] = make_app().audit()
    assert fixed.status == "ok"
    with bad.database.read() as session:
        stored = json.dumps([run.steps for run in session.scalars(sa.select(AuditRun))])
    assert "not-the-token-4711" not in stored


def test_a_vendor_outage_is_a_failed_step_not_a_crash(
    app: Preflight, sandbox: SandboxServer
) -> None:
    sandbox.inject({"status": 500, "count": -1})
    [outcome] = app.audit()
    assert outcome.status == "partial"
    assert not outcome.steps["snapshot"]["ok"]
    assert "HTTP 500" in outcome.steps["snapshot"]["error"]
    assert outcome.steps["retention"]["ok"]
    assert _count(app, AuditClaim, AuditClaim.status == "done") == 1


# ---------------------------------------------------------------- retention


def test_retention_thins_old_audit_snapshots_but_never_a_cited_one(
    app: Preflight, clock: Clock
) -> None:
    def snapshot(session: Any, account: Account, at: datetime, **extra: Any) -> int:
        row = Snapshot(
            account_id=account.id,
            kind=extra.pop("kind", "audit"),
            taken_at=at,
            credits=Decimal("1000"),
            raw="{}",
            http_status=200,
            latency_ms=1,
            **extra,
        )
        session.add(row)
        session.flush()
        return row.id

    old_hour = START - timedelta(days=40)
    old_day = (START - timedelta(days=300)).replace(hour=0, minute=0)
    with app.database.write() as session:
        account = Account(name="default", created_at=old_day)
        session.add(account)
        session.flush()
        batch = Batch(
            batch_id="old-batch",
            account_id=account.id,
            meter="credits",
            reserve=Decimal(0),
            status="finished",
            verified=True,
            labels={},
            created_at=old_hour,
            last_activity_at=old_hour,
        )
        session.add(batch)
        session.flush()
        first = snapshot(session, account, old_hour)
        extra = snapshot(session, account, old_hour + timedelta(minutes=15))
        cited = snapshot(session, account, old_hour + timedelta(minutes=30))
        batch_linked = snapshot(
            session, account, old_hour + timedelta(minutes=40), kind="preflight", batch_pk=batch.id
        )
        manual = snapshot(session, account, old_hour + timedelta(minutes=45), kind="manual")
        day_first = snapshot(session, account, old_day + timedelta(hours=1))
        day_extra = snapshot(session, account, old_day + timedelta(hours=5))
        cite_snapshots(session, batch.id, [cited], at=old_hour, tag="concurrent_consumption")

    [outcome_] = app.audit()
    assert outcome_.steps["retention"]["deleted"] == 2
    with app.database.read() as session:
        left = set(session.scalars(sa.select(Snapshot.id)))
    assert {first, cited, batch_linked, manual, day_first} <= left
    assert not left & {extra, day_extra}


# ---------------------------------------------------------------- alerts


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[Any] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Any]]]:
    bodies: list[Any] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/preflight", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_findings_are_posted_to_the_alert_webhook(
    make_app: AppFactory, clock: Clock, sandbox: SandboxServer, receiver: tuple[str, list[Any]]
) -> None:
    hook, bodies = receiver
    app = make_app(alert_webhook_url=hook, alert_kinds="unexplained_consumption")
    app.audit()
    sandbox.consume(Decimal("42"), "credits")
    clock.advance(minutes=15)
    [outcome] = app.audit()
    [body] = bodies
    assert body["event"] == "audit_findings"
    [posted] = body["findings"]
    assert posted["kind"] == "unexplained_consumption"
    assert posted["amount"] == "42"
    assert posted["audit_run_id"] == outcome.audit_run_id


def test_a_dead_alert_webhook_never_fails_the_audit(
    make_app: AppFactory, clock: Clock, sandbox: SandboxServer
) -> None:
    app = make_app(alert_webhook_url="http://127.0.0.1:9/dead", alert_attempts="1")
    app.audit()
    sandbox.consume(Decimal("42"), "credits")
    clock.advance(minutes=15)
    with capture_logs() as logs:
        [outcome] = app.audit()
    assert outcome.status == "ok"
    assert [f.to_dict()["amount"] for f in outcome.findings] == ["42"]
    assert [e["event"] for e in logs if e["event"] == "alert_failed"] == ["alert_failed"]
    assert _count(app, Finding) == 1
