"""A check's no-go as the exception an orchestrator acts on (preflight.integrations.gate):
one class per verdict, rebuilt from its message alone as result backends rebuild them."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from preflight.cli.exit_codes import exit_code_of
from preflight.domain.verdict import Verdict, exit_code
from preflight.errors import NoGoError
from preflight.integrations.gate import (
    AtRisk,
    AuthFailed,
    BillingBlocked,
    GateClosed,
    InsufficientBalance,
    PreflightUnavailable,
    refusal,
)
from preflight.services.check_result import CheckResult


def _result(verdict: Verdict, *, fail_open: bool = False) -> CheckResult:
    return CheckResult(
        batch_id="B",
        account="default",
        verdict=verdict,
        reason="why",
        meter="credits",
        balance=Decimal(5),
        need=Decimal(10),
        reserve=Decimal(0),
        outstanding_other=Decimal(0),
        snapshot_id=1,
        snapshot_kind="preflight",
        checked_at=datetime(2026, 12, 7, tzinfo=UTC),
        status="open",
        verified=verdict is not Verdict.UNAVAILABLE,
        fail_open=fail_open,
    )


@pytest.mark.parametrize(
    ("verdict", "strict", "fail_open", "raised"),
    [
        (Verdict.GO, False, False, None),
        (Verdict.GO, True, False, None),
        (Verdict.AT_RISK, False, False, None),
        (Verdict.AT_RISK, True, False, AtRisk),
        (Verdict.INSUFFICIENT, False, False, InsufficientBalance),
        (Verdict.AUTH_FAILED, False, False, AuthFailed),
        (Verdict.BILLING_BLOCKED, False, False, BillingBlocked),
        (Verdict.UNAVAILABLE, False, False, PreflightUnavailable),
        (Verdict.UNAVAILABLE, False, True, None),  # fail-open: go ahead, unverified
    ],
)
def test_each_verdict_is_one_refusal_or_none(
    verdict: Verdict, strict: bool, fail_open: bool, raised: type[GateClosed] | None
) -> None:
    refused = refusal(_result(verdict, fail_open=fail_open), strict=strict)
    if raised is None:
        assert refused is None
        return
    assert type(refused) is raised
    assert isinstance(refused, NoGoError)
    assert str(refused) == f"batch 'B' not started: {verdict.value}: why"
    # The CLI's exit code for the same verdict: one table, whichever edge reports it.
    assert exit_code_of(refused) == exit_code(verdict, strict=strict)


@pytest.mark.parametrize(
    "kind", [InsufficientBalance, AtRisk, AuthFailed, BillingBlocked, PreflightUnavailable]
)
def test_a_refusal_is_rebuilt_from_its_message(kind: type[GateClosed]) -> None:
    error = kind("batch 'B' not started: ...")
    again = pickle.loads(pickle.dumps(error))
    rebuilt = kind(*error.args)  # as Celery's JSON result backend rebuilds an exception
    for copy in (again, rebuilt):
        assert type(copy) is kind
        assert (copy.message, copy.verdict, copy.strict) == (
            error.message,
            error.verdict,
            error.strict,
        )
