"""The adapters preflight ships, each read from its vendor's public API documentation.

- ``default``: ``GET /api/open/v1/profile`` (Bearer); ``credits``, ``api_quota_remaining``.
- ``openrouter``: ``GET /api/v1/key`` (Bearer), and ``/api/v1/credits`` with a management
  key; ``limit_remaining``, ``credits``.
- ``elevenlabs``: ``GET /v1/user/subscription`` (``xi-api-key``); ``characters``; a job's
  401 ``quota_exceeded`` is a quota failure too.
- ``deepgram``: ``GET /v1/projects/{project_id}/balances`` (``Token``); one meter per unit.
- ``deepseek``: ``GET /user/balance`` (Bearer); one meter per currency.

A 402 on a job is a quota failure for every one of them. docs/vendors.md has the details,
and the declarative adapter for any other vendor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from preflight.adapters.base import (
    Adapter,
    Reading,
    amount,
    label,
    lookup,
    meter_name,
    object_body,
    unusable,
)
from preflight.domain.amounts import preview

# The widest labels the database stores (snapshots.user_id / snapshots.tier).
USER_ID_CHARS: Final = 200
TIER_CHARS: Final = 100


@dataclass(frozen=True)
class ProfileAdapter(Adapter):
    """preflight's first vendor: ``credits`` and the legacy ``api_quota_remaining``."""

    name = "default"
    default_url = "https://fishaudio.org"
    meters: tuple[str, ...] = ("credits", "api_quota_remaining")
    supports_update: bool = True

    def paths(self) -> tuple[str, ...]:
        return ("/api/open/v1/profile",)

    def read(self, bodies: Sequence[object]) -> Reading:
        data = object_body(bodies[0])
        return Reading(
            meters={name: amount(data.get(name), name) for name in self.meters},
            user_id=label(data.get("user_id"), "user_id", USER_ID_CHARS, numbers_ok=True),
            tier=label(data.get("tier"), "tier", TIER_CHARS),
        )


@dataclass(frozen=True)
class OpenRouterAdapter(Adapter):
    """The key's own cap (``limit_remaining``; null: no cap) and, with a management key
    (``management_key = true``), the account's ``credits`` (total credits − total usage).

    With no cap on the key, ``auto`` rests on ``credits``. The key's ``usage`` is a spend
    counter that rises, not a balance: it stays in the raw body, never a meter.
    """

    name = "openrouter"
    default_url = "https://openrouter.ai"
    meters: tuple[str, ...] = ("limit_remaining", "credits")

    @property
    def management_key(self) -> bool:
        return bool(self.options.get("management_key", False))

    def paths(self) -> tuple[str, ...]:
        key = ("/api/v1/key",)
        return (*key, "/api/v1/credits") if self.management_key else key

    def read(self, bodies: Sequence[object]) -> Reading:
        key = object_body(lookup(object_body(bodies[0]), "data"), "data of /api/v1/key")
        meters: dict[str, Decimal | None] = {
            "limit_remaining": amount(key.get("limit_remaining"), "data.limit_remaining"),
            "credits": None,
        }
        if self.management_key:
            credits = object_body(lookup(object_body(bodies[1]), "data"), "data of /api/v1/credits")
            total = amount(credits.get("total_credits"), "data.total_credits")
            used = amount(credits.get("total_usage"), "data.total_usage")
            if total is not None and used is not None:
                # Usage past the credits is a debt the account owes: the balance is below 0.
                meters["credits"] = total - used
        return Reading(
            meters=meters,
            user_id=label(key.get("creator_user_id"), "creator_user_id", USER_ID_CHARS),
            tier="free" if key.get("is_free_tier") is True else None,
        )


@dataclass(frozen=True)
class ElevenLabsAdapter(Adapter):
    """Characters left in the subscription period: ``character_limit − character_count``.

    A period reset (``next_character_count_reset_unix``) raises the balance: the timeline
    splits there like at a top-up. An exhausted quota answers a *job* with 401 and
    ``quota_exceeded`` in the body, which is a quota failure; a plain 401 on the balance
    endpoint is still a token the vendor refuses (``auth_failed``).
    """

    name = "elevenlabs"
    default_url = "https://api.elevenlabs.io"
    meters: tuple[str, ...] = ("characters",)
    auth_header: str = "xi-api-key"
    auth_scheme: str = ""
    quota_statuses: frozenset[int] = frozenset({401})
    quota_text: str | None = "quota_exceeded"

    def paths(self) -> tuple[str, ...]:
        return ("/v1/user/subscription",)

    def read(self, bodies: Sequence[object]) -> Reading:
        data = object_body(bodies[0])
        limit = amount(data.get("character_limit"), "character_limit")
        count = amount(data.get("character_count"), "character_count")
        # Count past the limit (an extended quota) leaves nothing: the balance is 0, not
        # negative, as the vendor refuses the next request either way.
        left = None if limit is None or count is None else max(limit - count, Decimal(0))
        return Reading(
            meters={"characters": left},
            tier=label(data.get("tier"), "tier", TIER_CHARS),
        )


@dataclass(frozen=True)
class DeepgramAdapter(Adapter):
    """A project's balances (``Authorization: Token``), one meter per ``units`` (``usd``),
    summing every balance in those units."""

    name = "deepgram"
    default_url = "https://api.deepgram.com"
    meters: tuple[str, ...] = ("usd",)
    open_meters: bool = True
    auth_scheme: str = "Token"

    def paths(self) -> tuple[str, ...]:
        return (f"/v1/projects/{self.options['project_id']}/balances",)

    def read(self, bodies: Sequence[object]) -> Reading:
        data = object_body(bodies[0])
        balances = data.get("balances")
        if balances is None:
            balances = []
        if not isinstance(balances, list):
            unusable("balances is not a list")
        meters: dict[str, Decimal | None] = dict.fromkeys(self.meters)
        for index, entry in enumerate(balances):
            item = object_body(entry, f"balances[{index}]")
            value = amount(item.get("amount"), f"balances[{index}].amount")
            if value is None:
                continue
            units = meter_name(item.get("units", "usd"), f"balances[{index}].units")
            meters[units] = (meters.get(units) or Decimal(0)) + value
        return Reading(meters=meters)


@dataclass(frozen=True)
class DeepSeekAdapter(Adapter):
    """One meter per currency (``usd``, ``cny``) from ``balance_infos[].total_balance``
    (decimal strings, which may be negative). ``is_available: false`` is a no-go."""

    name = "deepseek"
    default_url = "https://api.deepseek.com"
    meters: tuple[str, ...] = ("usd", "cny")
    open_meters: bool = True

    def paths(self) -> tuple[str, ...]:
        return ("/user/balance",)

    def read(self, bodies: Sequence[object]) -> Reading:
        data = object_body(bodies[0])
        infos = data.get("balance_infos")
        if infos is None:
            infos = []
        if not isinstance(infos, list):
            unusable("balance_infos is not a list")
        meters: dict[str, Decimal | None] = {}
        for index, entry in enumerate(infos):
            item = object_body(entry, f"balance_infos[{index}]")
            currency = meter_name(item.get("currency"), f"balance_infos[{index}].currency")
            value = amount(
                item.get("total_balance"), f"balance_infos[{index}].total_balance", signed=True
            )
            if value is not None:
                meters[currency] = (meters.get(currency) or Decimal(0)) + value
        # The body's currencies first (auto reads the first one the vendor lists), then the
        # known ones it left out, as absent.
        for name in self.meters:
            meters.setdefault(name, None)
        available = data.get("is_available")
        if available is not None and not isinstance(available, bool):
            unusable(f"is_available is not a boolean: {preview(available)}")
        blocked = (
            "the vendor reports the account unavailable for API calls (is_available: false)"
            if available is False
            else None
        )
        return Reading(meters=meters, blocked=blocked)


BUILTIN: Final[Mapping[str, type[Adapter]]] = {
    adapter.name: adapter
    for adapter in (
        ProfileAdapter,
        OpenRouterAdapter,
        ElevenLabsAdapter,
        DeepgramAdapter,
        DeepSeekAdapter,
    )
}
