"""The JSON the HTTP API takes and gives, as Pydantic models, for the OpenAPI document.

Responses are the results' own ``to_dict()`` (the JSON form every interface prints),
sent as they are; the models below describe them, field for field, so that the OpenAPI
document is exact and schemathesis can hold the server to it. Amounts are decimal
strings, times ISO 8601 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from preflight.domain.batch import BATCH_ID_PATTERN as _BATCH_ID

#: A batch id as the domain accepts it: its one pattern (domain/batch.py), anchored.
BATCH_ID_PATTERN = f"^{_BATCH_ID.pattern}$"
#: A non-negative decimal within the amount bound (40 digits before the point, 20 after).
AMOUNT_IN_PATTERN = r"^[0-9]{1,40}(\.[0-9]{1,20})?$"
ACCOUNT_PATTERN = r"^[A-Za-z0-9._:@-]{1,100}$"

AmountIn = Annotated[str, Field(pattern=AMOUNT_IN_PATTERN, examples=["60", "12.5"])]
AmountOut = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["1200.50"])]
Account = Annotated[str, Field(pattern=ACCOUNT_PATTERN)]
LabelKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]
LabelValue = Annotated[str, Field(pattern=r"^[ -~]{0,200}$")]
#: A vendor adapter's meter (credits, api_quota_remaining, characters, usd, ...).
MeterName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", examples=["credits"])]
#: Spelled out for the type checker; tests/unit/test_http_schemas.py holds them to the enums.

VerdictName = Literal[
    "go", "at_risk", "insufficient", "auth_failed", "billing_blocked", "unavailable"
]
StatusName = Literal["open", "blocked", "finished"]
TagName = Literal["pre_existing_low_balance", "concurrent_consumption", "inconclusive"]
FindingKindName = Literal["unexplained_consumption", "low_balance", "stale_batch"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- requests


class CheckIn(_In):
    need: AmountIn | None = Field(
        default=None, description="Units of the meter the batch will spend."
    )
    meter: Annotated[str, Field(pattern=r"^(auto|[a-z][a-z0-9_]{0,31})$")] | None = Field(
        default=None,
        description=(
            "Balance to read: auto (the vendor's first meter present: credits, else "
            "api_quota_remaining, for the default vendor) or a meter of the account's vendor."
        ),
        examples=["auto", "credits"],
    )
    reserve: AmountIn | None = Field(default=None, description="Margin to keep on top of the need.")
    strict: bool = Field(default=False, description="exit_code 14 (not 0) for at_risk.")
    fail_open: bool | None = Field(
        default=None, description="unavailable: exit_code 0 and the batch marked unverified."
    )
    account: Account | None = Field(
        default=None, description="A configured account (default: default)."
    )
    labels: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=50)


class OutcomeIn(BaseModel):
    """One outcome, as a JSON Lines record of ``preflight record --from``."""

    model_config = ConfigDict(extra="forbid")
    job_id: Annotated[str, Field(pattern=r"^[ -~]{1,200}$")]
    status: Literal["succeeded", "failed"]
    cost: AmountIn | None = None
    expected_cost: AmountIn | None = None
    http_status: Annotated[int, Field(ge=100, le=599)] | None = None
    attempt: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    at: datetime | None = Field(default=None, description="ISO 8601, 1970 to 9000; default now.")
    error: Annotated[str, Field(max_length=4000)] | None = None
    quota_failure: bool = False


class AuditIn(_In):
    account: Account | None = None
    force: bool = Field(
        default=False, description="An extra run outside the period claim (by hand only)."
    )


class ClassifyIn(_In):
    batch_id: Annotated[str, Field(pattern=BATCH_ID_PATTERN)] | None = None
    only_inconclusive: bool = False


# ---------------------------------------------------------------- responses


class CheckOut(_Out):
    batch_id: str
    account: str
    verdict: VerdictName
    exit_code: int = Field(description="The CLI's exit code for this verdict, strict and fail_open")
    reason: str
    meter: MeterName | None
    balance: AmountOut | None
    need: AmountOut | None
    reserve: AmountOut
    outstanding_other: AmountOut | None
    snapshot_id: int | None
    snapshot_kind: str | None
    checked_at: datetime
    status: StatusName
    verified: bool
    fail_open: bool
    labels: dict[str, str]
    advisory: str


class RecordOut(_Out):
    batch_id: str
    job_id: str
    attempt: int
    status: Literal["succeeded", "failed"]
    created: bool
    quota_failure: bool
    tag: TagName | None
    reason: str | None
    snapshot_id: int | None
    snapshot_error: str | None
    warnings: list[str]


class ImportOut(_Out):
    batch_id: str
    lines: int
    inserted: int
    duplicates: int
    tags: dict[str, int]
    warnings: list[str]


class FinishOut(_Out):
    batch_id: str
    status: Literal["finished"]
    finished_at: datetime
    meter: MeterName | None
    own_cost: AmountOut
    preflight_balance: AmountOut | None
    finish_balance: AmountOut | None
    balance_drop: AmountOut | None
    foreign_consumption: AmountOut | None
    foreign_is_lower_bound: bool
    snapshot_ids: list[int]
    snapshot_error: str | None
    already_finished: bool


class Totals(_Out):
    total: int
    succeeded: int
    failed: int
    quota_failures: int
    late: int
    cost: AmountOut


class SnapshotOut(_Out):
    id: int
    kind: str
    taken_at: datetime
    credits: AmountOut | None
    api_quota_remaining: AmountOut | None
    balance: AmountOut | None
    meters: dict[str, AmountOut | None] | None = Field(
        default=None, description="Every meter by name, for a vendor with other meters."
    )


class LateOut(_Out):
    job_id: str
    attempt: int
    status: str
    recorded_at: datetime


class Attributed(_Out):
    batch_id: str
    cost: AmountOut


class FailureOut(_Out):
    batch_id: str
    job_id: str
    attempt: int
    failed_at: datetime
    http_status: int | None
    error: str | None
    tag: TagName | None
    reason: str
    evidence: dict[str, Any]
    attribution: list[Attributed]
    unattributed: AmountOut | None
    classifier_version: str | None
    classified_at: datetime | None


class BatchOut(_Out):
    batch_id: str
    account: str
    status: StatusName
    verdict: VerdictName | None
    verified: bool
    meter: MeterName | None
    need: AmountOut | None
    reserve: AmountOut
    labels: dict[str, Any]
    created_at: datetime
    checked_at: datetime | None
    finished_at: datetime | None


class ReportOut(BatchOut):
    snapshots: list[SnapshotOut]
    outcomes: Totals
    late_outcomes: list[LateOut]
    quota_failures: list[FailureOut]
    overlapping_batches: list[str]


class ListingOut(BatchOut):
    outcomes: Totals


class FindingOut(_Out):
    id: int
    kind: FindingKindName
    account: str
    amount: AmountOut | None
    window_start: datetime
    window_end: datetime
    batches: list[str]
    audit_run_id: int
    detail: dict[str, Any]
    created_at: datetime


class AuditOut(_Out):
    account: str
    period_start: datetime
    skipped: bool
    reason: str | None
    audit_run_id: int | None
    snapshot_id: int | None
    status: str | None
    takeover: bool
    steps: dict[str, Any]
    findings: list[FindingOut]


class ProfileOut(_Out):
    account: str
    snapshot_id: int
    taken_at: datetime
    user_id: str | None
    tier: str | None
    credits: AmountOut | None
    api_quota_remaining: AmountOut | None
    meters: dict[str, AmountOut | None] | None = Field(
        default=None, description="Every meter by name, for a vendor with other meters."
    )
    latency_ms: int
    raw: str = Field(description="The vendor's body as received (tokens it echoed: redacted).")


class ClassifyOut(_Out):
    classified: int
    tags: dict[str, int]


class Health(_Out):
    status: Literal["ok"]


class Ready(_Out):
    status: Literal["ready"]
    schema_revision: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
