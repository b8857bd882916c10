"""The need estimated from history (``check --jobs N --estimate-from KEY=VALUE``), on SQLite
and PostgreSQL, against the sandbox vendor: the exact need for each statistic on a history
whose costs the test chooses (ties and the smallest sample included), which batches are
history, and the usage errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from preflight.api import Preflight
from preflight.db import forecast as history_queries
from preflight.errors import UsageError
from preflight.sandbox import SandboxServer
from preflight.settings import Settings
from tests.integration.test_guard import run_cli
from tests.integration.test_guard import settings as settings
from tests.support import Clock


@pytest.fixture
def pf(settings: Settings, clock: Clock) -> Iterator[Preflight]:
    with Preflight(settings, clock=clock) as app:
        yield app


def past_batch(
    pf: Preflight,
    clock: Clock,
    batch: str,
    label: dict[str, str],
    costs: list[str],
    *,
    finish: bool = True,
) -> None:
    """A batch checked with ``label``, its succeeded jobs costing ``costs``, a 402 (which
    consumed nothing) and a failed job with a cost, then finished."""
    pf.check(batch, need="1", labels=label)
    clock.advance(seconds=1)
    for n, cost in enumerate(costs):
        pf.record(batch, {"job_id": f"j{n}", "status": "succeeded", "cost": cost})
    pf.record(
        batch, {"job_id": "quota", "status": "failed", "http_status": 402, "cost": "500"},
        snapshot=False,
    )  # fmt: skip
    pf.record(batch, {"job_id": "broken", "status": "failed", "cost": "400"})
    if finish:
        pf.finish(batch, snapshot=False)
    clock.advance(minutes=1)


NIGHTLY = {"kind": "nightly"}


@pytest.fixture
def history(pf: Preflight, clock: Clock, sandbox: SandboxServer) -> None:
    sandbox.set_balance(credits=Decimal(100_000))
    past_batch(pf, clock, "h1", NIGHTLY, ["1", "2", "2"])
    past_batch(pf, clock, "h2", {**NIGHTLY, "team": "x"}, ["2", "3", "9"])
    past_batch(pf, clock, "open", NIGHTLY, ["100"], finish=False)  # not finished: no history
    past_batch(pf, clock, "other", {"kind": "weekly"}, ["50"])  # another label
    past_batch(pf, clock, "tiny", {"kind": "tiny"}, ["7"])


# The sample: 1, 2, 2, 2, 3, 9 (n = 6). Nearest rank: p50 = the 3rd, p90 and p95 the 6th.
@pytest.mark.parametrize(
    ("statistic", "per_job", "need"),
    [
        ("mean", "3.166666666666666666666666667", "31.66666666666666666666666667"),
        ("p50", "2", "20"),
        ("p90", "9", "90"),
        ("p95", "9", "90"),
        ("max", "9", "90"),
    ],
)
@pytest.mark.usefixtures("history")
def test_each_statistic_gives_the_exact_need(
    pf: Preflight, statistic: str, per_job: str, need: str
) -> None:
    result = pf.check(
        "new", jobs=10, estimate_from="kind=nightly", estimate=statistic, min_history=6
    )
    assert result.need == Decimal(need)
    assert result.need_basis is not None
    assert result.need_basis.to_dict() == {
        "jobs": 10,
        "statistic": statistic,
        "per_job": per_job,
        "sample_jobs": 6,
        "sample_batches": 2,
        "label": "kind=nightly",
    }
    assert result.to_dict()["need_basis"]["per_job"] == per_job
    # The checked batch carries the label.
    assert result.labels["kind"] == "nightly"


@pytest.mark.usefixtures("history")
def test_the_smallest_sample(pf: Preflight) -> None:
    for statistic in ("mean", "p50", "p90", "p95", "max"):
        result = pf.check(
            f"t-{statistic}", jobs=3, estimate_from="kind=tiny", estimate=statistic, min_history=1
        )
        assert (result.need, result.need_basis and result.need_basis.sample_jobs) == (
            Decimal(21),
            1,
        )


@pytest.mark.usefixtures("history")
def test_the_checked_batch_feeds_later_estimates(pf: Preflight, clock: Clock) -> None:
    first = pf.check("new", jobs=2, estimate_from="kind=nightly", estimate="max", min_history=6)
    assert first.need == Decimal(18)
    pf.record("new", {"job_id": "a", "status": "succeeded", "cost": "40"})
    pf.finish("new", snapshot=False)
    clock.advance(minutes=1)
    later = pf.check("next", jobs=2, estimate_from="kind=nightly", estimate="max", min_history=7)
    assert later.need == Decimal(80)
    assert later.need_basis is not None
    assert (later.need_basis.sample_jobs, later.need_basis.sample_batches) == (7, 3)


@pytest.mark.usefixtures("history")
def test_only_the_most_recent_batches_are_read(
    pf: Preflight, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_queries, "HISTORY_BATCHES", 1)
    result = pf.check("new", jobs=1, estimate_from="kind=nightly", estimate="p50", min_history=1)
    # h2, finished after h1: 2, 3, 9.
    assert result.need_basis is not None
    assert (result.need, result.need_basis.sample_batches) == (Decimal(3), 1)


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"jobs": 10, "estimate_from": "kind=nightly"}, "estimate_from: 6 succeeded job"),
        ({"jobs": 10, "estimate_from": "kind=none", "min_history": 1}, "estimate_from: 0 succ"),
        ({"jobs": 10, "estimate_from": "kind=nightly", "need": "5"}, "need: give a need or"),
        ({"jobs": 10}, "estimate_from: --jobs needs"),
        ({"estimate_from": "kind=nightly"}, "jobs: --estimate-from needs"),
        ({"jobs": 1, "estimate_from": "nightly"}, "estimate_from: must be KEY=VALUE"),
        ({"jobs": 1, "estimate_from": "kind=nightly", "estimate": "p99"}, "estimate: must be"),
    ],
)
def test_usage_errors(pf: Preflight, options: dict[str, object], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        pf.check("new", **options)  # type: ignore[arg-type]
    assert not [b for b in pf.batches() if b.batch.batch_id == "new"]  # nothing stored


@pytest.mark.usefixtures("history")
def test_cli_need_basis_and_exit_2(
    pf: Preflight,
    clock: Clock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        monkeypatch, capsys, settings, clock,
        "check", "new", "--jobs", "10", "--estimate-from", "kind=nightly", "--estimate", "p90",
        "--min-history", "6", "--format", "json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0
    assert (data["need"], data["need_basis"]) == (
        "90",
        {
            "jobs": 10,
            "statistic": "p90",
            "per_job": "9",
            "sample_jobs": 6,
            "sample_batches": 2,
            "label": "kind=nightly",
        },
    )
    code, out, _ = run_cli(
        monkeypatch, capsys, settings, clock,
        "check", "text", "--jobs", "10", "--estimate-from", "kind=nightly", "--min-history", "6",
    )  # fmt: skip
    assert code == 0
    assert (
        "need 31.66666666666666666666666667 = 10 jobs x 3.166666666666666666666666667 "
        "(mean of 6 succeeded jobs in 2 finished batches labelled kind=nightly)"
    ) in out
    code, _, err = run_cli(
        monkeypatch, capsys, settings, clock,
        "check", "new2", "--jobs", "10", "--estimate-from", "kind=nightly",
    )  # fmt: skip
    assert code == 2
    assert "6 succeeded job(s)" in err
    assert "fewer than the 20 required" in err
    code, _, err = run_cli(
        monkeypatch, capsys, settings, clock,
        "check", "new2", "--jobs", "10", "--estimate-from", "kind=nightly", "--need", "5",
    )  # fmt: skip
    assert (code, "need" in err) == (2, True)
