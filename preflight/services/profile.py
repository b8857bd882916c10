"""The vendor profile outside batch work: read it (a ``manual`` snapshot) or update its
server-controlled fields. Batch verbs never call ``update_profile``, so a validation error
here can never block a batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from preflight.domain.vocabulary import SnapshotKind
from preflight.errors import BillingBlockedError, UsageError
from preflight.services.results import ProfileReading
from preflight.services.runtime import Runtime
from preflight.services.snapshots import take_snapshot


def read_profile(rt: Runtime, account: str | None = None) -> ProfileReading:
    """Read the profile now and keep it as a ``manual`` snapshot.

    A vendor that answers 200 with its own word that the account is blocked (DeepSeek's
    ``is_available: false``) is a :class:`BillingBlockedError`, as its 402 is: ``check``
    makes both ``billing_blocked``, and whoever waits on a balance (the Airflow trigger,
    Prefect's wait) stops on this error, locally and through the server alike. The reading
    is kept first, as ``check`` keeps it.
    """
    name = rt.account_name(account)
    taken = take_snapshot(rt, name, SnapshotKind.MANUAL)
    profile = taken.profile
    if profile.blocked is not None:
        raise BillingBlockedError(
            f"account {name} is blocked: {profile.blocked} "
            f"(the reading is kept as snapshot {taken.snapshot_id})",
            status=profile.http_status,
            attempts=profile.attempts,
        )
    return ProfileReading(
        account=name,
        snapshot_id=taken.snapshot_id,
        taken_at=taken.taken_at,
        user_id=profile.user_id,
        tier=profile.tier,
        meters=profile.meters,
        latency_ms=profile.latency_ms,
        raw=profile.raw,
    )


@dataclass(frozen=True)
class ProfileUpdate:
    account: str
    webhook_url: str
    user_id: str | None
    tier: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "webhook_url": self.webhook_url,
            "user_id": self.user_id,
            "tier": self.tier,
        }


def validate_webhook_url(url: str, *, allow_http: bool = False) -> str:
    """``url`` if it is an https (or, allowed, http) URL with a host; else a UsageError.

    The URL is not echoed in the error: webhook URLs often carry a secret.
    """
    allowed = ("https", "http") if allow_http else ("https",)
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        raise UsageError("webhook_url: not a valid URL") from None
    if parts.scheme.lower() not in allowed:
        hint = "" if allow_http else " (allow_http permits http:// for local use)"
        raise UsageError(f"webhook_url: must be an {' or '.join(allowed)} URL{hint}")
    if not host or any(char.isspace() or ord(char) < 0x20 for char in url.strip()):
        raise UsageError("webhook_url: needs a host and no spaces or control characters")
    return url.strip()


def update_profile(
    rt: Runtime, webhook_url: str, *, account: str | None = None, allow_http: bool = False
) -> ProfileUpdate:
    """Set the profile's ``webhookUrl`` (``POST /api/open/v1/profile``)."""
    url = validate_webhook_url(webhook_url, allow_http=allow_http)
    name = rt.account_name(account)
    profile = rt.vendor(name).update_profile({"webhookUrl": url})
    try:
        echoed = json.loads(profile.raw).get("webhookUrl")
    except (ValueError, AttributeError):
        echoed = None
    return ProfileUpdate(
        name, echoed if isinstance(echoed, str) else url, profile.user_id, profile.tier
    )
