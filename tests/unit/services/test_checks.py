"""``checks.check``: verdicts from the fake vendor's balance, meters, reserve, rechecks, and the
usage errors that name their field."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from preflight.db.models import Batch
from preflight.domain.verdict import Verdict
from preflight.errors import UsageError
from preflight.services import checks
from preflight.services.runtime import Runtime
from tests.support import Clock
from tests.unit.services.fakes import FakeVendor, snapshot_kinds, snapshot_row, succeeded

NOT_JSON = "not json"


@pytest.mark.parametrize(
    ("need", "reserve", "verdict", "status", "reason"),
    [
        ("600", None, Verdict.GO, "open", "balance 1000.25 covers need 600 + reserve 0"),
        ("1000.25", None, Verdict.GO, "open", "balance 1000.25 covers need 1000.25 + reserve 0"),
        (
            "1000.26",
            None,
            Verdict.INSUFFICIENT,
            "blocked",
            "balance 1000.25 is below need 1000.26 + reserve 0",
        ),
        ("900", "100.25", Verdict.GO, "open", "balance 1000.25 covers need 900 + reserve 100.25"),
        (
            "900",
            "100.26",
            Verdict.INSUFFICIENT,
            "blocked",
            "balance 1000.25 is below need 900 + reserve 100.26",
        ),
        (None, None, Verdict.GO, "open", "balance 1000.25 covers need 0 + reserve 0"),
    ],
)
def test_verdict_from_balance_need_and_reserve(
    rt: Runtime,
    vendor: FakeVendor,
    need: str | None,
    reserve: str | None,
    verdict: Verdict,
    status: str,
    reason: str,
) -> None:
    vendor.credits = Decimal("1000.25")
    result = checks.check(rt, "nightly", need=need, reserve=reserve)

    assert (result.verdict, result.reason, result.status) == (verdict, reason, status)
    assert result.go is (verdict is Verdict.GO)
    assert (result.balance, result.meter, result.outstanding_other) == (
        Decimal("1000.25"),
        "credits",
        Decimal(0),
    )
    assert result.need == (None if need is None else Decimal(need))
    assert result.reserve == Decimal(reserve or 0)
    assert (result.verified, result.fail_open, result.snapshot_kind) == (True, False, "preflight")
    assert snapshot_row(rt, result.snapshot_id).credits == Decimal("1000.25")


def test_the_reserve_comes_from_the_settings_unless_given(rt: Runtime) -> None:
    rt.settings = replace(rt.settings, reserve=Decimal("500"))
    assert checks.check(rt, "a", need="501").verdict is Verdict.INSUFFICIENT
    assert checks.check(rt, "b", need="501", reserve="0").verdict is Verdict.GO


def test_at_risk_when_other_open_batches_still_need_the_balance(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    assert checks.check(rt, "other", need="700").verdict is Verdict.GO
    at_risk = checks.check(rt, "mine", need="400")
    assert (at_risk.verdict, at_risk.outstanding_other, at_risk.go) == (
        Verdict.AT_RISK,
        Decimal(700),
        True,
    )
    assert at_risk.reason == (
        "balance 1000 minus 700 still outstanding for other open batches leaves less than need 400"
    )
    assert at_risk.status == "open"

    clock.advance(minutes=1)
    succeeded(rt, "other", "o1", "550", vendor)  # other still holds 700 - 550 = 150
    again = checks.check(rt, "mine")  # a recheck keeps the declared need
    assert (again.verdict, again.balance, again.need, again.outstanding_other) == (
        Verdict.AT_RISK,
        Decimal(450),
        Decimal(400),
        Decimal(150),
    )

    clock.advance(hours=6, minutes=1)  # other has been quiet for longer than the hold expiry
    last = checks.check(rt, "mine")
    assert (last.verdict, last.outstanding_other) == (Verdict.GO, Decimal(0))


@pytest.mark.parametrize(
    ("status", "body", "times", "verdict", "reads", "reason"),
    [
        (
            401,
            None,
            1,
            Verdict.AUTH_FAILED,
            1,
            "vendor answered HTTP 401: the token cannot be authenticated "
            "(not retried; refresh the token)",
        ),
        (
            402,
            None,
            1,
            Verdict.BILLING_BLOCKED,
            1,
            "vendor answered HTTP 402: the account is in a billing / top-up state",
        ),
        (500, None, 3, Verdict.UNAVAILABLE, 3, "vendor unavailable after 3 attempts: HTTP 500"),
        (
            200,
            NOT_JSON,
            3,
            Verdict.UNAVAILABLE,
            3,
            "unusable response: body is not valid JSON (after 3 attempts)",
        ),
    ],
)
@pytest.mark.parametrize("fail_open", [False, True])
def test_vendor_errors_are_no_go_verdicts(
    rt: Runtime,
    vendor: FakeVendor,
    status: int,
    body: str | None,
    times: int,
    verdict: Verdict,
    reads: int,
    reason: str,
    fail_open: bool,
) -> None:
    if status == 401:
        vendor.token = "another-token"
    else:
        vendor.fail(status, body, times=times)
    result = checks.check(rt, "nightly", need="10", fail_open=fail_open)

    assert (result.verdict, result.reason) == (verdict, reason)
    assert vendor.reads == reads  # 401 and 402 are never retried; the rest three times
    # Only an unavailable vendor may be failed open; the batch is then unverified.
    opened = fail_open and verdict is Verdict.UNAVAILABLE
    assert (result.go, result.fail_open, result.status) == (
        opened,
        opened,
        "open" if opened else "blocked",
    )
    assert (result.verified, result.balance, result.snapshot_id, result.snapshot_kind) == (
        False,
        None,
        None,
        None,
    )
    assert snapshot_kinds(rt) == []


def test_fail_open_comes_from_the_settings(rt: Runtime, vendor: FakeVendor) -> None:
    rt.settings = replace(rt.settings, fail_open=True)
    vendor.fail(503, times=3)
    result = checks.check(rt, "nightly")
    assert (result.verdict, result.go, result.fail_open) == (Verdict.UNAVAILABLE, True, True)


ABSENT = "absent from the vendor's profile"


@pytest.mark.parametrize(
    ("credits", "quota", "meter", "chosen", "reason"),
    [
        ("1000", "40", None, "credits", "balance 1000 covers need 1 + reserve 0"),
        ("1000", "40", "auto", "credits", "balance 1000 covers need 1 + reserve 0"),
        (None, "40", "auto", "api_quota_remaining", "balance 40 covers need 1 + reserve 0"),
        (
            "1000",
            "40",
            "api_quota_remaining",
            "api_quota_remaining",
            "balance 40 covers need 1 + reserve 0",
        ),
        ("1000", None, "credits", "credits", "balance 1000 covers need 1 + reserve 0"),
        # Without the meter: unavailable, the reading still kept as the preflight snapshot.
        (None, None, "auto", None, f"credits and api_quota_remaining {ABSENT}"),
        (None, "40", "credits", None, f"credits {ABSENT}"),
        ("1000", None, "api_quota_remaining", None, f"api_quota_remaining {ABSENT}"),
    ],
)
def test_the_meter_auto_or_explicit(
    rt: Runtime,
    vendor: FakeVendor,
    credits: str | None,
    quota: str | None,
    meter: str | None,
    chosen: str | None,
    reason: str,
) -> None:
    vendor.credits = None if credits is None else Decimal(credits)
    vendor.api_quota_remaining = None if quota is None else Decimal(quota)
    result = checks.check(rt, "nightly", need="1", meter=meter)

    verdict = Verdict.GO if chosen else Verdict.UNAVAILABLE
    assert (result.verdict, result.reason, result.meter) == (verdict, reason, chosen)
    assert result.balance == (getattr(vendor, chosen) if chosen else None)
    assert (result.go, result.verified, result.status) == (
        bool(chosen),
        bool(chosen),
        "open" if chosen else "blocked",
    )
    assert result.snapshot_kind == "preflight"
    with rt.database.read() as session:
        assert session.scalars(sa.select(Batch.meter)).one() == chosen


def test_a_recheck_is_stored_as_recheck_and_keeps_the_first_preflight(
    rt: Runtime, vendor: FakeVendor, clock: Clock
) -> None:
    first = checks.check(rt, "nightly", need="10", labels={"team": "tts"})
    clock.advance(minutes=5)
    vendor.consume("250.5")
    second = checks.check(rt, "nightly", labels={"run": "2"})

    assert (first.snapshot_kind, second.snapshot_kind) == ("preflight", "recheck")
    assert (second.balance, second.need, second.checked_at) == (
        Decimal("749.5"),
        Decimal(10),
        clock.now,
    )
    assert second.labels == {"team": "tts", "run": "2"}
    assert snapshot_kinds(rt) == [("preflight", "1000"), ("recheck", "749.5")]
    assert second.to_dict()["balance"] == "749.5"


def test_a_recheck_cannot_switch_the_meter(rt: Runtime, vendor: FakeVendor) -> None:
    vendor.api_quota_remaining = Decimal(40)
    checks.check(rt, "nightly", need="10")
    with pytest.raises(UsageError) as raised:
        checks.check(rt, "nightly", meter="api_quota_remaining")

    assert str(raised.value) == (
        "batch 'nightly' is checked on credits; a recheck cannot switch it to api_quota_remaining"
    )
    assert vendor.reads == 1  # refused before spending a vendor call on it
    assert checks.check(rt, "nightly", meter="credits").snapshot_kind == "recheck"


def test_a_batch_keeps_its_account(rt: Runtime, vendor_b: FakeVendor) -> None:
    checks.check(rt, "nightly")
    with pytest.raises(
        UsageError, match=r"^batch 'nightly' belongs to account 'default', not 'team-b'$"
    ):
        checks.check(rt, "nightly", account="team-b")
    assert vendor_b.reads == 0
    assert checks.check(rt, "b-batch", account="team-b").balance == Decimal(500)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"batch_id": "bad id"}, "invalid batch id 'bad id': use 1-500 characters of letters"),
        ({"batch_id": ""}, "invalid batch id ''"),
        ({"need": "-1"}, "need: must be a non-negative amount: '-1'"),
        ({"need": "ten"}, "need: not a decimal amount: 'ten'"),
        ({"need": 1.5}, "need: not an exact amount: 1.5"),
        ({"reserve": "NaN"}, "reserve: not a decimal amount: 'NaN'"),
        ({"meter": "gold"}, "meter: must be auto, credits or api_quota_remaining, not 'gold'"),
    ],
)
def test_bad_arguments_are_usage_errors_naming_the_field(
    rt: Runtime, vendor: FakeVendor, arguments: dict[str, Any], message: str
) -> None:
    batch_id = arguments.pop("batch_id", "nightly")
    with pytest.raises(UsageError) as raised:
        checks.check(rt, batch_id, **arguments)

    assert str(raised.value).startswith(message)
    assert "--" not in str(raised.value)  # a field, never a CLI flag
    assert vendor.reads == 0
    with rt.database.read() as session:
        assert session.scalars(sa.select(Batch)).all() == []
