"""``profile.read_profile`` (a ``manual`` snapshot) and ``profile.update_profile`` (the webhook
URL: https only, refused before any request; a vendor 422 is one line)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from preflight.errors import AuthError, UsageError, VendorRejectedError
from preflight.services import profile
from preflight.services.runtime import Runtime
from tests.support import Clock
from tests.unit.services.fakes import PROFILE_PATH, FakeVendor, snapshot_row

HTTPS_HOOK = "https://hooks.example.com/preflight?key=s3cret"


@pytest.mark.parametrize(
    ("account", "credits", "user_id"),
    [(None, Decimal("1000.005"), "user-1"), ("team-b", Decimal(500), "user-b")],
)
def test_read_profile_keeps_a_manual_snapshot(
    rt: Runtime,
    vendor: FakeVendor,
    clock: Clock,
    account: str | None,
    credits: Decimal,
    user_id: str,
) -> None:
    vendor.credits = Decimal("1000.005")
    vendor.api_quota_remaining = Decimal(3)
    reading = profile.read_profile(rt, account)

    assert (reading.account, reading.taken_at) == (account or "default", clock.now)
    assert (reading.credits, reading.user_id, reading.tier) == (
        credits,
        user_id,
        "pro",
    )
    stored = snapshot_row(rt, reading.snapshot_id)
    assert (stored.kind, stored.credits, stored.batch_pk, stored.taken_at) == (
        "manual",
        credits,
        None,
        clock.now,
    )
    assert reading.to_dict()["credits"] == str(credits)


def test_read_profile_raises_the_vendor_error(rt: Runtime, vendor: FakeVendor) -> None:
    vendor.token = "rotated"
    with pytest.raises(AuthError, match="HTTP 401"):
        profile.read_profile(rt)


def test_update_profile_posts_an_https_webhook_url(rt: Runtime, vendor: FakeVendor) -> None:
    update = profile.update_profile(rt, f"  {HTTPS_HOOK} ")

    assert update.to_dict() == {
        "account": "default",
        "webhook_url": HTTPS_HOOK,  # as the vendor echoed it
        "user_id": "user-1",
        "tier": "pro",
    }
    assert vendor.posted == [{"webhookUrl": HTTPS_HOOK}]
    assert vendor.requests == [("POST", PROFILE_PATH)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://hooks.example.com/x",
            "webhook_url: must be an https URL (allow_http permits http:// for local use)",
        ),
        ("ftp://hooks.example.com/x", "webhook_url: must be an https URL"),
        ("https:///no-host", "webhook_url: needs a host and no spaces or control characters"),
        ("https://hooks.example.com/a b", "webhook_url: needs a host and no spaces"),
        ("https://[::1", "webhook_url: not a valid URL"),
    ],
)
def test_update_profile_refuses_a_bad_url_without_a_request(
    rt: Runtime, vendor: FakeVendor, url: str, message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        profile.update_profile(rt, url)

    assert str(raised.value).startswith(message)
    assert "example.com" not in str(raised.value)  # a webhook URL may carry a secret
    assert vendor.requests == []


def test_a_vendor_422_is_one_line(rt: Runtime, vendor: FakeVendor) -> None:
    with pytest.raises(VendorRejectedError) as raised:
        profile.update_profile(rt, "http://localhost:9000/hook", allow_http=True)

    assert str(raised.value) == "vendor rejected the update (HTTP 422): webhookUrl must use https"
    assert raised.value.status == 422
    assert (vendor.requests, vendor.posted) == ([("POST", PROFILE_PATH)], [])
