"""preflight.prefect under Prefect's test harness (a real, temporary Prefect API), with the
sandbox vendor: local mode on both dialects, and remote mode through ``preflight serve``.
Asserted: the flow run's state and preflight's own ledger."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow, get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Cancelled, Cancelling, State
from prefect.testing.utilities import prefect_test_harness
from pydantic import SecretStr

from preflight.api import Preflight
from preflight.prefect import (
    BalanceTimeout,
    InsufficientBalance,
    PreflightConnection,
    preflight_check,
    preflight_finish,
    record_and_retry,
    record_on_completion,
    record_on_failure,
    wait_for_balance,
)
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.http_support import LiveServer
from tests.runners.conftest import preflight_settings


@pytest.fixture(scope="module", autouse=True)
def harness() -> Iterator[None]:
    """One temporary Prefect API for the module: it takes a while to start."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(params=["local", "remote"])
def connection(
    request: pytest.FixtureRequest,
    ledger: Preflight,
    database_url: str,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> PreflightConnection | None:
    """None: local mode from the PREFLIGHT_* environment (as a worker would be configured);
    else a Block pointing at ``preflight serve`` on the same database."""
    if request.param == "local":
        settings = preflight_settings(database_url, sandbox)
        monkeypatch.setenv("PREFLIGHT_DATABASE_URL", database_url)
        monkeypatch.setenv("PREFLIGHT_VENDOR_URL", sandbox.url)
        monkeypatch.setenv("PREFLIGHT_API_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("PREFLIGHT_BACKOFF_BASE", str(settings.backoff_base))
        monkeypatch.setenv("PREFLIGHT_BACKOFF_MAX", str(settings.backoff_max))
        return None
    server: LiveServer = request.getfixturevalue("server")
    return PreflightConnection(
        url=server.url, token=SecretStr(server.token("prefect", "check,record,read"))
    )


def _paid(vendor: str, connection: PreflightConnection | None) -> Any:
    @task(cache_policy=NO_CACHE, name="paid")
    def paid(cost: str, job_id: str) -> dict[str, str]:
        response = httpx.post(
            f"{vendor}/api/open/v1/jobs",
            json={"cost": cost},
            headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return {"cost": cost}

    return paid.with_options(
        on_completion=[partial(record_on_completion, connection=connection)],
        on_failure=[partial(record_on_failure, connection=connection)],
    )


def _batch(state: State[Any]) -> str:
    flow_run_id = state.state_details.flow_run_id
    assert isinstance(flow_run_id, UUID)
    return str(flow_run_id)


def test_go_runs_the_jobs_records_them_and_finishes(
    connection: PreflightConnection | None, ledger: Preflight, sandbox: SandboxServer
) -> None:
    paid = _paid(sandbox.url, connection)
    costs = ["1.25", "2", "3.5", "0.75", "4"]

    @flow
    def nightly() -> dict[str, Any]:
        preflight_check(need="20", connection=connection)
        for i, cost in enumerate(costs):
            paid(cost, job_id=f"job-{i}")
        return preflight_finish(connection=connection)

    state = nightly(return_state=True)

    assert state.is_completed()
    finished = state.result()
    report = ledger.show(_batch(state))
    assert report.batch.verdict == "go"
    assert (report.outcomes.total, report.outcomes.succeeded) == (5, 5)
    assert report.outcomes.cost == Decimal("11.5")
    assert Decimal(finished["own_cost"]) == Decimal("11.5")
    assert Decimal(finished["balance_drop"]) == Decimal("11.5")
    assert [s.kind for s in report.snapshots] == ["preflight", "finish"]


@pytest.mark.parametrize("on_insufficient", ["fail", "cancel"])
def test_insufficient_fails_or_cancels_the_flow_before_any_job(
    on_insufficient: str,
    connection: PreflightConnection | None,
    ledger: Preflight,
    sandbox: SandboxServer,
) -> None:
    paid = _paid(sandbox.url, connection)
    sandbox.set_balance(credits=Decimal(30))

    @flow
    def nightly() -> Any:
        check = preflight_check(
            need="50", connection=connection, on_insufficient=on_insufficient, return_state=True
        )
        if not check.is_completed():
            return check  # the flow run ends as the check did
        paid("5", job_id="never")
        return preflight_finish(connection=connection)

    state = nightly(return_state=True)

    if on_insufficient == "fail":
        assert state.is_failed()
        with pytest.raises(InsufficientBalance, match="balance 30 is below need 50"):
            state.result()
    else:
        assert state.is_cancelled()
    report = ledger.show(_batch(state))
    assert report.batch.verdict == "insufficient"
    assert report.outcomes.total == 0
    assert sandbox.spent["credits"] == 0


def test_an_uncaught_insufficient_fails_the_flow_run(
    connection: PreflightConnection | None, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal(1))

    @flow
    def nightly() -> None:
        preflight_check(need="50", connection=connection)

    assert nightly(return_state=True).is_failed()
    assert sandbox.spent["credits"] == 0


def test_a_402_is_recorded_by_the_hook_and_tagged(
    connection: PreflightConnection | None, ledger: Preflight, sandbox: SandboxServer
) -> None:
    paid = _paid(sandbox.url, connection)
    sandbox.set_balance(credits=Decimal(100))

    @flow
    def nightly() -> None:
        preflight_check(need="40", connection=connection)
        paid("10", job_id="j1")
        sandbox.consume(Decimal(85))  # a process outside the flow, recording nothing
        paid("10", job_id="j2")

    state = nightly(return_state=True)

    assert state.is_failed()
    report = ledger.show(_batch(state))
    assert (report.outcomes.total, report.outcomes.quota_failures) == (2, 1)
    [failure] = report.quota_failures
    assert (failure.job_id, failure.attempt, failure.http_status) == ("j2", 1, 402)
    assert failure.tag == "concurrent_consumption"


class FakeTime:
    """The clock wait_for_balance reads, moved only by its sleep; a top-up at a set time."""

    def __init__(self, sandbox: SandboxServer, top_up_at: float | None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.sandbox = sandbox
        self.top_up_at = top_up_at

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.top_up_at is not None and self.now >= self.top_up_at:
            self.sandbox.topup(Decimal(100))
            self.top_up_at = None

    def clock(self) -> float:
        return self.now


def test_wait_for_balance_returns_once_a_top_up_covers_the_need(
    connection: PreflightConnection | None, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal(10))
    fake = FakeTime(sandbox, top_up_at=120)

    @flow
    def waiting() -> dict[str, Any]:
        return wait_for_balance(
            "60", 60, 3600, connection=connection, sleep=fake.sleep, clock=fake.clock
        )

    state = waiting(return_state=True)

    assert state.result() == {"balance": "110", "need": "60", "meter": "credits", "readings": 3}
    assert fake.sleeps == [60, 60]


def test_wait_for_balance_gives_up_at_its_timeout(
    connection: PreflightConnection | None, sandbox: SandboxServer
) -> None:
    sandbox.set_balance(credits=Decimal(10))
    fake = FakeTime(sandbox, top_up_at=None)

    with pytest.raises(BalanceTimeout, match="balance 10 still below need 60 after 150 s"):
        wait_for_balance.fn(
            "60", 60, 150, connection=connection, sleep=fake.sleep, clock=fake.clock
        )
    assert fake.sleeps == [60, 60, 30]  # never past the timeout


def test_the_check_is_retried_while_the_vendor_is_unavailable(
    connection: PreflightConnection | None, ledger: Preflight, sandbox: SandboxServer
) -> None:
    sandbox.inject({"status": 503, "count": -1})
    attempts: list[int] = []

    def vendor_back(task: Any, task_run: Any, state: Any) -> bool:
        attempts.append(task_run.run_count)
        sandbox.reset()  # the vendor answers again before the retry
        from preflight.prefect import retry_if_unavailable

        return retry_if_unavailable(task, task_run, state)

    check = preflight_check.with_options(retry_delay_seconds=0, retry_condition_fn=vendor_back)

    @flow
    def nightly() -> dict[str, Any]:
        return check(need="10", connection=connection)

    state = nightly(return_state=True)

    assert state.is_completed()
    assert state.result()["verdict"] == "go"
    assert attempts == [1]


def test_the_block_keeps_its_token_secret_and_prefect_lists_the_collection() -> None:
    block = PreflightConnection(url="http://127.0.0.1:9", token=SecretStr("pf_secret_token_1"))
    block.save("preflight-test", overwrite=True)
    loaded = PreflightConnection.load("preflight-test")
    assert loaded.token is not None
    assert loaded.token.get_secret_value() == "pf_secret_token_1"
    assert "pf_secret_token_1" not in repr(loaded)
    [entry] = [
        e
        for e in importlib.metadata.entry_points(group="prefect.collections")
        if e.name == "preflight"
    ]
    assert entry.load().PreflightConnection is PreflightConnection


# Prefect's own log handler warns that a task run outside a flow has no flow run to log to.
@pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs:UserWarning")
def test_a_task_run_outside_a_flow_without_a_batch_records_nothing_and_says_so(
    connection: PreflightConnection | None,
    ledger: Preflight,
    sandbox: SandboxServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    paid = _paid(sandbox.url, connection)

    with caplog.at_level("WARNING", logger="preflight.prefect"):
        assert paid("3", job_id="alone") == {"cost": "3"}

    assert "outcome not recorded: the task run has no batch" in caplog.text
    assert ledger.batches() == []


def test_each_failed_attempt_prefect_retries_is_recorded_by_the_retry_condition(
    connection: PreflightConnection | None, ledger: Preflight, sandbox: SandboxServer
) -> None:
    retried = _paid(sandbox.url, connection).with_options(
        retries=2,
        retry_delay_seconds=0,
        retry_condition_fn=record_and_retry(connection=connection),
    )

    @flow
    def nightly() -> None:
        preflight_check(need="20", connection=connection)
        sandbox.inject({"status": 402, "count": 1})  # the first paid call only
        retried("4", job_id="j1")

    state = nightly(return_state=True)

    assert state.is_completed()
    report = ledger.show(_batch(state))
    assert (report.outcomes.total, report.outcomes.succeeded) == (2, 1)
    assert report.outcomes.cost == Decimal(4)
    [failure] = report.quota_failures
    assert (failure.job_id, failure.attempt, failure.http_status) == ("j1", 1, 402)
    assert sandbox.spent["credits"] == Decimal(4)


def test_an_attempt_the_condition_does_not_retry_is_recorded_once_by_on_failure(
    connection: PreflightConnection | None, ledger: Preflight, sandbox: SandboxServer
) -> None:
    judged: list[int] = []

    def never(task: Any, task_run: Any, state: Any) -> bool:
        judged.append(task_run.run_count)
        return False

    refused = _paid(sandbox.url, connection).with_options(
        retries=2,
        retry_delay_seconds=0,
        retry_condition_fn=record_and_retry(never, connection=connection),
    )

    @flow
    def nightly() -> None:
        preflight_check(need="20", connection=connection)
        sandbox.inject({"status": 402, "count": 1})
        refused("4", job_id="j1")

    state = nightly(return_state=True)

    assert state.is_failed()
    assert judged == [1]
    report = ledger.show(_batch(state))
    assert (report.outcomes.total, report.outcomes.quota_failures) == (1, 1)
    [failure] = report.quota_failures
    assert (failure.job_id, failure.attempt, failure.http_status) == ("j1", 1, 402)


@pytest.mark.parametrize(
    ("proposed", "then_raise", "ends", "next_task_runs"),
    [
        ("cancelled", False, "COMPLETED", True),
        ("cancelling", False, "CANCELLING", True),
        ("cancelled", True, "FAILED", False),
    ],
)
def test_a_task_cannot_end_its_flow_run_cancelled(
    proposed: str, then_raise: bool, ends: str, next_task_runs: bool
) -> None:
    """Why ``on_insufficient="cancel"`` needs the flow to return the check's state (see
    docs/orchestrators.md): what a task can do to its flow run in the installed Prefect.
    Should this fail after an upgrade, the task may be able to cancel the flow itself."""
    ran: list[str] = []

    @task(cache_policy=NO_CACHE)
    def gate() -> None:
        state: State[Any] = Cancelled() if proposed == "cancelled" else Cancelling()
        with get_client(sync_client=True) as client:
            answer = client.set_flow_run_state(flow_run.id, state, force=True)
        assert answer.state is not None
        assert answer.state.type.value == proposed.upper()  # accepted
        if then_raise:
            raise InsufficientBalance("insufficient")

    @task(cache_policy=NO_CACHE)
    def paid() -> None:
        ran.append("paid")

    @flow
    def nightly() -> None:
        gate()
        paid()

    state = nightly(return_state=True)

    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(UUID(_batch(state))).state
    assert stored is not None
    assert (stored.type.value, state.type.value) == (ends, ends)
    assert (ran == ["paid"]) == next_task_runs
