"""The JSON the HTTP API takes, as Pydantic models, for validation and the OpenAPI document.

The answers of the verbs are the results' ``to_dict()``, described by their shapes in
:mod:`preflight.contract` (one declaration each, which the remote clients read back with);
this module keeps the requests, the problem body and the operations' own small answers.
Amounts are decimal strings, times ISO 8601 UTC; the id patterns are the domain's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from preflight import contract
from preflight.domain.vocabulary import OutcomeStatus

ACCOUNT_PATTERN = r"^[A-Za-z0-9._:@-]{1,100}$"

AmountIn = Annotated[str, Field(pattern=contract.AMOUNT_IN, examples=["60", "12.5"])]
Account = Annotated[str, Field(pattern=ACCOUNT_PATTERN)]
LabelKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]
LabelValue = Annotated[str, Field(pattern=r"^[ -~]{0,200}$")]


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
    status: OutcomeStatus
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
