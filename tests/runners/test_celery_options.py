"""PreflightTask's options, run in process (``Task.apply``: the worker's trace, handlers
included, without a broker): where the batch, the job id and the facade come from, and
what happens when preflight cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from celery import Celery

from preflight.api import Preflight
from preflight.celery import PreflightTask
from preflight.errors import StorageError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.http_support import LiveServer


@pytest.fixture
def app(ledger: Preflight) -> Iterator[Celery]:
    app = Celery("options", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(preflight_client=ledger)
    yield app
    app.close()


class Job:
    """What a job returned or raised."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        if self.error is not None:
            raise self.error
        return {"cost": "2.5"}


def test_the_batch_comes_from_the_call_then_the_attribute_then_a_callable(
    app: Celery, ledger: Preflight
) -> None:
    @app.task(base=PreflightTask, shared=False, preflight_batch_id="fixed")
    def fixed(n: int, job_id: str | None = None) -> dict[str, str]:
        return Job()()

    @app.task(
        base=PreflightTask,
        shared=False,
        preflight_batch_id=lambda args, kwargs: f"batch-{args[0]}",
    )
    def derived(n: int) -> str:
        return "3"

    fixed.apply((1,), {"job_id": "a"})
    fixed.apply((1,), {"job_id": "b", "preflight_batch": "named"})  # the call wins
    result = derived.apply((7,))

    assert ledger.show("fixed").outcomes.total == 1
    assert ledger.show("named").outcomes.cost == Decimal("2.5")
    assert result.get() == "3"  # the task's result is its own, whatever was recorded
    report = ledger.show("batch-7")
    assert report.outcomes.cost == Decimal(3)
    [listing] = [b for b in ledger.batches() if b.batch.batch_id == "batch-7"]
    assert listing.outcomes.succeeded == 1


def test_a_task_that_takes_preflight_batch_gets_it(app: Celery, ledger: Preflight) -> None:
    @app.task(base=PreflightTask, shared=False)
    def echo(preflight_batch: str) -> dict[str, str]:
        return {"cost": "1", "batch": preflight_batch}

    assert echo.apply((), {"preflight_batch": "mine"}).get() == {"cost": "1", "batch": "mine"}
    assert ledger.show("mine").outcomes.total == 1


def test_an_unreachable_preflight_is_logged_unless_errors_are_raised(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:
        def record(self, *args: object, **kwargs: object) -> object:
            raise StorageError("preflight server unreachable: connection refused")

    app.conf.preflight_client = Down  # a callable giving the facade

    @app.task(base=PreflightTask, shared=False, preflight_client=lambda: Down())
    def quiet() -> str:
        return "5"

    @app.task(base=PreflightTask, shared=False, preflight_raise_errors=True)
    def loud() -> str:
        return "5"

    with caplog.at_level("WARNING"):
        result = quiet.apply((), {"preflight_batch": "B"})
    assert result.get() == "5"
    assert "outcome not recorded" in caplog.text
    # Asked for: the attempt fails with preflight's error instead of passing unrecorded.
    with pytest.raises(StorageError):
        loud.apply((), {"preflight_batch": "B"}, throw=True)


def test_a_call_without_a_batch_records_nothing_and_says_so(
    app: Celery, ledger: Preflight, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(base=PreflightTask, shared=False)
    def orphan() -> str:
        return "1"

    with caplog.at_level("WARNING"):
        assert orphan.apply().get() == "1"
    assert "called without a batch" in caplog.text
    assert ledger.batches() == []


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_without_a_client_the_worker_configures_itself_like_the_cli(
    mode: str,
    ledger: Preflight,
    database_url: str,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from preflight.celery import tasks

    monkeypatch.setattr(tasks, "_default", None)  # one per worker process: a fresh one here
    if mode == "local":
        monkeypatch.setenv("PREFLIGHT_DATABASE_URL", database_url)
        monkeypatch.setenv("PREFLIGHT_VENDOR_URL", sandbox.url)
        monkeypatch.setenv("PREFLIGHT_API_TOKEN", DEFAULT_TOKEN)
    else:
        server: LiveServer = request.getfixturevalue("server")
        monkeypatch.setenv("PREFLIGHT_SERVER_URL", server.url)
        monkeypatch.setenv("PREFLIGHT_SERVER_TOKEN", server.token("worker", "check,record"))
    app = Celery("env", broker="memory://", backend="cache+memory://", set_as_current=False)

    @app.task(base=PreflightTask, shared=False)
    def job() -> str:
        return "4"

    try:
        assert job.apply((), {"preflight_batch": f"env-{mode}"}).get() == "4"
        client = tasks._default
        assert client is not None
        assert (client._remote is not None) == (mode == "remote")
        client.close()
    finally:
        app.close()
    assert ledger.show(f"env-{mode}").outcomes.cost == Decimal(4)


def test_the_handlers_called_directly_still_record(app: Celery, ledger: Preflight) -> None:
    """A worker records as the attempt ends; an attempt whose ``on_success`` / ``on_failure``
    Celery calls by other means (a custom request, a test) is recorded by the handler."""

    class Refused(Exception):
        http_status = 402

    @app.task(base=PreflightTask, shared=False)
    def job(job_id: str) -> dict[str, str]:
        return {"cost": "2"}

    job.on_success({"cost": "2"}, "t-1", (), {"job_id": "ok", "preflight_batch": "direct"})
    job.on_failure(
        Refused("402 Payment Required"),
        "t-2",
        (),
        {"job_id": "refused", "preflight_batch": "direct"},
        None,
    )

    report = ledger.show("direct")
    assert (report.outcomes.total, report.outcomes.succeeded) == (2, 1)
    assert report.outcomes.cost == Decimal(2)
    [failure] = report.quota_failures
    assert (failure.job_id, failure.attempt, failure.http_status) == ("refused", 1, 402)
