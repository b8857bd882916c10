"""What an adapter is: how one vendor's balance is read and its quota failures recognised.

An adapter is data plus a pure reading function: the paths to GET, the header that carries
the token, and :meth:`Adapter.read`, which turns the vendor's decoded JSON bodies (numbers
already exact ``Decimal``) into a :class:`Reading`: meters by name, the account's labels,
and, when the vendor says so, why the account cannot pay for calls at all. The HTTP side
(retries, deadlines, body caps, token scrubbing) is :mod:`preflight.vendor`'s and is the
same for every adapter.

A quota failure is an HTTP 402 for every adapter (the contract's rule); an adapter may
recognise more (:meth:`Adapter.quota_signal`): ElevenLabs answers an exhausted quota with
a 401 whose body says ``quota_exceeded``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Final, NoReturn

from preflight.domain.amounts import AmountError, parse_amount, parse_signed_amount, preview
from preflight.domain.errors import UnusableResponseError, UsageError

#: A meter's name: it is a `--meter` value, a JSON key and a metrics label.
METER_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


def unusable(detail: str) -> NoReturn:
    """Refuse a body: the client adds the status and the attempts, and scrubs the text."""
    raise UnusableResponseError(f"unusable response: {detail}")


@dataclass(frozen=True)
class Reading:
    """What one balance reading says, before it becomes a stored snapshot.

    ``meters`` maps every meter the adapter read to its value (None: absent or null), in
    the adapter's order of preference for ``auto``. ``blocked`` is the vendor's own word
    that the account cannot pay for calls whatever its balance (a no-go).
    """

    meters: Mapping[str, Decimal | None]
    user_id: str | None = None
    tier: str | None = None
    blocked: str | None = None


def lookup(data: object, path: str) -> object:
    """The value at a dotted ``path`` (``data.limit_remaining``, ``balances.0.amount``).

    A missing key, an index past the end or a scalar on the way gives None: an absent
    meter is absent, not an error.
    """
    node = data
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def amount(value: object, name: str, *, signed: bool = False) -> Decimal | None:
    """A meter's value: None stays None; a number or numeric string becomes an exact amount.

    ``signed`` admits a negative balance (a vendor that lets an account run into debt);
    otherwise a negative value makes the body unusable, as does a bool, a list, text that
    is not a number, or an amount outside the bound.
    """
    if value is None:
        return None
    # bool first: the vendor sending true is a bug, not 1 credit.
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        unusable(f"{name} is not a number or numeric string: {preview(value)}")
    try:
        return parse_signed_amount(value) if signed else parse_amount(value)
    except AmountError as exc:
        unusable(f"{name}: {exc}")


def label(value: object, name: str, limit: int, *, numbers_ok: bool = False) -> str | None:
    """A short text label (user id, tier) or None; unusable when it cannot be stored."""
    if value is None:
        return None
    if numbers_ok and isinstance(value, Decimal | int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        unusable(f"{name} is not a string: {preview(value)}")
    if len(value) > limit:
        unusable(f"{name} is longer than {limit} characters")
    if "\x00" in value or not _utf8(value):
        unusable(f"{name} contains NUL or a lone surrogate")
    return value


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def meter_name(text: object, where: str) -> str:
    """A meter name from a vendor's body (a currency, a unit), lower-cased and checked."""
    if not isinstance(text, str) or not METER_NAME.fullmatch(text.strip().lower()):
        unusable(f"{where} is not a usable meter name: {preview(text)}")
    return text.strip().lower()


@dataclass(frozen=True)
class Adapter:
    """One vendor's balance API. Subclasses fill in the class variables and :meth:`read`.

    ``meters`` are the names a `--meter` may take, in ``auto``'s order of preference;
    ``open_meters`` adapters also read meters named by the body (a currency, a unit), so
    any well-formed name is accepted and an absent one is reported absent at the check.
    """

    name: ClassVar[str]
    default_url: ClassVar[str]
    meters: tuple[str, ...] = ()
    open_meters: bool = False
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    #: Statuses other than 402 whose job failures are quota failures, and the text the
    #: vendor's error body must contain for them (None: the status alone says so).
    quota_statuses: frozenset[int] = frozenset()
    quota_text: str | None = None
    supports_update: bool = False
    options: Mapping[str, object] = field(default_factory=dict, compare=False)

    def paths(self) -> tuple[str, ...]:
        """The paths to GET for one reading, in order (most adapters read one)."""
        raise NotImplementedError

    def read(self, bodies: Sequence[object]) -> Reading:
        """The reading from the decoded bodies of :meth:`paths`, or UnusableResponseError."""
        raise NotImplementedError

    def auth_value(self, token: str) -> str:
        return f"{self.auth_scheme} {token}" if self.auth_scheme else token

    def check_meter(self, requested: str) -> None:
        """Refuse a meter this vendor cannot have (``auto`` is always fine)."""
        if requested == "auto" or requested in self.meters:
            return
        if self.open_meters and METER_NAME.fullmatch(requested):
            return
        if self.open_meters:
            raise UsageError(
                "meter: must be auto or a meter name (1-32 lower-case letters, digits or _), "
                f"not {requested!r}"
            )
        # The first vendor's wording, unchanged: "must be auto, credits or api_quota_remaining".
        raise UsageError(f"meter: must be auto, {' or '.join(self.meters)}, not {requested!r}")

    def quota_signal(self, http_status: int | None, error: str | None) -> bool:
        """Whether a failed job with this status and error body is a quota failure (402
        always is: the caller checks that first)."""
        if http_status is None or http_status not in self.quota_statuses:
            return False
        if self.quota_text is None:
            return True
        return error is not None and self.quota_text.casefold() in error.casefold()

    @property
    def recognises_more_quota_failures(self) -> bool:
        return bool(self.quota_statuses)


def object_body(body: object, what: str = "body") -> Mapping[str, object]:
    """``body`` if it is a JSON object, else the body is unusable (``what`` names it)."""
    if not isinstance(body, Mapping):
        kind = "an array" if isinstance(body, list) else "a scalar"
        unusable(f"{what} is {kind}, not a JSON object")
    return body
