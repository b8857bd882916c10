"""The sandbox's in-memory state, and the checks on everything that changes it.

:class:`SandboxState` holds the vendor's dialect and account (meters, what was spent,
webhook URL, identity), the queue of faults, the balance body's shape and the vendor request
counters, all behind one lock, so that HTTP handlers, control requests and in-process helpers
may run concurrently. Its methods take caller input as it comes (a JSON value or a Python
argument) and raise :class:`BadInput` for anything the sandbox refuses, so that the control
API and :class:`~preflight.sandbox.SandboxServer`'s helpers cannot drift apart. What a
vendor's bodies say is its :class:`~preflight.sandbox.dialects.Dialect`'s business; no I/O:
what a fault does to a connection is the server's business.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from preflight.sandbox.dialects import Account, DefaultDialect, Dialect, Route
from preflight.sandbox.protocol import (
    EXACT,
    ZERO,
    BadInput,
    Reply,
    as_amount,
    as_object,
    as_seconds,
    error_code,
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


class SandboxState:
    """Everything the sandbox vendor remembers, behind one lock.

    ``meters`` are the starting values of the dialect's meters (None: absent); a meter not
    given starts at the dialect's default.
    """

    def __init__(
        self,
        *,
        dialect: Dialect,
        meters: Mapping[str, object] | None = None,
        token: str,
        user_id: str = "user_123",
        tier: str = "pro",
    ) -> None:
        if not token:
            raise ValueError("the sandbox token cannot be empty")
        self.dialect = dialect
        self._token = token
        self._lock = threading.Lock()
        self._account: Account = dialect.new_account(meters)
        self._account.user_id = user_id
        self._account.tier = tier
        self._faults: deque[Fault] = deque()
        self._shape: dict[str, object] = {}
        self._counts: dict[str, int] = dict.fromkeys(dialect.route_keys, 0)

    # -- the balance

    def balance(self) -> dict[str, Decimal | None]:
        """Each meter by name; None for a meter left out (a copy)."""
        with self._lock:
            return dict(self._account.meters)

    def spent(self) -> dict[str, Decimal]:
        """What jobs and ``consume`` took from each meter (this period, where there are
        periods; a copy)."""
        with self._lock:
            return dict(self._account.spent)

    def set_meters(self, changes: Mapping[str, object]) -> None:
        """Set the named meters; None removes one. Unknown names are BadInput."""
        self.dialect.reject_unknown(changes)
        checked = {name: self.dialect.check(name, value) for name, value in changes.items()}
        with self._lock:
            self._account.meters.update(checked)

    def consume(self, amount: object, meter: object = None) -> dict[str, Decimal]:
        """Spend ``amount`` from ``meter`` (``both``/``all``: each meter present; None: the
        dialect's default), clamped at 0. Returns what each meter lost.

        Naming a meter the account does not have is BadInput.
        """
        spend = as_amount(amount, "amount")
        with self._lock:
            names = self.dialect.consume_names(self._account, meter)
            fitted = {
                name: self.dialect.fit(self.dialect.meter(name), spend, "amount") for name in names
            }
            consumed: dict[str, Decimal] = {}
            for name in names:
                current = self._account.meters[name]
                assert current is not None
                spent = max(min(fitted[name], current), ZERO)
                self._account.debit(name, spent)
                consumed[name] = spent
            return consumed

    def topup(self, amount: object, meter: object = None) -> str:
        """Add ``amount`` to ``meter`` (None: the dialect's default; a missing meter starts
        from 0); the meter topped up."""
        add = as_amount(amount, "amount")
        name = self.dialect.topup_default() if meter is None else meter
        if not isinstance(name, str):
            raise BadInput(f"meter must be a meter's name, not {name!r}")
        self.dialect.reject_unknown({name: None})
        added = self.dialect.fit(self.dialect.meter(name), add, "amount")
        with self._lock:
            self._account.meters[name] = EXACT.add(self._account.meters[name] or ZERO, added)
        return name

    def reset_period(self) -> None:
        """Start a new billing period (a vendor with periods; BadInput otherwise)."""
        with self._lock:
            self.dialect.reset_period(self._account)

    # -- the vendor's answers

    def authorized(self, header: str | None) -> bool:
        """Whether the dialect's auth header carries the sandbox's token."""
        return self.dialect.authorized(header, self._token)

    def read(self, route: Route, params: Mapping[str, str]) -> Reply:
        """The answer to a balance read, shaped."""
        with self._lock:
            return self.dialect.read(route, params, self._account, self._shape)

    def job(self, payload: Mapping[str, object]) -> Reply:
        """Run a paid job: charged, or the vendor's quota answer and nothing charged."""
        with self._lock:
            return self.dialect.job(self._account, payload)

    def update_profile(self, webhook_url: str | None) -> dict[str, object]:
        """The default vendor's profile update: store ``webhook_url`` (already checked; None:
        unchanged) and return the profile, shaped."""
        with self._lock:
            if webhook_url is not None:
                self._account.webhook_url = webhook_url
            return self._profile()

    def _profile(self) -> dict[str, object]:
        # Called with the lock held.
        return DefaultDialect.profile(self._account, self._shape)

    # -- faults, shape and counters

    def inject(self, spec: object) -> int:
        """Queue a fault spec (or a list of them); how many faults are queued now."""
        faults = parse_faults(spec)
        with self._lock:
            self._faults.extend(faults)
            return len(self._faults)

    def set_shape(self, spec: object) -> None:
        """Merge a shape spec (drop / as_strings / extra) into the balance body's shape."""
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
            self._counts = dict.fromkeys(self.dialect.route_keys, 0)

    def request_counts(self) -> dict[str, int]:
        """Vendor requests seen since start or reset, by ``"METHOD template"`` (a copy)."""
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

    # -- everything at once

    def snapshot(self) -> dict[str, object]:
        """What ``GET /_sandbox/state`` answers: vendor, balance and spent as text, counters,
        faults, shape, and what only this vendor has."""
        with self._lock:
            return {
                "vendor": self.dialect.name,
                "balance": plain_meters(self._account.meters),
                "spent": plain_meters(self._account.spent),
                "requests": dict(self._counts),
                "faults_queued": len(self._faults),
                "faults": [fault.describe() for fault in self._faults],
                "shape": dict(self._shape),
                **self.dialect.describe(self._account),
            }
