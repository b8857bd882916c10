"""The one bound on every amount preflight accepts, wherever it comes from.

An amount (a vendor balance, a job's cost, a need, a reserve, a threshold) has at
most :data:`MAX_INTEGER_DIGITS` digits before the decimal point and at most
:data:`MAX_FRACTION_DIGITS` after it. No real balance comes near that, and it keeps
the canonical text of any amount within the 64 characters SQLite stores
(40 + 20 digits, a point and a sign).

The bound is checked on the ``Decimal``'s tuple (digit count and exponent) *before*
anything formats, quantizes or computes with it: ``Decimal("1e999999999")`` is a few
bytes, but its fixed-point text would be a gigabyte.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final

__all__ = [
    "MAX_FRACTION_DIGITS",
    "MAX_INTEGER_DIGITS",
    "MAX_NUMBER_CHARS",
    "AmountError",
    "bounded",
    "parse_amount",
    "parse_amount_text",
    "parse_signed_amount",
    "preview",
]

#: Digits before the decimal point of any amount.
MAX_INTEGER_DIGITS: Final = 40
#: Digits after the decimal point of any amount (trailing zeros count: they are stored).
MAX_FRACTION_DIGITS: Final = 20
#: Characters of one number's text: longer input cannot be an amount within the bound,
#: except written in some absurd way, and is refused before Decimal() or int() reads it.
MAX_NUMBER_CHARS: Final = 100

_PREVIEW_CHARS: Final = 40
# JSON-number-like text (with an optional + and a bare ".5" or "5."), ASCII digits only:
# Decimal() alone would also take "NaN", "1_000" and digits of other scripts.
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class AmountError(ValueError):
    """An amount outside the bound, or not an amount at all. The message names no field."""


def preview(value: object) -> str:
    """``repr(value)`` cut to a readable length: input can be megabytes long."""
    if isinstance(value, str) and len(value) > _PREVIEW_CHARS:
        # Cut before repr() so that a huge string is never copied whole.
        return repr(value[:_PREVIEW_CHARS]) + "..."
    text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS + 2 else text[: _PREVIEW_CHARS + 2] + "..."


def bounded(amount: Decimal, shown: object = None, *, signed: bool = False) -> Decimal:
    """``amount`` if it is finite, non-negative and within the bound; ``-0`` becomes ``0``.

    ``shown`` is what the caller received (for the message); by default ``amount``.
    ``signed`` admits a negative amount (a balance an account overdrew) within the bound.
    Raises :class:`AmountError`. Only the tuple is inspected, so this is cheap for any input.
    """
    shown = amount if shown is None else shown
    if not amount.is_finite():
        raise AmountError(f"not a finite amount: {preview(shown)}")
    _sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, so never the 'n'/'N'/'F' markers
    if exponent < -MAX_FRACTION_DIGITS:
        raise AmountError(
            f"more than {MAX_FRACTION_DIGITS} digits after the point: {preview(shown)}"
        )
    if amount.is_zero():
        # -0 and 0E+5 are plain zero; a zero's own fraction digits ("0.00") are kept.
        return Decimal((0, (0,), min(exponent, 0)))
    if len(digits) + exponent > MAX_INTEGER_DIGITS:
        raise AmountError(
            f"more than {MAX_INTEGER_DIGITS} digits before the point: {preview(shown)}"
        )
    if amount < 0 and not signed:
        raise AmountError(f"must be a non-negative amount: {preview(shown)}")
    return amount


def parse_amount(value: object) -> Decimal:
    """A ``Decimal``, ``int`` or decimal text as a bounded, non-negative, exact amount.

    Floats and bools are refused (a float has already lost the exact value), and so is
    text longer than :data:`MAX_NUMBER_CHARS`. Raises :class:`AmountError`.
    """
    if isinstance(value, bool | float):
        raise AmountError(f"not an exact amount: {preview(value)}")
    if isinstance(value, Decimal):
        return bounded(value)
    if isinstance(value, int):
        # Checked on the int itself: str() of a huge int is slow (and refused past 4300 digits).
        if value.bit_length() > 4 * MAX_INTEGER_DIGITS:
            digits = int(value.bit_length() * 0.30103) + 1
            raise AmountError(
                f"more than {MAX_INTEGER_DIGITS} digits before the point: "
                f"an integer of about {digits} digits"
            )
        return bounded(Decimal(value))
    if isinstance(value, str):
        return parse_amount_text(value)
    return parse_amount_text(str(value))


def parse_signed_amount(value: object) -> Decimal:
    """:func:`parse_amount`, but a negative amount is kept: some vendors let a balance run
    below zero, and that reading is evidence, not an error. The bound is the same."""
    if isinstance(value, bool | float):
        raise AmountError(f"not an exact amount: {preview(value)}")
    if isinstance(value, Decimal):
        return bounded(value, signed=True)
    if isinstance(value, int):
        return -parse_amount(-value) if value < 0 else parse_amount(value)
    text = (value if isinstance(value, str) else str(value)).strip()
    if text.startswith("-") and text[1:2] not in ("-", "+"):
        return bounded(-parse_amount_text(text[1:]), text, signed=True)
    return parse_amount_text(text)


@lru_cache(maxsize=4096)
def parse_amount_text(value: str) -> Decimal:
    """:func:`parse_amount` of text. Cached: the same few cost texts recur on every line of
    a bulk import, and a Decimal is immutable."""
    text = value.strip()
    if len(text) > MAX_NUMBER_CHARS:
        raise AmountError(
            f"not an amount of at most {MAX_INTEGER_DIGITS} digits before the point and "
            f"{MAX_FRACTION_DIGITS} after it: {preview(value)}"
        )
    if not _NUMBER.fullmatch(text):
        raise AmountError(f"not a decimal amount: {preview(value)}")
    try:
        amount = Decimal(text)
    except InvalidOperation:  # an exponent beyond what the decimal module can hold
        raise AmountError(f"not a decimal amount: {preview(value)}") from None
    return bounded(amount, value)
