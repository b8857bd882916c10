"""The declarative adapter: any vendor with a JSON balance endpoint, described in TOML.

    [accounts.acme]
    vendor = "declarative"
    vendor_url = "https://api.acme.example"
    token_env = "ACME_KEY"
    balance_path = "/v2/account/balance"
    auth_header = "X-Api-Key"        # default: Authorization
    auth_scheme = ""                 # default: Bearer ("" sends the bare token)
    quota_status = [400]             # besides 402, which always is a quota failure
    quota_body = "credit balance is too low"   # and the job's error body must say so
    [accounts.acme.meters]
    requests = { path = "account.plan.quota", minus = "account.plan.used" }
    wallet = { path = "account.wallet.balance_cents", scale = "0.01" }
    plain = "data.balance"           # a bare path

A path is dotted keys and list indexes (``balances.0.amount``). A meter is the value at
``path``, less the value at ``minus`` when given, times ``scale`` when given; values may be
numbers or numeric strings and may be negative. The first meter is ``auto``'s choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from preflight.adapters.base import (
    METER_NAME,
    Adapter,
    Reading,
    amount,
    label,
    lookup,
    object_body,
    unusable,
)
from preflight.adapters.builtin import TIER_CHARS, USER_ID_CHARS
from preflight.domain.amounts import AmountError, bounded, parse_amount
from preflight.domain.errors import ConfigError

KEYS: Final = (
    "balance_path",
    "auth_header",
    "auth_scheme",
    "meters",
    "quota_status",
    "quota_body",
    "user_id",
    "tier",
)
_PATH_PART: Final = r"[A-Za-z0-9_\-$@]+"
_DOTTED: Final = re.compile(rf"{_PATH_PART}(?:\.{_PATH_PART})*")
_HEADER: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True)
class MeterRule:
    """One meter: the value at ``path``, less ``minus``, times ``scale``."""

    path: str
    minus: str | None = None
    scale: Decimal | None = None

    def value(self, data: object, name: str) -> Decimal | None:
        base = amount(lookup(data, self.path), self.path, signed=True)
        if base is None:
            return None
        if self.minus is not None:
            other = amount(lookup(data, self.minus), self.minus, signed=True)
            if other is None:
                return None
            base -= other
        if self.scale is not None:
            base *= self.scale
        try:
            return bounded(base, name, signed=True)
        except AmountError as exc:
            unusable(f"{name}: {exc}")


@dataclass(frozen=True)
class DeclarativeAdapter(Adapter):
    name = "declarative"
    default_url = ""
    balance_path: str = "/"
    rules: tuple[tuple[str, MeterRule], ...] = ()
    user_id_path: str | None = None
    tier_path: str | None = None

    def paths(self) -> tuple[str, ...]:
        return (self.balance_path,)

    def read(self, bodies: Sequence[object]) -> Reading:
        data = object_body(bodies[0])
        return Reading(
            meters={name: rule.value(data, name) for name, rule in self.rules},
            user_id=label(
                lookup(data, self.user_id_path) if self.user_id_path else None,
                "user_id",
                USER_ID_CHARS,
                numbers_ok=True,
            ),
            tier=label(
                lookup(data, self.tier_path) if self.tier_path else None, "tier", TIER_CHARS
            ),
        )


def build(table: Mapping[str, object], where: str) -> DeclarativeAdapter:
    """The adapter an account's TOML table describes; ConfigError naming the bad key."""
    path = table.get("balance_path")
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise ConfigError(f"{where} balance_path: must be a path starting with /, e.g. /v1/balance")
    header = table.get("auth_header", "Authorization")
    if not isinstance(header, str) or not header or not set(header) <= _HEADER:
        raise ConfigError(f"{where} auth_header: must be an HTTP header name")
    scheme = table.get("auth_scheme", "Bearer")
    if not isinstance(scheme, str) or (scheme and not set(scheme) <= _HEADER):
        raise ConfigError(f"{where} auth_scheme: must be a word such as Bearer, or empty")

    def json_path(value: object, key: str) -> str:
        if not isinstance(value, str) or not _DOTTED.fullmatch(value):
            raise ConfigError(f"{where} {key}: must be a dotted JSON path such as data.balance")
        return value

    meters = table.get("meters")
    if not isinstance(meters, Mapping) or not meters:
        raise ConfigError(
            f'{where} meters: needs at least one meter, e.g. meters.credits = "data.balance"'
        )
    rules: list[tuple[str, MeterRule]] = []
    for name, spec in meters.items():
        if not METER_NAME.fullmatch(name):
            raise ConfigError(
                f"{where} meters.{name}: a meter name is 1-32 lower-case letters, digits or _"
            )
        key = f"meters.{name}"
        if isinstance(spec, str):
            rules.append((name, MeterRule(json_path(spec, key))))
            continue
        if not isinstance(spec, Mapping) or "path" not in spec:
            raise ConfigError(f"{where} {key}: a JSON path, or a table with path (minus, scale)")
        unknown = sorted(set(spec) - {"path", "minus", "scale"})
        if unknown:
            raise ConfigError(f"{where} {key}: unknown key(s) {', '.join(unknown)}")
        scale: Decimal | None = None
        if "scale" in spec:
            raw = spec["scale"]
            try:
                # A TOML float would have lost the exact factor already: text or integer.
                if isinstance(raw, float):
                    raise AmountError('write it as text, e.g. "0.01"')
                scale = parse_amount(raw)
            except AmountError as exc:
                raise ConfigError(f"{where} {key}.scale: {exc}") from None
        minus = spec.get("minus")
        rules.append(
            (
                name,
                MeterRule(
                    json_path(spec["path"], f"{key}.path"),
                    None if minus is None else json_path(minus, f"{key}.minus"),
                    scale,
                ),
            )
        )
    statuses_raw = table.get("quota_status", [])
    statuses_list = statuses_raw if isinstance(statuses_raw, list) else [statuses_raw]
    statuses: set[int] = set()
    for status in statuses_list:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigError(f"{where} quota_status: HTTP statuses from 400 to 599")
        statuses.add(status)
    body = table.get("quota_body")
    if body is not None and (not isinstance(body, str) or not body.strip()):
        raise ConfigError(f"{where} quota_body: must be non-empty text")
    if body is not None and not statuses:
        raise ConfigError(f"{where} quota_body: needs quota_status, the status it comes with")
    labels = {}
    for key in ("user_id", "tier"):
        if key in table:
            labels[key] = json_path(table[key], key)
    return DeclarativeAdapter(
        meters=tuple(name for name, _ in rules),
        auth_header=header,
        auth_scheme=scheme,
        quota_statuses=frozenset(statuses),
        quota_text=body,
        balance_path=path,
        rules=tuple(rules),
        user_id_path=labels.get("user_id"),
        tier_path=labels.get("tier"),
    )
