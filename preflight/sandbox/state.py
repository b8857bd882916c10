"""The sandbox's in-memory state, and the checks on everything that changes it.

:class:`SandboxState` holds the account (meters, webhook URL, identity), the queue of faults,
the profile's shape and the vendor request counters, all behind one lock, so that HTTP
handlers, control requests and in-process helpers may run concurrently. Its methods take caller
input as it comes (a JSON value or a Python argument) and raise :class:`BadInput` for anything
the sandbox refuses, so that the control API and :class:`~preflight.sandbox.SandboxServer`'s
helpers cannot drift apart. No I/O: what a fault does to a connection is the server's business.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from preflight.sandbox.protocol import (
    CREDITS,
    EXACT,
    METERS,
    QUOTA,
    VENDOR_ROUTES,
    ZERO,
    BadInput,
    as_amount,
    as_meter,
    as_object,
    as_optional_amount,
    as_seconds,
    error_code,
    plain,
    plain_meters,
    reject_unknown_keys,
    render,
)

_DEFAULT_MALFORMED_BODY: Final = "<html><body>502 Bad Gateway</body></html>"
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The server owns the framing of every response; a fault may not lie about it.
_RESERVED_HEADERS: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-type"}
)


# ---------------------------------------------------------------- faults and shape


@dataclass
class Fault:
    """A queued fault: what answers the next ``remaining`` vendor requests instead of the vendor.

    ``kind`` is ``status`` or ``malformed`` (answer ``status``, ``body``, ``content_type`` and
    ``headers``), ``latency`` (wait ``seconds``, then answer normally), ``drip`` (the normal
    answer, one byte every ``seconds``) or ``hang`` (never answer).
    """

    kind: str
    remaining: int  # -1: until reset
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0  # latency: the delay; drip: the interval between bytes

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"kind": self.kind, "remaining": self.remaining}
        if self.kind in ("status", "malformed"):
            described["status"] = self.status
        if self.kind in ("latency", "drip"):
            described["seconds"] = self.seconds
        return described


_FAULT_FIELDS: Final = {
    "status": frozenset({"status", "headers", "body", "content_type"}),
    "malformed": frozenset({"status", "headers", "body", "content_type"}),
    "latency": frozenset({"seconds"}),
    "drip": frozenset({"interval"}),
    "hang": frozenset(),
}


def _fault_headers(value: object) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for name, raw in as_object(value, "fault headers").items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise BadInput(f"fault header {name!r} is not allowed")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise BadInput(f"fault header {name!r} must be a string")
        text = str(raw)
        if "\r" in text or "\n" in text:
            raise BadInput(f"fault header {name!r} must be one line")
        headers.append((name, text))
    return tuple(headers)


def _status(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"fault status must be an integer from {low} to {high}, not {value!r}")
    if value in (204, 304):  # these cannot carry the body a fault sends
        raise BadInput(f"fault status {value} cannot carry a body")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a string")
    return value


def _parse_fault(raw: object) -> Fault:
    spec = as_object(raw, "a fault")
    kind = spec.get("kind", "status" if "status" in spec else None)
    if not isinstance(kind, str) or kind not in _FAULT_FIELDS:
        raise BadInput(
            f"a fault needs a status or a kind ({', '.join(_FAULT_FIELDS)}), not {kind!r}"
        )
    reject_unknown_keys(spec, _FAULT_FIELDS[kind] | {"kind", "count"}, f"{kind} fault")
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or (count < 1 and count != -1):
        raise BadInput(f"fault count must be a positive integer or -1, not {count!r}")
    headers = _fault_headers(spec.get("headers", {}))

    if kind == "status":
        status = _status(spec.get("status"), 400, 599)
        if "body" in spec:
            body = _text(spec["body"], "fault body").encode("utf-8")
        else:
            body = render({"error": error_code(status)}).encode("utf-8")
        content_type = _text(spec.get("content_type", "application/json"), "content_type")
        return Fault(kind, count, status, body, content_type, headers)
    if kind == "malformed":
        return Fault(
            kind,
            count,
            _status(spec.get("status", 200), 200, 599),
            _text(spec.get("body", _DEFAULT_MALFORMED_BODY), "fault body").encode("utf-8"),
            _text(spec.get("content_type", "text/html"), "content_type"),
            headers,
        )
    if kind == "latency":
        if "seconds" not in spec:
            raise BadInput("a latency fault needs seconds")
        return Fault(kind, count, seconds=as_seconds(spec["seconds"], "seconds", 600))
    if kind == "drip":
        return Fault(kind, count, seconds=as_seconds(spec.get("interval", 0.1), "interval", 10))
    return Fault(kind, count)


def parse_faults(raw: object) -> list[Fault]:
    """One fault spec or a list of them; all or nothing: one bad fault refuses them all."""
    items: Sequence[object] = raw if isinstance(raw, list) else [raw]
    return [_parse_fault(item) for item in items]


def parse_shape(raw: object) -> dict[str, object]:
    """A checked shape spec: ``drop`` (field names), ``as_strings`` (bool), ``extra`` (JSON)."""
    spec = as_object(raw, "shape")
    reject_unknown_keys(spec, frozenset({"drop", "as_strings", "extra"}), "shape")
    shape: dict[str, object] = {}
    if "drop" in spec:
        drop = spec["drop"]
        if not isinstance(drop, list) or not all(isinstance(name, str) for name in drop):
            raise BadInput("shape drop must be a list of field names")
        shape["drop"] = list(drop)
    if "as_strings" in spec:
        if not isinstance(spec["as_strings"], bool):
            raise BadInput("shape as_strings must be true or false")
        shape["as_strings"] = spec["as_strings"]
    if "extra" in spec:
        extra = dict(as_object(spec["extra"], "shape extra"))
        try:
            render(extra)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"shape extra is not JSON: {exc}") from None
        shape["extra"] = extra
    return shape


# ---------------------------------------------------------------- the state


class NotCharged(Exception):
    """A paid job the balance cannot pay for; nothing was charged.

    ``reason`` says why when it is more than "the meter is too low".
    """

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "insufficient balance")
        self.reason = reason


class SandboxState:
    """Everything the sandbox vendor remembers, behind one lock.

    ``credits`` / ``quota`` are the starting ``credits`` and ``api_quota_remaining`` meters;
    ``None`` leaves a meter out of the profile.
    """

    def __init__(
        self,
        *,
        credits: Decimal | None,
        quota: Decimal | None,
        token: str,
        user_id: str,
        tier: str,
    ) -> None:
        if not token:
            raise ValueError("the sandbox token cannot be empty")
        self._token = token
        self._user_id = user_id
        self._tier = tier
        self._lock = threading.Lock()
        self._meters: dict[str, Decimal | None] = {
            CREDITS: as_optional_amount(credits, "credits"),
            QUOTA: as_optional_amount(quota, "quota"),
        }
        self._faults: deque[Fault] = deque()
        self._shape: dict[str, object] = {}
        self._counts: dict[str, int] = dict.fromkeys(VENDOR_ROUTES, 0)
        self._webhook_url: str | None = None

    # -- the balance

    def balance(self) -> dict[str, Decimal | None]:
        """``{"credits": ..., "api_quota_remaining": ...}``; None for a meter left out (a copy)."""
        with self._lock:
            return dict(self._meters)

    def set_meters(self, changes: Mapping[str, object]) -> None:
        """Set the named meters (``credits``, ``api_quota_remaining``); None removes one."""
        reject_unknown_keys(changes, frozenset(METERS), "balance")
        checked = {name: as_optional_amount(value, name) for name, value in changes.items()}
        with self._lock:
            self._meters.update(checked)

    def consume(self, amount: object, meter: object) -> dict[str, Decimal]:
        """Spend ``amount`` from ``meter`` (or ``both``: each meter present), clamped at 0.

        Returns what each meter lost. Naming a meter the account does not have is BadInput.
        """
        spend = as_amount(amount, "amount")
        which = as_meter(meter, allow_both=True)
        with self._lock:
            names = (
                [m for m in METERS if self._meters[m] is not None] if which == "both" else [which]
            )
            consumed: dict[str, Decimal] = {}
            for name in names:
                current = self._meters[name]
                if current is None:
                    raise BadInput(f"the account has no {name} meter")
                spent = min(spend, current)
                self._meters[name] = EXACT.subtract(current, spent)
                consumed[name] = spent
            return consumed

    def topup(self, amount: object, meter: object) -> None:
        """Add ``amount`` to ``meter`` (a missing meter starts from 0)."""
        add = as_amount(amount, "amount")
        name = as_meter(meter)
        with self._lock:
            self._meters[name] = EXACT.add(self._meters[name] or ZERO, add)

    def charge(self, cost: Decimal, meter: str | None) -> tuple[str, Decimal]:
        """Charge a paid job's ``cost`` to ``meter``; the meter charged and what it has left.

        ``meter`` None: ``credits`` if the account has that meter, else the quota. Raises
        :class:`NotCharged` (and charges nothing) when the meter is missing or too low.
        """
        with self._lock:
            if meter is None:
                meter = CREDITS if self._meters[CREDITS] is not None else QUOTA
            current = self._meters[meter]
            if current is None:
                raise NotCharged(f"the account has no {meter} meter")
            if current < cost:
                raise NotCharged
            left = EXACT.subtract(current, cost)
            self._meters[meter] = left
            return meter, left

    # -- faults, shape and counters

    def inject(self, spec: object) -> int:
        """Queue a fault spec (or a list of them); how many faults are queued now."""
        faults = parse_faults(spec)
        with self._lock:
            self._faults.extend(faults)
            return len(self._faults)

    def set_shape(self, spec: object) -> None:
        """Merge a shape spec (drop / as_strings / extra) into the profile's shape."""
        parsed = parse_shape(spec)
        with self._lock:
            self._shape.update(parsed)

    def shape(self) -> dict[str, object]:
        """The current shape (a copy)."""
        with self._lock:
            return dict(self._shape)

    def reset(self) -> None:
        """Clear faults and shape and zero the request counters; the balance is kept."""
        with self._lock:
            self._faults.clear()
            self._shape = {}
            self._counts = dict.fromkeys(VENDOR_ROUTES, 0)

    def request_counts(self) -> dict[str, int]:
        """Vendor requests seen since start or reset, by ``"METHOD path"`` (a copy)."""
        with self._lock:
            return dict(self._counts)

    def begin_vendor_request(self, route: str) -> Fault | None:
        """Count a vendor request and take the fault (if any) that answers it."""
        with self._lock:
            self._counts[route] += 1
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.popleft()
            return fault

    # -- the profile

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the sandbox's bearer token."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        # compare_digest: the sandbox is a test double, but timing-safe costs nothing.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8"), self._token.encode("utf-8")
        )

    def profile(self) -> dict[str, object]:
        """The profile body as the vendor would send it, shaped."""
        with self._lock:
            return self._shaped_profile()

    def update_profile(self, webhook_url: str | None) -> dict[str, object]:
        """Store ``webhook_url`` (already checked; None: unchanged) and return the profile."""
        with self._lock:
            if webhook_url is not None:
                self._webhook_url = webhook_url
            return self._shaped_profile()

    def _shaped_profile(self) -> dict[str, object]:
        # Called with the lock held.
        as_strings = bool(self._shape.get("as_strings", False))
        profile: dict[str, object] = {"user_id": self._user_id}
        for name, value in (
            (QUOTA, self._meters[QUOTA]),
            ("tier", self._tier),
            (CREDITS, self._meters[CREDITS]),
        ):
            if isinstance(value, Decimal):
                profile[name] = plain(value) if as_strings else value
            elif value is not None:
                profile[name] = value
        if self._webhook_url is not None:
            profile["webhookUrl"] = self._webhook_url
        drop = self._shape.get("drop", [])
        assert isinstance(drop, list)
        for name in drop:
            profile.pop(name, None)
        extra = self._shape.get("extra", {})
        assert isinstance(extra, dict)
        profile.update(extra)
        return profile

    # -- everything at once

    def snapshot(self) -> dict[str, object]:
        """What ``GET /_sandbox/state`` answers: balance as text, counters, faults, shape."""
        with self._lock:
            return {
                "balance": plain_meters(self._meters),
                "requests": dict(self._counts),
                "faults_queued": len(self._faults),
                "faults": [fault.describe() for fault in self._faults],
                "shape": dict(self._shape),
                "webhookUrl": self._webhook_url,
            }
