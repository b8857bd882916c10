"""preflight.celery on a real worker: Redis as broker and result backend, the solo pool,
the sandbox vendor, local mode on both dialects and remote mode through ``preflight serve``."""

from __future__ import annotations

import gc
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping for start_worker
import httpx
import pytest
import redis
from celery import Celery, chain, chord
from celery.contrib.testing.worker import start_worker
from celery.exceptions import ChordError

from preflight.api import Preflight
from preflight.celery import (
    InsufficientBalance,
    PreflightTask,
    PreflightUnavailable,
    preflight_finish,
    preflight_finish_on_error,
    preflight_gate,
)
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer

REDIS = "redis://127.0.0.1:6379/5"


@dataclass
class Worker:
    app: Celery
    paid: Any  # the paid job: a PreflightTask that calls the sandbox
    flaky: Any  # the same job with acks_late and retries on an HTTP error


def _paid_call(vendor: str, cost: str) -> dict[str, str]:
    response = httpx.post(
        f"{vendor}/api/open/v1/jobs",
        json={"cost": cost},
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    return {"cost": cost, "charged": str(response.json()["charged"])}


def _make_app(client: Preflight, vendor: str) -> Worker:
    """A Celery app of its own: a unique key prefix in Redis, so parallel runs and earlier
    tests never meet, and the facade under test as its ``preflight_client``."""
    prefix = f"pf-test-{uuid.uuid4().hex[:12]}:"
    # The current app: the shared tasks (preflight_gate, preflight_finish) resolve to it.
    app = Celery(f"pf-{prefix}", broker=REDIS, backend=REDIS)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        preflight_client=client,
    )

    @app.task(base=PreflightTask, name="jobs.paid", shared=False)
    def paid(cost: str, job_id: str | None = None) -> dict[str, str]:
        return _paid_call(vendor, cost)

    @app.task(
        base=PreflightTask,
        name="jobs.flaky",
        shared=False,
        acks_late=True,
        autoretry_for=(httpx.HTTPStatusError,),
        retry_backoff=False,
        default_retry_delay=0,
        max_retries=3,
    )
    def flaky(cost: str, job_id: str | None = None) -> dict[str, str]:
        return _paid_call(vendor, cost)

    return Worker(app, paid, flaky)


@pytest.fixture(params=["local", "remote"])
def client(request: pytest.FixtureRequest, ledger: Preflight) -> Preflight:
    """The facade the worker uses: local mode on the test's database, or remote mode."""
    if request.param == "local":
        return ledger
    remote: Preflight = request.getfixturevalue("remote")
    return remote


@pytest.fixture
def worker(client: Preflight, sandbox: SandboxServer) -> Iterator[Worker]:
    """A solo-pool worker of its own app, for the client and the sandbox; stopped (before
    they are) and its Redis keys removed after the test."""
    running = _make_app(client, sandbox.url)
    with start_worker(running.app, pool="solo", concurrency=1, shutdown_timeout=30):
        yield running
    _close(running.app)
    connection = redis.Redis.from_url(REDIS)
    prefix = running.app.conf.broker_transport_options["global_keyprefix"]
    keys = list(connection.scan_iter(f"{prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()
    # Celery's client side keeps Redis connections per thread and in results it hands out,
    # closed by no public call: collected here, where their warning is expected, rather
    # than during a later test.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"unclosed <socket\.socket .*6379\)>", ResourceWarning)
        gc.collect()


def _close(app: Celery) -> None:
    """Close what the client side of the app holds open in Redis: the result listener,
    the backend's pool and the producer pool."""
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        consumer.stop()
        # A result collected later unsubscribes from its key (AsyncResult.__del__): without
        # a listener it has nothing to do, instead of reconnecting one.
        consumer._pubsub = None
        consumer.subscribed_to.clear()
    backend.client.connection_pool.disconnect()
    app.close()


def _costs(count: int) -> list[Decimal]:
    return [Decimal(f"{1 + i % 4}.{(i * 7) % 100:02d}") for i in range(count)]


def test_a_chord_of_50_paid_jobs_behind_the_gate_records_50_outcomes(
    worker: Worker, client: Preflight, sandbox: SandboxServer
) -> None:
    batch = f"celery-{uuid.uuid4().hex[:8]}"
    costs = _costs(50)
    total = sum(costs, Decimal(0))
    start = sandbox.balance["credits"]
    jobs = [
        worker.paid.si(str(cost), job_id=f"job-{i}", preflight_batch=batch)
        for i, cost in enumerate(costs)
    ]
    flow = chain(
        preflight_gate.si(batch, need=str(total)),
        chord(jobs, preflight_finish.s(batch_id=batch)),
    )

    finished = flow.apply_async().get(timeout=120)

    report = client.show(batch)
    assert report.outcomes.total == 50
    assert report.outcomes.succeeded == 50
    assert report.outcomes.cost == total
    assert finished["own_cost"] == str(total)
    assert finished["balance_drop"] == str(total)
    assert Decimal(finished["foreign_consumption"]) == 0
    assert sandbox.balance["credits"] == start - total
    kinds = [snapshot.kind for snapshot in report.snapshots]
    assert kinds == ["preflight", "finish"]


def test_a_402_after_an_outside_consumer_spent_is_tagged_concurrent_consumption(
    worker: Worker, client: Preflight, sandbox: SandboxServer
) -> None:
    batch = f"celery-{uuid.uuid4().hex[:8]}"
    sandbox.set_balance(credits=Decimal(100))
    preflight_gate.apply_async((batch,), {"need": "40"}).get(timeout=30)
    first = worker.paid.apply_async(("10",), {"job_id": "j1", "preflight_batch": batch})
    assert first.get(timeout=30) == {"cost": "10", "charged": "10"}
    sandbox.consume(Decimal(85))  # a process outside the batch, recording nothing

    second = worker.paid.apply_async(("10",), {"job_id": "j2", "preflight_batch": batch})
    with pytest.raises(httpx.HTTPError, match="402 Payment Required"):
        second.get(timeout=30)  # the job's own exception (rebuilt as its base class)

    report = client.show(batch)
    assert report.outcomes.total == 2
    assert report.outcomes.quota_failures == 1
    [failure] = report.quota_failures
    assert (failure.job_id, failure.attempt, failure.http_status) == ("j2", 1, 402)
    assert failure.tag == "concurrent_consumption"


def test_retries_and_acks_late_redelivery_never_duplicate_an_outcome(
    worker: Worker, client: Preflight, sandbox: SandboxServer
) -> None:
    batch = f"celery-{uuid.uuid4().hex[:8]}"
    preflight_gate.apply_async((batch,), {"need": "20"}).get(timeout=30)
    sandbox.inject({"status": 503, "count": 1})  # the first paid call fails, the retry passes
    kwargs = {"job_id": "r1", "preflight_batch": batch}

    result = worker.flaky.apply_async(("7",), kwargs)
    assert result.get(timeout=60) == {"cost": "7", "charged": "7"}
    # What the broker hands out again when a worker dies after the task ran but before its
    # late ack: the last message of the task as it was (same id, same retries count). The
    # stored result is forgotten first, so that waiting on the id waits for this run.
    result.forget()
    again = worker.flaky.apply_async(("7",), kwargs, task_id=result.id, retries=1)
    assert again.get(timeout=60) == {"cost": "7", "charged": "7"}

    report = client.show(batch)
    assert report.outcomes.total == 2, "one failed attempt, one success, whatever the deliveries"
    assert (report.outcomes.failed, report.outcomes.succeeded) == (1, 1)
    assert report.outcomes.cost == Decimal(7)
    assert sandbox.spent["credits"] == Decimal(14), "the redelivered message did run again"


def test_the_gate_on_a_short_balance_stops_the_chord_before_any_job_runs(
    worker: Worker, client: Preflight, sandbox: SandboxServer
) -> None:
    batch = f"celery-{uuid.uuid4().hex[:8]}"
    sandbox.set_balance(credits=Decimal(30))
    jobs = [worker.paid.si("5", job_id=f"job-{i}", preflight_batch=batch) for i in range(10)]
    flow = chain(
        preflight_gate.si(batch, need="50"), chord(jobs, preflight_finish.s(batch_id=batch))
    )

    with pytest.raises(InsufficientBalance, match="insufficient: balance 30 is below need 50"):
        flow.apply_async().get(timeout=60)

    assert sandbox.spent["credits"] == 0
    assert sandbox.request_counts.get("POST /api/open/v1/jobs", 0) == 0
    assert client.show(batch).outcomes.total == 0


def test_an_unreachable_vendor_is_retried_by_the_gate_then_fails_it(
    worker: Worker, client: Preflight, sandbox: SandboxServer
) -> None:
    sandbox.inject({"status": 503, "count": -1})
    assert not client.check("probe", need="1").go
    reads_per_check = sandbox.request_counts["GET /api/open/v1/profile"]
    sandbox.reset()  # the counters back to 0 (and the fault gone: injected again below)
    sandbox.inject({"status": 503, "count": -1})
    gate = worker.app.tasks["preflight.gate"]
    gate.max_retries = 1  # one retry (after at most 2 s of backoff), then the chain fails

    with pytest.raises(PreflightUnavailable, match="unavailable"):
        gate.apply_async(("down",), {"need": "1"}).get(timeout=60)

    assert sandbox.request_counts["GET /api/open/v1/profile"] == 2 * reads_per_check


def test_a_chord_with_a_failed_job_is_finished_by_the_error_callback(
    worker: Worker, client: Preflight, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    batch = f"celery-{uuid.uuid4().hex[:8]}"
    sandbox.set_balance(credits=Decimal(100))
    costs = _costs(9)
    total = sum(costs, Decimal(0))
    jobs = [
        worker.paid.si(str(cost), job_id=f"job-{i}", preflight_batch=batch)
        for i, cost in enumerate(costs)
    ]
    # More than the balance: the vendor answers 402 and charges nothing.
    jobs.insert(4, worker.paid.si("500", job_id="too-big", preflight_batch=batch))
    finish = preflight_finish.s(batch_id=batch)
    finish.on_error(preflight_finish_on_error.s(batch_id=batch))
    flow = chain(preflight_gate.si(batch, need=str(total)), chord(jobs, finish))

    # Celery skips the callback of a chord whose header failed, and calls its error
    # callback in place before it stores the chord's failure: once that failure can be
    # read, the batch is finished. (Without follow_parents=False, get() raises the failed
    # job's own error as soon as it is stored, while the other jobs may still run.)
    error = flow.apply_async().get(timeout=120, follow_parents=False, propagate=False)

    assert isinstance(error, ChordError)
    assert "402 Payment Required" in str(error)

    report = client.show(batch)
    # (the 402's classification took a live "failure" snapshot)
    assert [snapshot.kind for snapshot in report.snapshots] == ["preflight", "failure", "finish"]
    assert (report.outcomes.total, report.outcomes.succeeded) == (10, 9)
    assert report.outcomes.cost == total
    [failure] = report.quota_failures
    assert (failure.job_id, failure.attempt, failure.http_status) == ("too-big", 1, 402)
    finished = client.finish(batch).to_dict()  # finishing again: the first finish's numbers
    assert finished["own_cost"] == str(total)
    assert finished["balance_drop"] == str(total)
    assert Decimal(finished["foreign_consumption"]) == 0
    assert sandbox.balance["credits"] == Decimal(100) - total
    # The worker logged the chord's error with its traceback, whose frames hold the
    # header's results: let them go with the worker, not at the end of the session.
    caplog.clear()
