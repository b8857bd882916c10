"""How each vendor speaks: its meters, routes, auth, balance bodies, job charge and quota answer.

A :class:`Dialect` is stateless: it reads and changes an :class:`Account` (the meters, what was
spent from each, and the few other things a body shows) that the caller hands it with the
state's lock held. :data:`DIALECTS` maps each vendor name to its dialect; its public
attributes (meters and their defaults, balance and job paths, auth header and scheme, the
quota failure's status) are what a test needs to talk to the sandbox as that vendor.

Bodies are built with Decimals for amounts, so :func:`~preflight.sandbox.protocol.render`
writes each with its exact digits; ``as_strings`` in a shape turns them into strings.
"""

from __future__ import annotations

import calendar
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, Inexact, InvalidOperation
from types import MappingProxyType
from typing import ClassVar, Final

from preflight.sandbox.protocol import (
    CREDITS,
    EVERY_METER,
    EXACT,
    JOBS_PATH,
    PROFILE_PATH,
    QUOTA,
    ZERO,
    BadInput,
    Reply,
    as_amount,
    as_decimal,
    as_meter,
    bad_request,
    json_reply,
    plain,
)

#: The vendor name of today's profile API, and the default of ``SandboxServer(vendor=...)``.
DEFAULT_VENDOR: Final = "default"

# Route kinds: a balance read, the default vendor's profile update, a paid job.
READ: Final = "read"
UPDATE: Final = "update"
JOB: Final = "job"

#: ElevenLabs' first ``next_character_count_reset_unix``: 2027-01-01T00:00:00Z. Fixed, so
#: that bodies are the same from one run to the next.
FIRST_RESET_UNIX: Final = 1798761600


# ---------------------------------------------------------------- building blocks


@dataclass(frozen=True)
class Meter:
    """One balance a vendor keeps: its name, starting value (None: absent) and its grain."""

    name: str
    default: Decimal | None
    #: At most this many decimal places (0: whole numbers only); None: any.
    places: int | None = None
    #: Whether the control API may set it below zero (a vendor that lets a balance go
    #: negative); spending never takes it below zero.
    negative: bool = False


@dataclass(frozen=True)
class Route:
    """A vendor route: ``method`` on ``template``, whose ``{name}`` segments match any one
    path segment. Requests are counted by :attr:`key`, the template, not the path."""

    method: str
    template: str
    kind: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    def match(self, path: str) -> dict[str, str] | None:
        """The template's parameters taken from ``path``, or None if it does not match."""
        want, got = self.template.split("/"), path.split("/")
        if len(want) != len(got):
            return None
        params: dict[str, str] = {}
        for pattern, segment in zip(want, got, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not segment:
                    return None
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return params


@dataclass
class Account:
    """What the vendor remembers about the account; a dialect reads and changes it.

    ``spent`` is what each meter lost to jobs and to ``consume`` (since the last period reset,
    where the vendor has periods); bodies that show usage derive it from there.
    """

    meters: dict[str, Decimal | None]
    spent: dict[str, Decimal]
    user_id: str = "user_123"
    tier: str = "pro"
    webhook_url: str | None = None
    period_reset_unix: int = FIRST_RESET_UNIX

    def debit(self, name: str, amount: Decimal) -> Decimal:
        """Take ``amount`` from meter ``name`` (present) and count it as spent; what is left."""
        current = self.meters[name]
        assert current is not None
        left = EXACT.subtract(current, amount)
        self.meters[name] = left
        self.spent[name] = EXACT.add(self.spent[name], amount)
        return left


def shaped(body: dict[str, object], shape: Mapping[str, object]) -> dict[str, object]:
    """``body`` after a shape: every amount as a string (``as_strings``), fields left out
    (``drop``), fields added or replaced (``extra``, which wins)."""
    result = _stringified(body) if shape.get("as_strings") else dict(body)
    assert isinstance(result, dict)
    drop = shape.get("drop", [])
    assert isinstance(drop, list)
    for name in drop:
        result.pop(name, None)
    extra = shape.get("extra", {})
    assert isinstance(extra, dict)
    result.update(extra)
    return result


def _stringified(value: object) -> object:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, dict):
        return {key: _stringified(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stringified(item) for item in value]
    return value


def _request_id() -> str:
    return str(uuid.uuid4())


def _whole(number: Decimal) -> Decimal:
    """``number`` (a whole number) without an exponent: rendered as a JSON integer."""
    return number.quantize(Decimal(1), context=EXACT)


def _split(total: Decimal, first_part: Decimal) -> tuple[Decimal, Decimal]:
    """``total`` as two exact parts, the first at most ``first_part`` (0 for a total below 0),
    written with the total's decimal places so that both read like money."""
    places = min(total.as_tuple().exponent, 0)
    assert isinstance(places, int)
    first = min(max(total, ZERO), first_part).quantize(Decimal(1).scaleb(places), context=EXACT)
    return first, EXACT.subtract(total, first)


# ---------------------------------------------------------------- the dialect


class Dialect:
    """How one vendor speaks. Subclasses set the class attributes and the vendor's bodies.

    Every method that takes an :class:`Account` must be called with the state's lock held.
    """

    name: ClassVar[str]
    meters: ClassVar[tuple[Meter, ...]]
    routes: ClassVar[tuple[Route, ...]]
    #: The request header that carries the token, and the scheme before it (None: the
    #: header is the bare token).
    auth_header: ClassVar[str] = "Authorization"
    auth_scheme: ClassVar[str | None] = "Bearer"
    #: The status of the vendor's quota failure (not always 402).
    quota_status: ClassVar[int] = 402
    #: The object of the body a shape applies to: None for the top-level object, else the
    #: name of the top-level field that holds it.
    shape_target: ClassVar[str | None] = None
    #: The project a path must name (Deepgram), else None.
    project_id: ClassVar[str | None] = None
    #: Whether ``POST /_sandbox/reset_period`` starts a new billing period.
    has_period: ClassVar[bool] = False

    # -- what a test needs to know

    @property
    def meter_names(self) -> tuple[str, ...]:
        return tuple(meter.name for meter in self.meters)

    @property
    def defaults(self) -> dict[str, Decimal | None]:
        """Each meter's starting value (None: absent)."""
        return {meter.name: meter.default for meter in self.meters}

    @property
    def balance_paths(self) -> tuple[str, ...]:
        """The path templates of the balance reads (``{project_id}``: :attr:`project_id`)."""
        return tuple(route.template for route in self.routes if route.kind == READ)

    @property
    def job_path(self) -> str:
        """The path template of the paid job (``{voice_id}``: any one segment)."""
        return next(route.template for route in self.routes if route.kind == JOB)

    @property
    def route_keys(self) -> tuple[str, ...]:
        """The request counters' keys, ``"METHOD template"``."""
        return tuple(route.key for route in self.routes)

    def auth_headers(self, token: str) -> dict[str, str]:
        """The header(s) a client sends to authenticate with ``token``."""
        value = token if self.auth_scheme is None else f"{self.auth_scheme} {token}"
        return {self.auth_header: value}

    def __repr__(self) -> str:
        return f"<sandbox dialect {self.name}>"

    # -- meters

    def meter(self, name: str) -> Meter:
        for meter in self.meters:
            if meter.name == name:
                return meter
        raise BadInput(f"meter must be one of {', '.join(self.meter_names)}, not {name!r}")

    def check(self, name: str, value: object, what: str | None = None) -> Decimal | None:
        """``value`` as meter ``name`` may hold it (None: absent), or BadInput."""
        meter = self.meter(name)
        if value is None:
            return None
        label = what or name
        number = as_decimal(value, label)
        if number < 0 and not meter.negative:
            raise BadInput(f"{label} must not be negative")
        return self.fit(meter, number, label)

    def fit(self, meter: Meter, number: Decimal, what: str) -> Decimal:
        """``number`` in ``meter``'s grain, or BadInput if it has more decimal places."""
        if meter.places is None:
            return number
        try:
            fitted = number.quantize(Decimal(1).scaleb(-meter.places), context=EXACT)
        except (Inexact, InvalidOperation):
            grain = "a whole number" if meter.places == 0 else f"at most {meter.places} places"
            of = "" if what == meter.name else f" for the {meter.name} meter"
            raise BadInput(f"{what} must be {grain}{of}") from None
        return fitted

    def starting_meters(self, given: Mapping[str, object] | None) -> dict[str, Decimal | None]:
        """The defaults, with ``given`` meters (checked) in their place; unknown names are
        BadInput naming the known ones."""
        given = given or {}
        self.reject_unknown(given)
        return {
            meter.name: self.check(meter.name, given[meter.name])
            if meter.name in given
            else meter.default
            for meter in self.meters
        }

    def reject_unknown(self, names: Mapping[str, object]) -> None:
        unknown = sorted(set(names) - set(self.meter_names))
        if unknown:
            raise BadInput(
                f"the {self.name} vendor has no meter {', '.join(unknown)} "
                f"(its meters: {', '.join(self.meter_names)})"
            )

    def new_account(self, meters: Mapping[str, object] | None) -> Account:
        return Account(
            meters=self.starting_meters(meters), spent=dict.fromkeys(self.meter_names, ZERO)
        )

    def consume_names(self, account: Account, meter: object) -> list[str]:
        """The meters ``consume`` spends from: the one named, each present one (``all`` or
        ``both``), or by default the first present meter."""
        if meter is None:
            meter = self.consume_default(account)
        which = as_meter(meter, self.meter_names, allow_every=True)
        if which in EVERY_METER:
            return [name for name in self.meter_names if account.meters[name] is not None]
        if account.meters[which] is None:
            raise BadInput(f"the account has no {which} meter")
        return [which]

    def consume_default(self, account: Account) -> str:
        return self.first_present(account) or self.meter_names[0]

    def topup_default(self) -> str:
        return self.meter_names[0]

    def first_present(self, account: Account) -> str | None:
        return next((n for n in self.meter_names if account.meters[n] is not None), None)

    # -- auth

    def authorized(self, header: str | None, token: str) -> bool:
        """Whether the auth header's value carries ``token``."""
        value = (header or "").strip()
        if self.auth_scheme is not None:
            scheme, _, value = value.partition(" ")
            if scheme.lower() != self.auth_scheme.lower():
                return False
        # compare_digest: the sandbox is a test double, but timing-safe costs nothing.
        return hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))

    def unauthorized(self, header: str | None) -> Reply:
        raise NotImplementedError

    # -- the vendor's answers

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        """The answer to a balance read, shaped."""
        raise NotImplementedError

    def shape_body(self, body: dict[str, object], shape: Mapping[str, object]) -> Reply:
        if self.shape_target is None:
            return json_reply(200, shaped(body, shape))
        inner = body[self.shape_target]
        assert isinstance(inner, dict)
        return json_reply(200, {**body, self.shape_target: shaped(inner, shape)})

    def job(self, account: Account, payload: Mapping[str, object]) -> Reply:
        """Charge a paid job: its cost from the meter named (or the first present one).

        The vendor's quota answer, and nothing charged, when that meter is absent or short.
        """
        try:
            meter = self.job_meter(account, payload)
            cost = self.job_cost(meter, payload)
        except BadInput as exc:
            return bad_request(str(exc))
        current = account.meters[meter.name]
        if current is None or current < cost:
            return self.insufficient(account, meter.name, cost)
        left = account.debit(meter.name, cost)
        return self.charged(cost, meter.name, left)

    def job_meter(self, account: Account, payload: Mapping[str, object]) -> Meter:
        if "meter" in payload:
            return self.meter(as_meter(payload["meter"], self.meter_names))
        return self.meter(self.first_present(account) or self.meter_names[0])

    def job_cost(self, meter: Meter, payload: Mapping[str, object]) -> Decimal:
        return self.fit(meter, as_amount(payload.get("cost"), "cost"), "cost")

    def insufficient(self, account: Account, meter: str, cost: Decimal) -> Reply:
        raise NotImplementedError

    @staticmethod
    def charged(cost: Decimal, meter: str, left: Decimal) -> Reply:
        # Every vendor's success is the sandbox's own small receipt: preflight never reads
        # a job's answer, and the receipt tells a test what was charged where.
        return json_reply(
            200, {"ok": True, "charged": plain(cost), "meter": meter, "balance": plain(left)}
        )

    def reset_period(self, account: Account) -> None:
        raise BadInput(f"the {self.name} vendor has no billing period")

    def describe(self, account: Account) -> dict[str, object]:
        """Fields of ``GET /_sandbox/state`` that only this vendor has."""
        return {}


# ---------------------------------------------------------------- default


class DefaultDialect(Dialect):
    """Today's profile API (see the package docstring)."""

    name = DEFAULT_VENDOR
    meters = (Meter(CREDITS, Decimal("1200")), Meter(QUOTA, Decimal("988000")))
    routes = (
        Route("GET", PROFILE_PATH, READ),
        Route("POST", PROFILE_PATH, UPDATE),
        Route("POST", JOBS_PATH, JOB),
    )

    def consume_default(self, account: Account) -> str:
        return "both"

    def unauthorized(self, header: str | None) -> Reply:
        return json_reply(401, {"error": "unauthorized"}, headers=(("WWW-Authenticate", "Bearer"),))

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        return json_reply(200, self.profile(account, shape))

    @staticmethod
    def profile(account: Account, shape: Mapping[str, object]) -> dict[str, object]:
        profile: dict[str, object] = {"user_id": account.user_id}
        for name, value in (
            (QUOTA, account.meters[QUOTA]),
            ("tier", account.tier),
            (CREDITS, account.meters[CREDITS]),
        ):
            if value is not None:
                profile[name] = value
        if account.webhook_url is not None:
            profile["webhookUrl"] = account.webhook_url
        return shaped(profile, shape)

    def job(self, account: Account, payload: Mapping[str, object]) -> Reply:
        try:
            cost = as_amount(payload.get("cost"), "cost")
            named = as_meter(payload["meter"]) if "meter" in payload else None
        except BadInput as exc:
            return bad_request(str(exc))
        meter = named or (CREDITS if account.meters[CREDITS] is not None else QUOTA)
        current = account.meters[meter]
        if current is None:
            message = f"the account has no {meter} meter"
            return json_reply(402, {"error": "insufficient_quota", "message": message})
        if current < cost:
            return json_reply(402, {"error": "insufficient_quota"})
        return self.charged(cost, meter, account.debit(meter, cost))

    def describe(self, account: Account) -> dict[str, object]:
        return {"webhookUrl": account.webhook_url}


# ---------------------------------------------------------------- OpenRouter


class OpenRouterDialect(Dialect):
    """A key (``limit_remaining``, None: no cap) on an account with ``credits``.

    The key's usage is everything its jobs spent (capped or not) plus what ``consume`` took
    from ``limit_remaining``; its ``limit`` is what remains plus that usage. The account's
    ``total_usage`` is what jobs and ``consume`` took from ``credits``.
    """

    name = "openrouter"
    meters = (Meter("limit_remaining", Decimal("50")), Meter(CREDITS, Decimal("100")))
    routes = (
        Route("GET", "/api/v1/key", READ),
        Route("GET", "/api/v1/credits", READ),
        Route("POST", "/api/v1/chat/completions", JOB),
    )
    shape_target = "data"
    label: ClassVar[str] = "sk-or-v1-san...box"

    def topup_default(self) -> str:
        # Buying credits, not raising the key's cap.
        return CREDITS

    def unauthorized(self, header: str | None) -> Reply:
        message = "User not found." if (header or "").strip() else "No auth credentials found"
        return json_reply(401, {"error": {"message": message, "code": 401}})

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        data: dict[str, object]
        if route.template.endswith("/key"):
            remaining = account.meters["limit_remaining"]
            usage = account.spent["limit_remaining"]
            data = {
                "label": self.label,
                "limit": None if remaining is None else EXACT.add(remaining, usage),
                "limit_remaining": remaining,
                "limit_reset": None,
                "usage": usage,
                "usage_daily": usage,
                "usage_weekly": usage,
                "usage_monthly": usage,
                "is_free_tier": False,
                "is_provisioning_key": False,
                "include_byok_in_limit": False,
            }
        else:
            credits = account.meters[CREDITS]
            used = account.spent[CREDITS]
            data = (
                {}
                if credits is None
                else {"total_credits": EXACT.add(credits, used), "total_usage": used}
            )
        return self.shape_body({"data": data}, shape)

    def job(self, account: Account, payload: Mapping[str, object]) -> Reply:
        # A completion is paid from the credits and counts against the key's cap (if any).
        try:
            cost = as_amount(payload.get("cost"), "cost")
        except BadInput as exc:
            return bad_request(str(exc))
        credits, cap = account.meters[CREDITS], account.meters["limit_remaining"]
        if credits is None or credits < cost or (cap is not None and cap < cost):
            return self.insufficient(account, CREDITS, cost)
        if cap is None:
            account.spent["limit_remaining"] = EXACT.add(account.spent["limit_remaining"], cost)
        else:
            account.debit("limit_remaining", cost)
        return self.charged(cost, CREDITS, account.debit(CREDITS, cost))

    def insufficient(self, account: Account, meter: str, cost: Decimal) -> Reply:
        message = "Insufficient credits. Add more using https://openrouter.ai/credits"
        return json_reply(402, {"error": {"code": 402, "message": message}})


# ---------------------------------------------------------------- ElevenLabs


class ElevenLabsDialect(Dialect):
    """A subscription with a monthly ``characters`` allowance: limit minus count used.

    Topping up or setting the meter moves the limit; spending moves the count, which
    ``POST /_sandbox/reset_period`` puts back to 0 while the reset date moves a month on.
    """

    name = "elevenlabs"
    meters = (Meter("characters", Decimal("100000"), places=0),)
    routes = (
        Route("GET", "/v1/user/subscription", READ),
        Route("POST", "/v1/text-to-speech/{voice_id}", JOB),
    )
    auth_header = "xi-api-key"
    auth_scheme = None
    quota_status = 401
    has_period = True

    def unauthorized(self, header: str | None) -> Reply:
        detail = {"status": "invalid_api_key", "message": "Invalid API key"}
        return json_reply(401, {"detail": detail})

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        body: dict[str, object] = {"tier": "creator"}
        remaining = account.meters["characters"]
        if remaining is not None:
            used = account.spent["characters"]
            body["character_count"] = used
            body["character_limit"] = EXACT.add(remaining, used)
        body.update(
            {
                "can_extend_character_limit": False,
                "allowed_to_extend_character_limit": False,
                "next_character_count_reset_unix": account.period_reset_unix,
                "voice_slots_used": 3,
                "voice_limit": 30,
                "professional_voice_limit": 1,
                "can_extend_voice_limit": False,
                "can_use_instant_voice_cloning": True,
                "can_use_professional_voice_cloning": True,
                "currency": "usd",
                "status": "active",
                "billing_period": "monthly_period",
                "character_refresh_period": "monthly_period",
            }
        )
        return self.shape_body(body, shape)

    def job_cost(self, meter: Meter, payload: Mapping[str, object]) -> Decimal:
        # The real request has only the text, whose length is the cost.
        if "cost" not in payload and isinstance(payload.get("text"), str):
            return Decimal(len(str(payload["text"])))
        return super().job_cost(meter, payload)

    def insufficient(self, account: Account, meter: str, cost: Decimal) -> Reply:
        # A quota failure that says 401: telling it from a bad key is the adapter's job.
        remaining = account.meters["characters"] or ZERO
        limit = EXACT.add(remaining, account.spent["characters"])
        message = (
            f"This request exceeds your quota of {plain(limit)}. You have {plain(remaining)} "
            f"credits remaining, while {plain(cost)} credits are required for this request."
        )
        return json_reply(401, {"detail": {"status": "quota_exceeded", "message": message}})

    def reset_period(self, account: Account) -> None:
        remaining = account.meters["characters"]
        if remaining is not None:
            account.meters["characters"] = EXACT.add(remaining, account.spent["characters"])
        account.spent["characters"] = ZERO
        account.period_reset_unix = _month_later(account.period_reset_unix)

    def describe(self, account: Account) -> dict[str, object]:
        return {"next_character_count_reset_unix": account.period_reset_unix}


def _month_later(unix: int) -> int:
    """The same day and time a calendar month later (the month's last day if it is shorter)."""
    moment = datetime.fromtimestamp(unix, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


# ---------------------------------------------------------------- Deepgram


class DeepgramDialect(Dialect):
    """A project's balances, one meter per unit (``usd``; ``hour`` for older plans).

    Each meter is shown as two balances, a promotional one (up to 200) and a paid one, so
    that a reader must add them up.
    """

    name = "deepgram"
    meters = (Meter("usd", Decimal("250.00")), Meter("hour", None))
    routes = (
        Route("GET", "/v1/projects/{project_id}/balances", READ),
        Route("POST", "/v1/listen", JOB),
    )
    auth_scheme = "Token"
    project_id = "sandbox-project"
    promo: ClassVar[Decimal] = Decimal("200")

    def unauthorized(self, header: str | None) -> Reply:
        return json_reply(
            401,
            {
                "err_code": "INVALID_AUTH",
                "err_msg": "Invalid credentials.",
                "request_id": _request_id(),
            },
        )

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        if params.get("project_id") != self.project_id:
            return json_reply(
                404,
                {
                    "err_code": "NOT_FOUND",
                    "err_msg": "Project not found",
                    "request_id": _request_id(),
                },
            )
        balances: list[dict[str, object]] = []
        for number, name in enumerate(self.meter_names, start=1):
            amount = account.meters[name]
            if amount is None:
                continue
            promo, paid = _split(amount, self.promo)
            balances += [
                {
                    "balance_id": f"5a4d0b1e-{number:04d}-4c2f-9a7e-00000000000{number}",
                    "amount": promo,
                    "units": name,
                    "purchase_order_id": f"promo-sandbox-{name}",
                },
                {
                    "balance_id": f"5a4d0b1e-{number:04d}-4c2f-9a7e-10000000000{number}",
                    "amount": paid,
                    "units": name,
                    "purchase_order_id": f"po-sandbox-{number:04d}",
                },
            ]
        return self.shape_body({"balances": balances}, shape)

    def insufficient(self, account: Account, meter: str, cost: Decimal) -> Reply:
        return json_reply(
            402,
            {
                "err_code": "INSUFFICIENT_CREDITS",
                "err_msg": "Project does not have enough credits for this request.",
                "request_id": _request_id(),
            },
        )


# ---------------------------------------------------------------- DeepSeek


class DeepSeekDialect(Dialect):
    """One balance per currency (``usd``; ``cny`` too if set), amounts as strings.

    Each total is shown as a granted part (up to 10) and a topped-up rest; the control API may
    set a total below zero, as DeepSeek's own can be.
    """

    name = "deepseek"
    meters = (
        Meter("usd", Decimal("110.00"), negative=True),
        Meter("cny", None, negative=True),
    )
    routes = (
        Route("GET", "/user/balance", READ),
        Route("POST", "/chat/completions", JOB),
    )
    granted: ClassVar[Decimal] = Decimal("10")

    def unauthorized(self, header: str | None) -> Reply:
        return json_reply(
            401,
            {
                "error": {
                    "message": "Authentication Fails, Your api key is invalid",
                    "type": "authentication_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        )

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        infos: list[dict[str, object]] = []
        for name in self.meter_names:
            total = account.meters[name]
            if total is None:
                continue
            granted, topped_up = _split(total, self.granted)
            infos.append(
                {
                    "currency": name.upper(),
                    "total_balance": plain(total),
                    "granted_balance": plain(granted),
                    "topped_up_balance": plain(topped_up),
                }
            )
        available = any(value is not None and value > 0 for value in account.meters.values())
        return self.shape_body({"is_available": available, "balance_infos": infos}, shape)

    def insufficient(self, account: Account, meter: str, cost: Decimal) -> Reply:
        return json_reply(
            402,
            {
                "error": {
                    "message": "Insufficient Balance",
                    "type": "unknown_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        )


# ---------------------------------------------------------------- custom


class CustomDialect(Dialect):
    """A made-up vendor for declarative adapters: a request plan and a wallet in cents.

    ``requests`` is the plan's quota minus what was used (whole numbers); ``wallet`` is in
    currency units with at most two places, shown as whole cents. Its quota failure is a 400.
    """

    name = "custom"
    meters = (
        Meter("requests", Decimal("1000"), places=0),
        Meter("wallet", Decimal("25.00"), places=2),
    )
    routes = (
        Route("GET", "/v2/account/balance", READ),
        Route("POST", "/v2/jobs", JOB),
    )
    auth_header = "X-Api-Key"
    auth_scheme = None
    quota_status = 400

    def unauthorized(self, header: str | None) -> Reply:
        return json_reply(401, {"error": "unauthorized", "message": "Invalid API key."})

    def read(
        self,
        route: Route,
        params: Mapping[str, str],
        account: Account,
        shape: Mapping[str, object],
    ) -> Reply:
        details: dict[str, object] = {"id": "acct_sandbox"}
        requests, wallet = account.meters["requests"], account.meters["wallet"]
        if requests is not None:
            used = account.spent["requests"]
            details["plan"] = {"quota": _whole(EXACT.add(requests, used)), "used": _whole(used)}
        if wallet is not None:
            details["wallet"] = {"balance_cents": _whole(wallet.scaleb(2, context=EXACT))}
        return self.shape_body({"account": details}, shape)

    def insufficient(self, account: Account, meter: str, cost: Decimal) -> Reply:
        message = "Your credit balance is too low to run this job."
        return json_reply(400, {"error": "bad_request", "message": message})


# ---------------------------------------------------------------- the table


#: Vendor name -> its dialect, in the order ``preflight simulate --vendor`` lists them.
DIALECTS: Final[Mapping[str, Dialect]] = MappingProxyType(
    {
        dialect.name: dialect
        for dialect in (
            DefaultDialect(),
            OpenRouterDialect(),
            ElevenLabsDialect(),
            DeepgramDialect(),
            DeepSeekDialect(),
            CustomDialect(),
        )
    }
)

#: The vendor names, for choices and help text.
VENDORS: Final = tuple(DIALECTS)


def dialect_of(vendor: str) -> Dialect:
    """The dialect called ``vendor``; ValueError naming the known ones otherwise."""
    try:
        return DIALECTS[vendor]
    except KeyError:
        raise BadInput(f"vendor must be one of {', '.join(VENDORS)}, not {vendor!r}") from None


__all__ = [
    "DEFAULT_VENDOR",
    "DIALECTS",
    "FIRST_RESET_UNIX",
    "VENDORS",
    "Account",
    "Dialect",
    "Meter",
    "Route",
    "dialect_of",
]
