"""One job outcome as a caller reports it: validated, exact, and comparable to what is stored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

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

    def __post_init__(self) -> None:
        if not self.quota_failure or not self.cost:
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


def _amount(value: object, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool | float):
        raise UsageError(f"{name}: not an exact amount: {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise UsageError(f"{name}: not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise UsageError(f"{name}: must be a non-negative decimal: {value!r}")
    return amount


def parse_timestamp(value: object, name: str = "at") -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise UsageError(f"{name}: not an ISO 8601 time: {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _integer(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{name}: not a whole number: {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise UsageError(f"{name}: not a whole number: {value!r}") from None
    if not low <= number <= high:
        raise UsageError(f"{name}: must be between {low} and {high}: {value!r}")
    return number


def _flag(value: object, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UsageError(f"{name}: must be true or false: {value!r}")
    return value


def build_outcome(fields: Mapping[str, object]) -> OutcomeInput:
    """Validate one outcome given as a mapping (a JSON line, or the CLI's options)."""
    unknown = set(fields) - FIELDS
    if unknown:
        raise UsageError(f"unknown field(s): {', '.join(sorted(unknown))}")
    job_id = fields.get("job_id")
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 200 or not job_id.isprintable():
        raise UsageError(f"job_id: must be 1-200 printable characters: {job_id!r}")
    status_text = fields.get("status")
    try:
        status = OutcomeStatus(str(status_text))
    except ValueError:
        raise UsageError(f"status: must be succeeded or failed: {status_text!r}") from None
    http_status = fields.get("http_status")
    error = fields.get("error")
    if error is not None and not isinstance(error, str):
        raise UsageError(f"error: must be text: {error!r}")
    at = fields.get("at")
    return OutcomeInput(
        job_id=job_id,
        status=status,
        attempt=_integer(fields.get("attempt", 1) or 1, "attempt", 1, 1_000_000),
        cost=_amount(fields.get("cost"), "cost"),
        expected_cost=_amount(fields.get("expected_cost"), "expected_cost"),
        http_status=None if http_status is None else _integer(http_status, "http_status", 100, 599),
        error=None if error is None else error[:MAX_ERROR_CHARS],
        marked_quota=_flag(fields.get("quota_failure"), "quota_failure"),
        at=None if at is None else parse_timestamp(at),
    )


def parse_json_line(line: str) -> OutcomeInput:
    """One JSON Lines record; numbers are read as exact decimals."""
    try:
        data = json.loads(line, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise UsageError("each line must be a JSON object")
    return build_outcome(data)
