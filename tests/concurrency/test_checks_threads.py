"""K checks of one account at once from threads of one process (the Python API): each
decided as if the checks had run one after another, in the order the database took them.

Hypothesis chooses the balance, each check's need and K. The threads meet at the vendor
gate, the last step before their write transactions.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preflight.api import Preflight
from preflight.domain.verdict import Verdict
from preflight.sandbox import SandboxServer
from tests.concurrency.conftest import new_account, settings_with
from tests.concurrency.support import VendorGate, assert_serialised, run_together

WARM_UP = "warm-up"

needs = st.lists(
    st.decimals(min_value=1, max_value=60, places=1, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=8,
)
balances = st.integers(min_value=0, max_value=200).map(Decimal)


def check_round(
    url: str,
    gate: VendorGate,
    sandbox: SandboxServer,
    *,
    balance: Decimal,
    needs: list[Decimal],
    shared: bool,
) -> dict[Verdict, int]:
    """One round on a new account: len(needs) checks released together; its properties."""
    account = new_account()
    sandbox.set_balance(credits=balance)
    settings_ = settings_with(url, gate, account, WARM_UP)
    with ExitStack() as stack:
        count = 1 if shared else len(needs)
        facades = [stack.enter_context(Preflight(settings_)) for _ in range(count)]
        for n, facade in enumerate(facades):
            # Built before the barrier: the facade's first use (metrics, vendor client,
            # connections) is not what is tested here.
            facade.check(f"warm-up-{account}-{n}", account=WARM_UP)
            facade.vendor(account)
        gate.arm(len(needs))
        results = run_together(
            [
                partial(
                    facades[i % count].check, f"{account}-batch-{i}", need=need, account=account
                )
                for i, need in enumerate(needs)
            ]
        )
        gate.disarm()
    answered = {result.batch_id: result.verdict for result in results}
    assert_serialised(
        url, account, answered, batch_prefix=f"{account}-batch-", held_before=Decimal(0)
    )
    return Counter(answered.values())


@pytest.mark.parametrize("shared", [True, False], ids=["one-facade", "a-facade-each"])
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(balance=balances, needs=needs)
def test_concurrent_checks_decide_as_one_after_another(
    url: str,
    gate: VendorGate,
    sandbox: SandboxServer,
    shared: bool,
    balance: Decimal,
    needs: list[Decimal],
) -> None:
    check_round(url, gate, sandbox, balance=balance, needs=needs, shared=shared)


@pytest.mark.parametrize("shared", [True, False], ids=["one-facade", "a-facade-each"])
def test_sixteen_checks_of_ten_at_a_balance_of_a_hundred(
    url: str, gate: VendorGate, sandbox: SandboxServer, shared: bool
) -> None:
    for _ in range(3):
        verdicts = check_round(
            url, gate, sandbox, balance=Decimal(100), needs=[Decimal(10)] * 16, shared=shared
        )
        assert verdicts == {Verdict.GO: 10, Verdict.AT_RISK: 6}
