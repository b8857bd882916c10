"""The audit's pure parts: periods, unexplained consumption, runway, retention, settings, alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from structlog.testing import capture_logs

from preflight.alerts import send_alerts
from preflight.domain.audit import (
    FindingKind,
    Point,
    RecordedCost,
    low_balance,
    retention_doomed,
    unexplained_consumption,
)
from preflight.errors import ConfigError, UsageError
from preflight.services.audit import accounts_to_audit, current_period, token_fingerprint
from preflight.services.profile import validate_webhook_url
from preflight.settings import FINDING_KINDS, Settings, load_settings

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _settings(**env: str) -> Settings:
    return load_settings({"PREFLIGHT_DATABASE_URL": "sqlite://", **env})


def _point(sid: int, minutes: float, credits: str | None, quota: str | None = None) -> Point:
    return Point(
        sid,
        T0 + timedelta(minutes=minutes),
        {
            "credits": None if credits is None else Decimal(credits),
            "api_quota_remaining": None if quota is None else Decimal(quota),
        },
    )


# ---------------------------------------------------------------- periods


def test_interval_periods_are_aligned_to_the_epoch_in_utc() -> None:
    settings = _settings()
    assert current_period(settings, T0 + timedelta(minutes=14, seconds=59)) == T0
    assert current_period(settings, T0 + timedelta(minutes=15)) == T0 + timedelta(minutes=15)
    # Another offset, the same instant: the same period on every host.
    plus_two = datetime(2026, 3, 2, 12, 7, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert current_period(settings, plus_two) == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    two_seconds = _settings(PREFLIGHT_AUDIT_INTERVAL="2s")
    assert current_period(two_seconds, T0 + timedelta(seconds=5.5)) == T0 + timedelta(seconds=4)


def test_cron_period_is_the_latest_fire_time_and_wins_over_the_interval() -> None:
    settings = _settings(PREFLIGHT_AUDIT_CRON="5 */6 * * *", PREFLIGHT_AUDIT_INTERVAL="1m")
    assert current_period(settings, T0) == datetime(2026, 3, 2, 6, 5, tzinfo=UTC)
    assert current_period(settings, T0.replace(hour=12, minute=5)) == T0.replace(hour=12, minute=5)
    yearly = _settings(PREFLIGHT_AUDIT_CRON="0 0 1 1 *")
    assert current_period(yearly, T0) == datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- settings


def test_audit_settings_defaults_and_parsing() -> None:
    defaults = _settings()
    assert defaults.audit_interval == timedelta(minutes=15)
    assert defaults.audit_cron is None
    assert defaults.audit_lease == timedelta(minutes=2)
    assert defaults.audit_accounts is None
    assert defaults.low_balance_threshold is None
    assert defaults.runway_threshold == timedelta(hours=24)
    assert defaults.retention_horizon == timedelta(days=30)
    assert defaults.alert_kinds == FINDING_KINDS
    assert not defaults.auto_finish_stale
    parsed = _settings(
        PREFLIGHT_AUDIT_ACCOUNTS="default, team-b,default",
        PREFLIGHT_ALERT_KINDS="low_balance",
        PREFLIGHT_LOW_BALANCE_THRESHOLD="250.50",
        PREFLIGHT_AUTO_FINISH_STALE="yes",
    )
    assert parsed.audit_accounts == ("default", "team-b")
    assert parsed.alert_kinds == ("low_balance",)
    assert parsed.low_balance_threshold == Decimal("250.50")
    assert parsed.auto_finish_stale


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PREFLIGHT_AUDIT_CRON", "every day"),
        ("PREFLIGHT_AUDIT_INTERVAL", "0s"),
        ("PREFLIGHT_ALERT_KINDS", "low_balance,bogus"),
        ("PREFLIGHT_ALERT_WEBHOOK_URL", "ftp://example.com/x"),
        ("PREFLIGHT_ALERT_ATTEMPTS", "0"),
    ],
)
def test_bad_audit_settings_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _settings(**{name: value})


def test_accounts_to_audit_default_to_those_with_a_token() -> None:
    with pytest.raises(ConfigError, match="no account to audit"):
        accounts_to_audit(_settings())
    settings = _settings(PREFLIGHT_API_TOKEN="t-123")
    assert accounts_to_audit(settings) == ["default"]
    with pytest.raises(ConfigError, match="unknown account"):
        accounts_to_audit(settings, "nope")


def test_token_fingerprint_tells_tokens_apart_without_containing_them() -> None:
    one = token_fingerprint(_settings(PREFLIGHT_API_TOKEN="secret-one-abcdef"), "default")
    two = token_fingerprint(_settings(PREFLIGHT_API_TOKEN="secret-two-abcdef"), "default")
    assert one is not None
    assert one.startswith("sha256:")
    assert one != two
    assert "secret" not in one


# ---------------------------------------------------------------- unexplained consumption


def test_unexplained_consumption_is_the_drop_minus_recorded_cost() -> None:
    points = [_point(1, 0, "1000", "5000"), _point(2, 15, "862.5", "5000")]
    costs = [RecordedCost("render", "credits", T0 + timedelta(minutes=5), Decimal("100"))]
    drafts, rises = unexplained_consumption(points, costs, after=T0, tolerance=Decimal(0))
    [draft] = drafts
    assert rises == []
    assert draft.kind is FindingKind.UNEXPLAINED_CONSUMPTION
    assert draft.amount == Decimal("37.5")
    assert (draft.window_start, draft.window_end) == (points[0].taken_at, points[1].taken_at)
    assert draft.batches == ("render",)
    assert draft.detail["meter"] == "credits"
    assert draft.key == "credits:1-2"


def test_unexplained_consumption_is_exact_for_30_digit_balances() -> None:
    big = "123456789012345678901234567890.25"
    points = [_point(1, 0, big), _point(2, 15, "123456789012345678901234567000.00")]
    [draft], _ = unexplained_consumption(points, [], after=T0, tolerance=Decimal(0))
    assert draft.amount == Decimal("890.25")


def test_recorded_spend_and_spend_within_tolerance_are_not_reported() -> None:
    points = [_point(1, 0, "1000"), _point(2, 15, "900"), _point(3, 30, "898")]
    costs = [RecordedCost("render", "credits", T0 + timedelta(minutes=5), Decimal("100"))]
    drafts, _ = unexplained_consumption(points, costs, after=T0, tolerance=Decimal("2"))
    assert drafts == []


def test_a_top_up_is_never_negative_consumption_and_windows_are_reported_once() -> None:
    points = [_point(1, 0, "100"), _point(2, 15, "600"), _point(3, 30, "550")]
    drafts, rises = unexplained_consumption(points, [], after=T0, tolerance=Decimal(0))
    assert rises == [{"meter": "credits", "snapshot_ids": [1, 2]}]
    assert [(d.key, d.amount) for d in drafts] == [("credits:2-3", Decimal("50"))]
    # Windows ending at or before `after` were checked by an earlier run.
    again, _ = unexplained_consumption(points, [], after=points[2].taken_at, tolerance=Decimal(0))
    assert again == []


def test_cost_of_a_batch_with_unknown_meter_counts_on_every_meter() -> None:
    points = [_point(1, 0, "100", "100"), _point(2, 15, "90", "90")]
    costs = [RecordedCost("never-checked", None, T0 + timedelta(minutes=1), Decimal("10"))]
    drafts, _ = unexplained_consumption(points, costs, after=T0, tolerance=Decimal(0))
    assert drafts == []


# ---------------------------------------------------------------- low balance


def test_low_balance_by_threshold_and_by_runway() -> None:
    steady = [_point(i, i * 60, str(1000 - 100 * i)) for i in range(4)]  # 100 per hour
    low, measured, draft = low_balance(
        steady, "credits", threshold=None, runway_threshold=timedelta(hours=24)
    )
    assert low
    assert measured["runway_hours"] == "7.00"
    assert draft is not None
    assert draft.amount == Decimal("700")
    assert draft.kind is FindingKind.LOW_BALANCE
    low, _, _ = low_balance(steady, "credits", threshold=None, runway_threshold=timedelta(hours=6))
    assert not low
    low, measured, _ = low_balance(
        steady, "credits", threshold=Decimal("800"), runway_threshold=timedelta(0)
    )
    assert low
    assert measured["threshold"] == "800"


def test_no_runway_from_too_short_a_history() -> None:
    blip = [_point(1, 0, "1000"), _point(2, 0.05, "990")]
    low, measured, _ = low_balance(
        blip,
        "credits",
        threshold=None,
        runway_threshold=timedelta(hours=24),
        min_span=timedelta(hours=3),
    )
    assert not low
    assert "runway_hours" not in measured


# ---------------------------------------------------------------- retention


def test_retention_keeps_the_first_per_hour_then_the_first_per_day() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    horizon = timedelta(days=30)
    recent = (1, now - timedelta(days=1))
    hour = now - timedelta(days=40)
    hourly = [(10, hour), (11, hour + timedelta(minutes=15)), (12, hour + timedelta(minutes=30))]
    next_hour = [(13, hour + timedelta(hours=1, minutes=5))]
    day = (now - timedelta(days=300)).replace(hour=0)
    daily = [(20, day + timedelta(hours=3)), (21, day + timedelta(hours=9)), (22, day)]
    doomed = retention_doomed([recent, *hourly, *next_hour, *daily], now=now, horizon=horizon)
    assert sorted(doomed) == [11, 12, 20, 21]


# ---------------------------------------------------------------- profile update URL


def test_webhook_url_validation() -> None:
    assert validate_webhook_url("https://example.com/hook") == "https://example.com/hook"
    assert validate_webhook_url("http://localhost:9000/h", allow_http=True)
    with pytest.raises(UsageError, match=r"webhook_url: must be an https URL .*allow_http"):
        validate_webhook_url("http://example.com/hook")
    with pytest.raises(UsageError, match="needs a host"):
        validate_webhook_url("https:///nohost")
    with pytest.raises(UsageError):
        validate_webhook_url("ftp://example.com", allow_http=True)


# ---------------------------------------------------------------- alerts


_FINDINGS: list[dict[str, object]] = [
    {"kind": "low_balance", "amount": "5", "account": "default"},
    {"kind": "stale_batch", "amount": None, "account": "default"},
]


def test_alerts_post_the_chosen_kinds_as_json_and_retry_5xx() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(503 if len(seen) == 1 else 204)

    settings = _settings(
        PREFLIGHT_ALERT_WEBHOOK_URL="https://hooks.example/T0/secret-path",
        PREFLIGHT_ALERT_KINDS="low_balance",
    )
    sleeps: list[float] = []
    assert send_alerts(
        settings, _FINDINGS, transport=httpx.MockTransport(handler), sleep=sleeps.append
    )
    assert len(seen) == 2
    assert len(sleeps) == 1
    assert seen[1]["findings"] == [_FINDINGS[0]]


def test_a_dead_webhook_is_logged_never_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    settings = _settings(
        PREFLIGHT_ALERT_WEBHOOK_URL="https://hooks.example/T0/secret-path",
        PREFLIGHT_ALERT_ATTEMPTS="3",
    )
    with capture_logs() as logs:
        delivered = send_alerts(
            settings, _FINDINGS, transport=httpx.MockTransport(handler), sleep=lambda _s: None
        )
    assert not delivered
    [failed] = [e for e in logs if e["event"] == "alert_failed"]
    assert failed["attempts"] == 3
    assert failed["target"] == "https://hooks.example"  # never the secret path
    assert "secret-path" not in json.dumps(logs)


def test_a_refused_alert_is_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400)

    settings = _settings(PREFLIGHT_ALERT_WEBHOOK_URL="https://hooks.example/x")
    assert not send_alerts(
        settings, _FINDINGS, transport=httpx.MockTransport(handler), sleep=lambda _s: None
    )
    assert calls == [1]
