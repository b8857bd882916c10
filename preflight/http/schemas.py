"""The JSON the HTTP API takes, as Pydantic models, for validation and the OpenAPI document.

The answers of the verbs are the results' ``to_dict()``, described by their shapes in
:mod:`preflight.contract` (one declaration each, which the remote clients read back with);
this module keeps the requests, the problem body and the operations' own small answers.
Amounts are decimal strings, times ISO 8601 UTC; the id patterns are the domain's.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from preflight import contract
from preflight.domain.outcome import JOB_ID_SCHEMA_PATTERN
from preflight.domain.vocabulary import OutcomeStatus

ACCOUNT_PATTERN = r"^[A-Za-z0-9._:@-]{1,100}$"

AmountIn = Annotated[str, Field(pattern=contract.AMOUNT_IN, examples=["60", "12.5"])]
Account = Annotated[str, Field(pattern=ACCOUNT_PATTERN)]
LABEL_KEY: Final = r"^[A-Za-z0-9._:/-]{1,64}$"
LABEL_VALUE: Final = r"^[ -~]{0,200}$"
LabelKey = Annotated[str, Field(pattern=LABEL_KEY)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE)]
#: Up to 50 labels. (Pydantic writes the key pattern as patternProperties, which leaves
#: any other key free: the document says propertyNames, which is what is validated.)
LABELS: Final[dict[str, Any]] = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"pattern": LABEL_KEY},
    "additionalProperties": {"type": "string", "pattern": LABEL_VALUE},
}

#: A time the API takes: ISO 8601 (RFC 3339 here), from 1970 up to 9000 in UTC. The pattern
#: keeps to the years 1971-8999, which no offset can move out of the bound.
TIME_IN: Final[dict[str, Any]] = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^(197[1-9]|19[89][0-9]|[2-8][0-9]{3})-",
    "maxLength": 64,
}
#: A duration back from now, at most 36500 days: 90, 90s, 15m, 6h, 2d (the digits kept
#: within the bound for each unit).
DURATION: Final = r"^([0-9]{1,9}s?|[0-9]{1,7}m|[0-9]{1,5}h|[0-9]{1,4}d)$"
#: ``since``: a duration back from now, or a time.
SINCE: Final[dict[str, Any]] = {
    "anyOf": [{"type": "string", "pattern": DURATION}, TIME_IN],
}
#: A job id: 1-500 printable characters, as far as JSON Schema can say it (the domain's
#: pattern: the other unprintable characters are refused by the API with a 400 naming
#: ``job_id``, docs/http.md, "What the schema cannot say").
JOB_ID: Final = JOB_ID_SCHEMA_PATTERN


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
    labels: Annotated[dict[LabelKey, LabelValue], WithJsonSchema(LABELS)] | None = Field(
        default=None, max_length=50
    )
    jobs: Annotated[int, Field(ge=1, le=10**9)] | None = Field(
        default=None, description="Instead of need: the number of jobs, priced from history."
    )
    estimate_from: (
        Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}=[ -~]{1,200}$")] | None
    ) = Field(
        default=None,
        description="KEY=VALUE: the label of the finished batches the need is estimated from.",
    )
    estimate: Literal["mean", "p50", "p90", "p95", "max"] | None = Field(
        default=None, description="The statistic per job (default mean; quantiles nearest-rank)."
    )
    min_history: Annotated[int, Field(ge=1, le=10**9)] | None = Field(
        default=None, description="Fewer past jobs than this (default 20) is a 400."
    )


class GuardIn(_In):
    next_cost: AmountIn | None = Field(
        default=None, description="What the next job will cost: stop when it is not covered."
    )
    max_age: Annotated[str, Field(pattern=DURATION)] | None = Field(
        default=None,
        description="Take a recheck snapshot when the latest one is older (default 60s).",
        examples=["60s", "5m"],
    )
    strict: bool = Field(default=False, description="exit_code 14 (not 0) for at_risk.")


class OutcomeIn(BaseModel):
    """One outcome, as a JSON Lines record of ``preflight record --from``."""

    model_config = ConfigDict(extra="forbid")
    job_id: Annotated[str, Field(pattern=JOB_ID)]
    status: OutcomeStatus
    cost: AmountIn | None = None
    expected_cost: AmountIn | None = None
    http_status: Annotated[int, Field(ge=100, le=599)] | None = None
    attempt: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    at: Annotated[str, WithJsonSchema(TIME_IN)] | None = Field(
        default=None, description="ISO 8601, 1970 to 9000; default now."
    )
    error: Annotated[str, Field(max_length=4000)] | None = None
    quota_failure: bool = False


class AuditIn(_In):
    account: Account | None = None
    force: bool = Field(
        default=False, description="An extra run outside the period claim (by hand only)."
    )


class ClassifyIn(_In):
    batch_id: Annotated[str, Field(pattern=contract.BATCH_ID)] | None = None
    only_inconclusive: bool = False


# ---------------------------------------------------------------- responses
# The results' answers are the contract's shapes (preflight/contract.py), in the document's
# components by name; what is left here answers no verb of the services.


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
