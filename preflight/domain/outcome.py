"""One job outcome as a caller reports it: validated, exact, and comparable to what is stored."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, TypeAlias

from preflight.domain.amounts import (
    MAX_NUMBER_CHARS,
    AmountError,
    parse_amount,
    parse_amount_text,
    preview,
)
from preflight.domain.errors import UsageError
from preflight.domain.vocabulary import OutcomeStatus

QUOTA_HTTP_STATUS: Final = 402
FIELDS: Final = frozenset(
    {
        "job_id",
        "status",
        "cost",
        "expected_cost",
        "http_status",
        "attempt",
        "at",
        "error",
        "quota_failure",
    }
)
MAX_ERROR_CHARS: Final = 4000
#: The longest job id: an orchestrator's own ids fit, e.g. Airflow's 250-character task id
#: with ``[map_index]`` (what ``preflight_job`` records), with room for other schedulers'.
JOB_ID_MAX_LENGTH: Final = 500
#: The job-id rule (1-500 printable characters, :func:`build_outcome`) as far as a regular
#: expression that Python, JSON Schema and Pydantic's Rust engine read alike can say it: it
#: refuses the control characters. JSON Schema has no Unicode categories, so the other
#: unprintable ones (format, private use, unassigned, separators but the space, lone
#: surrogates) are left to :func:`build_outcome` (docs/http.md, "What the schema cannot
#: say"). The HTTP schema takes it from here (http/schemas.py).
JOB_ID_SCHEMA_PATTERN: Final = rf"^[^\x00-\x1f\x7f-\x9f]{{1,{JOB_ID_MAX_LENGTH}}}$"
#: One outcome is a few hundred bytes (an error text is cut at 4000 characters): a longer
#: line is a broken file, and reading it whole would let one line take all memory.
MAX_LINE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class OutcomeInput:
    """A validated outcome. ``at`` None means "now" and is not part of the identity.

    ``cost`` is what the job *consumed*. A quota failure consumed nothing: a cost it
    declares is its expected cost (exactly like ``expected_cost``), and its consumed
    cost becomes 0. (A declared cost of 0 says just that and declares nothing.) A
    failure that is not a quota failure keeps a declared cost as consumed: the vendor
    charged a job that then failed.
    """

    job_id: str
    status: OutcomeStatus
    attempt: int = 1
    cost: Decimal | None = None
    expected_cost: Decimal | None = None
    http_status: int | None = None
    error: str | None = None
    marked_quota: bool = False
    at: datetime | None = None

    @classmethod
    def _validated(
        cls,
        job_id: str,
        status: OutcomeStatus,
        attempt: int,
        cost: Decimal | None,
        expected_cost: Decimal | None,
        http_status: int | None,
        error: str | None,
        marked_quota: bool,
        at: datetime | None,
    ) -> OutcomeInput:
        """Built from values :func:`build_outcome` has checked: the dataclass's ``__init__``
        without its nine ``object.__setattr__`` calls (a bulk import builds millions)."""
        item = object.__new__(cls)
        # Item by item: cheaper than update() with keywords, which builds a dict first.
        fields = item.__dict__
        fields["job_id"] = job_id
        fields["status"] = status
        fields["attempt"] = attempt
        fields["cost"] = cost
        fields["expected_cost"] = expected_cost
        fields["http_status"] = http_status
        fields["error"] = error
        fields["marked_quota"] = marked_quota
        fields["at"] = at
        if status is _FAILED:
            item.__post_init__()
        return item

    def __post_init__(self) -> None:
        if not self.cost or self.status is not OutcomeStatus.FAILED:
            return
        if self.http_status != QUOTA_HTTP_STATUS and not self.marked_quota:
            return
        if self.expected_cost is not None and self.expected_cost != self.cost:
            raise UsageError(
                f"cost: a quota failure consumed nothing, so its cost is its expected cost, "
                f"but expected_cost says otherwise ({self.cost} vs {self.expected_cost})"
            )
        # Frozen, but normalised once here so that every way in (JSON Lines, the CLI,
        # the Python API, an OutcomeInput built by hand) stores the same row.
        object.__setattr__(self, "expected_cost", self.cost)
        object.__setattr__(self, "cost", Decimal(0))

    @property
    def quota_failure(self) -> bool:
        """A failed outcome with HTTP 402, or one the caller marked as quota."""
        return self.status is OutcomeStatus.FAILED and (
            self.http_status == QUOTA_HTTP_STATUS or self.marked_quota
        )

    def differences(self, stored: Mapping[str, Any]) -> list[str]:
        """Fields in which this input contradicts a stored outcome with the same key."""
        mine: dict[str, Any] = {
            "status": self.status.value,
            "cost": self.cost,
            "expected_cost": self.expected_cost,
            "http_status": self.http_status,
            "error": self.error,
            "quota_failure": self.quota_failure,
        }
        if self.at is not None:
            mine["occurred_at"] = self.at
        return [name for name, value in mine.items() if stored[name] != value]


#: An outcome as plain values, in the order of the stored columns: job_id, attempt, status
#: (its text), http_status, cost, expected_cost, error, quota_failure, at, marked_quota —
#: an :class:`OutcomeInput`'s fields, already normalised. A bulk import holds a chunk of
#: these per line until the chunk is stored: a tuple of plain values costs less to build
#: than an object, and Python's cyclic garbage collector stops tracking it, so a chunk
#: held across its collections is not walked by them again and again.
OutcomeRow: TypeAlias = tuple[
    str,
    int,
    str,
    int | None,
    Decimal | None,
    Decimal | None,
    str | None,
    bool,
    datetime | None,
    bool,
]
ROW_STATUS: Final = 2
ROW_QUOTA_FAILURE: Final = 7


def outcome_row(item: OutcomeInput) -> OutcomeRow:
    """The :data:`OutcomeRow` of an outcome."""
    return (
        item.job_id,
        item.attempt,
        item.status.value,
        item.http_status,
        item.cost,
        item.expected_cost,
        item.error,
        item.quota_failure,
        item.at,
        item.marked_quota,
    )


def outcome_from_row(row: OutcomeRow) -> OutcomeInput:
    """The :class:`OutcomeInput` of a row (equal to the one the row was made of:
    normalising a quota failure's cost twice changes nothing)."""
    job_id, attempt, status, http_status, cost, expected_cost, error, _, at, marked = row
    return OutcomeInput._validated(
        job_id, _STATUS_OF[status], attempt, cost, expected_cost, http_status, error, marked, at
    )


def _amount(value: object, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        # Text, the usual case in JSON Lines, straight to the (cached) text parser.
        return parse_amount_text(value) if value.__class__ is str else parse_amount(value)
    except AmountError as exc:
        raise UsageError(f"{name}: {exc}") from None


#: Times preflight accepts (outcome times, ``--since``): real jobs happen in this range, and
#: any window or duration (at most 100 years) added to or taken from such a time stays
#: far inside what ``datetime`` can hold, so no later arithmetic can overflow.
EARLIEST_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(9000, 1, 1, tzinfo=UTC)
# "2026-11-24T09:00:00.123456+05:30" is 32 characters; anything much longer is not a time.
_MAX_TIME_CHARS: Final = 64


def parse_timestamp(value: object, name: str = "at") -> datetime:
    """ISO 8601; a time without an offset is taken as UTC.

    The time must fall in [:data:`EARLIEST_TIME`, :data:`LATEST_TIME`) once in UTC;
    anything else raises :class:`UsageError` naming ``name``.
    """
    if isinstance(value, str):
        return _parse_time_text(value, name)
    return _parse_timestamp(value, name)


@lru_cache(maxsize=4096)
def _parse_time_text(value: str, name: str) -> datetime:
    # Lines of a bulk import often share their times; a datetime is immutable.
    return _parse_timestamp(value, name)


def _parse_timestamp(value: object, name: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if len(text) > _MAX_TIME_CHARS:
            raise UsageError(f"{name}: not an ISO 8601 time: {preview(value)}")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{name}: not an ISO 8601 time: {preview(value)}") from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is a valid ISO time whose UTC lies before year 1.
        moment = EARLIEST_TIME - timedelta(days=1)
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise UsageError(
            f"{name}: must be between {EARLIEST_TIME.date()} and {LATEST_TIME.date()} UTC: "
            f"{preview(value if not isinstance(value, datetime) else value.isoformat())}"
        )
    return moment


# A strict integer: ASCII digits only. int() alone would also take " 402 ", "4_02" and
# digits of other scripts; 7 digits are more than any field here allows.
_DIGITS: Final = re.compile(r"[0-9]{1,7}")


def _integer(value: object, name: str, low: int, high: int) -> int:
    """A JSON integer, or a string of ASCII digits without spaces or signs, in [low, high]."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise UsageError(
            f"{name}: not a whole number (a JSON integer, or a string of digits only): "
            f"{preview(value)}"
        )
    if not low <= number <= high:
        raise UsageError(f"{name}: must be between {low} and {high}: {preview(value)}")
    return number


def _flag(value: object, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UsageError(f"{name}: must be true or false: {value!r}")
    return value


def _error_text(value: object) -> str:
    if not isinstance(value, str):
        raise UsageError(f"error: must be text: {preview(value)}")
    text = value[:MAX_ERROR_CHARS]
    # JSON can spell a lone surrogate ("\\ud800") or NUL: neither can be stored as text
    # (UTF-8 has no encoding for the first, PostgreSQL refuses the second).
    if "\x00" in text or (not text.isascii() and _has_surrogate(text)):
        raise UsageError("error: must be text without NUL characters or lone surrogates")
    return text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_STATUS_OF: Final = {status.value: status for status in OutcomeStatus}
_FAILED: Final = OutcomeStatus.FAILED


def build_outcome(fields: Mapping[str, object]) -> OutcomeInput:
    """Validate one outcome given as a mapping (a JSON line, or the CLI's options)."""
    if not FIELDS.issuperset(fields):
        unknown = set(fields) - FIELDS
        # repr and a cap: a field name is caller text, and may hold a newline or be huge.
        names = ", ".join(preview(name) for name in sorted(map(str, unknown))[:5])
        raise UsageError(f"unknown field(s): {names}{', ...' if len(unknown) > 5 else ''}")
    job_id = fields.get("job_id")
    if (
        not isinstance(job_id, str)
        or not 1 <= len(job_id) <= JOB_ID_MAX_LENGTH
        or not job_id.isprintable()
    ):
        raise UsageError(
            f"job_id: must be 1-{JOB_ID_MAX_LENGTH} printable characters: {preview(job_id)}"
        )
    status_text = fields.get("status")
    status = _STATUS_OF.get(status_text) if isinstance(status_text, str) else None
    if status is None:
        raise UsageError(f"status: must be succeeded or failed: {preview(status_text)}")
    http_status = fields.get("http_status")
    error = fields.get("error")
    if error is not None:
        error = _error_text(error)
    at = fields.get("at")
    # Checked in this order (the first problem of a line is the one reported). The common
    # values (no attempt, no expected cost, no flag) skip a call each: a bulk import
    # validates millions of lines.
    attempt = fields.get("attempt", 1) or 1
    if attempt.__class__ is not int or not 1 <= attempt <= 1_000_000:
        attempt = _integer(attempt, "attempt", 1, 1_000_000)
    cost = _amount(fields.get("cost"), "cost")
    expected = fields.get("expected_cost")
    expected_cost = None if expected is None else _amount(expected, "expected_cost")
    http = None if http_status is None else _integer(http_status, "http_status", 100, 599)
    flag = fields.get("quota_failure")
    marked = False if flag is None else _flag(flag, "quota_failure")
    if at is None:
        moment = None
    elif at.__class__ is str:
        moment = _parse_time_text(at, "at")
    else:
        moment = parse_timestamp(at)
    return OutcomeInput._validated(
        job_id, status, attempt, cost, expected_cost, http, error, marked, moment
    )


_SUCCEEDED_TEXT: Final = OutcomeStatus.SUCCEEDED.value
_FAILED_TEXT: Final = OutcomeStatus.FAILED.value


def _usual_row(fields: dict[str, Any]) -> OutcomeRow | None:
    """``outcome_row(build_outcome(fields))`` for the usual line, in fewer steps; None for
    any other line.

    It takes only values that pass as they are — known fields, JSON integers in range,
    amounts and times as text, a flag as a JSON boolean — through the same parsers and
    caches, so it gives the very same row. Anything else, and any problem, is left to
    :func:`build_outcome`: what is refused, and how the refusal reads, stay its own
    (``tests/unit/test_outcome_fast_path.py`` holds the two together).
    """
    if not FIELDS.issuperset(fields):
        return None
    get = fields.get
    job_id = get("job_id")
    status = get("status")
    attempt = get("attempt", 1)
    http = get("http_status")
    marked = get("quota_failure")
    if (
        job_id.__class__ is not str
        or not 0 < len(job_id) <= JOB_ID_MAX_LENGTH
        or not job_id.isprintable()
        or (status != _SUCCEEDED_TEXT and status != _FAILED_TEXT)
        or attempt.__class__ is not int
        or not 0 < attempt <= 1_000_000
        or (http is not None and (http.__class__ is not int or not 100 <= http <= 599))
        or (marked is not None and marked.__class__ is not bool)
    ):
        return None
    try:
        error = get("error")
        if error is not None:
            error = _error_text(error)
        cost = get("cost")
        if cost.__class__ is str and cost:
            cost = parse_amount_text(cost)
        elif cost is not None:
            cost = _amount(cost, "cost")
        expected = get("expected_cost")
        if expected is not None:
            expected = _amount(expected, "expected_cost")
        at = get("at")
        if at is not None:
            if at.__class__ is not str:
                return None
            at = _parse_time_text(at, "at")
        if status == _FAILED_TEXT:
            # Whether it is a quota failure, and what that does to its cost, is
            # OutcomeInput's to say; failed lines are few.
            return outcome_row(
                OutcomeInput._validated(
                    job_id, _FAILED, attempt, cost, expected, http, error, marked is True, at
                )
            )
    except (AmountError, UsageError):
        return None
    return (
        job_id,
        attempt,
        _SUCCEEDED_TEXT,
        http,
        cost,
        expected,
        error,
        False,  # a quota failure is a failure first, whatever the flag says
        at,
        marked is True,
    )


class _NumberTooLong(ValueError):
    """Raised from inside json.loads: a number's text is longer than any field allows."""


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberTooLong(text)
    return int(text)


def _json_float(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise _NumberTooLong(text)
    return Decimal(text)


def _json_constant(name: str) -> object:
    raise UsageError(f"{name} is not a number")


class _JsonInts(dict[str, int]):
    """``parse_int`` of the decoder: the usual integers of a line (HTTP statuses, attempts)
    come out of one C lookup of their text instead of a Python call, any other out of
    :func:`_json_int`. JSON writes 0-999 one way only (no "+", no leading zero), so their
    text is exactly ``str(n)`` and the answer is ``int(text)`` either way."""

    def __missing__(self, text: str) -> int:
        return _json_int(text)


_JSON_INTS: Final = _JsonInts((str(n), n) for n in range(1000))
#: Built once: json.loads() with hooks builds a decoder per call.
_DECODER: Final = json.JSONDecoder(
    parse_float=_json_float, parse_int=_JSON_INTS.__getitem__, parse_constant=_json_constant
)
_SCAN: Final[Callable[[str, int], tuple[object, int]]] = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_SPACE: Final = frozenset(" \t\n\r")


def _decode(text: str) -> object:
    """``_DECODER.decode(text)``, minus its two whitespace regexes and two Python frames for
    the usual line: one JSON value that starts at once and ends in whitespace. Anything
    else (or any failure) goes through ``decode`` itself, which answers exactly as always."""
    if text and text[0] not in _JSON_SPACE:
        try:
            value, end = _SCAN(text, 0)
        except Exception:  # decode() below raises the very same, properly
            return _DECODER.decode(text)
        # JSON's whitespace only: str.isspace() would also pass "\x85" or "\u2028".
        if end == len(text) or not text[end:].strip(" \t\n\r"):
            return value
    return _DECODER.decode(text)


def parse_json_line(line: str) -> OutcomeInput:
    """One JSON Lines record; numbers are read as exact decimals.

    Anything wrong with the line raises :class:`UsageError`: bad JSON, ``NaN`` /
    ``Infinity``, a number longer than :data:`~preflight.domain.amounts.MAX_NUMBER_CHARS`
    characters, nesting too deep for the parser, or a record that is not an outcome.
    """
    return outcome_from_row(parse_json_row(line))


def parse_json_row(line: str) -> OutcomeRow:
    """:func:`parse_json_line` as an :data:`OutcomeRow` (what a bulk import holds)."""
    try:
        # A byte-order mark is not JSON, but editors put one at the start of a file.
        data = _decode(line.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except _NumberTooLong:
        raise UsageError(f"a number longer than {MAX_NUMBER_CHARS} characters") from None
    except RecursionError:
        # The C parser recurses per level: [[[[... 30,000 deep overflows it.
        raise UsageError("not valid JSON: nested too deeply") from None
    if data.__class__ is dict:
        row = _usual_row(data)
        if row is not None:
            return row
    if not isinstance(data, dict):
        raise UsageError("each line must be a JSON object")
    return outcome_row(build_outcome(data))
