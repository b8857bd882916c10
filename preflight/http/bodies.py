"""Request bodies the framework does not parse for us: exact JSON and streamed JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Final

from preflight.domain.amounts import MAX_NUMBER_CHARS
from preflight.errors import UsageError

#: A JSON Lines body streams (never held whole; each line capped by the importer), where a
#: JSON body is read whole (capped by :mod:`preflight.http.edge`).
NDJSON_TYPES: Final = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/json-seq"}
)


def _number(text: str) -> Decimal | int:
    if len(text) > MAX_NUMBER_CHARS:
        raise UsageError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return Decimal(text)


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise UsageError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _constant(name: str) -> object:
    raise UsageError(f"{name} is not a number")


def load_exact_json(body: bytes) -> object:
    """JSON with exact decimals (never a float), as the JSON Lines import reads it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the body is not UTF-8 text") from None
    try:
        return json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise UsageError("not valid JSON: nested too deeply") from None


def _decimal_text(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(type(value).__name__)


def as_lines(items: list[object]) -> Iterator[str]:
    """The elements of a JSON array as JSON Lines (amounts as exact decimal strings)."""
    for item in items:
        yield json.dumps(item, default=_decimal_text, ensure_ascii=False)


def split_lines(pull: Callable[[], bytes | None], limit: int) -> Iterator[bytes]:
    """Lines from the chunks ``pull`` returns (None: the end), each held whole only up to
    ``limit`` bytes: a longer line comes out cut to ``limit`` + 1 bytes (so the importer
    names it too long) and nothing after it is read."""
    buffer = bytearray()
    while (chunk := pull()) is not None:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            yield bytes(buffer[start : end + 1])
            start = end + 1
        del buffer[:start]
        if len(buffer) > limit:
            yield bytes(buffer[: limit + 1])
            return
    if buffer:
        yield bytes(buffer)
