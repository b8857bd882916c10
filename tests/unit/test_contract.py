"""The wire contract: one shape per result writes it, reads it back and describes it."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from preflight import contract
from preflight.cli.exit_codes import GUARD_STOP
from preflight.domain import verdict as domain_verdict
from preflight.domain.batch import BATCH_ID_PATTERN
from preflight.domain.classify import (
    Attributed,
    Classification,
    Evidence,
    ForeignConsumption,
    Reading,
)
from preflight.domain.forecast import Decision, Forecast, NeedBasis
from preflight.domain.outcome import build_outcome
from preflight.domain.verdict import Verdict
from preflight.domain.vocabulary import SnapshotKind, Tag
from preflight.errors import NoGoError, UsageError
from preflight.services import results
from preflight.services.results import (
    AuditOutcome,
    BatchListing,
    BatchReport,
    BatchView,
    CheckResult,
    FailureView,
    FindingView,
    FinishResult,
    ForecastView,
    GuardResult,
    ImportResult,
    LateOutcome,
    OutcomeTotals,
    ProfileReading,
    RecordResult,
    SnapshotView,
    SpendSummary,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 13, 30, 15, 250000, tzinfo=UTC)

BATCH = BatchView(
    "nightly:2026-03-01/a",
    "default",
    "finished",
    "at_risk",
    True,
    "credits",
    D("60.5"),
    D("0"),
    {"team": "a", "n": 3},
    T0,
    T0,
    T1,
)
TOTALS = OutcomeTotals(4, 2, 2, 1, 1, D("20.125"))
FAILURE = FailureView(
    "nightly",
    "job-1",
    2,
    T1,
    402,
    "quota",
    "concurrent_consumption",
    "others spent 40",
    {"b0": "100", "t0": T0.isoformat()},
    (Attributed("other", D("12.5")),),
    D("0.25"),
    "2",
    T1,
)
FINDING = FindingView(
    7, "low_balance", "default", None, T0, T1, ("a", "b"), 3, {"balance": "5"}, T1
)

#: The issue's example, as the guard projects it (rates and minutes in their wire forms).
PROJECTION = Forecast(D("40"), D("60"), 4, D("10.0"), D("30.0"), D("1.0"), D("6.0"), True)
QUIET = Forecast(D("100"), None, None, None, None, None, None, False)
GUARD = GuardResult("B", Decision.STOP, "balance 40 is below the remaining need 60", PROJECTION,
                    D("0"), 7, 12)  # fmt: skip
BASIS = NeedBasis(10, "p90", D("9"), 6, 2, "kind=nightly")

EXAMPLES: list[tuple[contract.Shape[Any], Any]] = [
    (
        contract.CHECK,
        CheckResult(
            "b1",
            "default",
            Verdict.INSUFFICIENT,
            "balance 5 is below need 60 + reserve 0",
            "credits",
            D("5.000"),
            D("60"),
            D("0"),
            D("1E+1"),
            11,
            "preflight",
            T0,
            "blocked",
            True,
            False,
            {"team": "a"},
        ),
    ),
    (
        contract.RECORD,
        RecordResult(
            "b1",
            build_outcome({"job_id": "jöb-é", "status": "failed", "http_status": 402}),
            True,
            Classification(Tag.INCONCLUSIVE, "no snapshot", Evidence()),
            12,
            None,
            ("late",),
        ),
    ),
    (contract.IMPORT, ImportResult("b1", 3, 2, 1, {"inconclusive": 1}, ())),
    (
        contract.FINISH,
        FinishResult(
            "b1",
            T1,
            SpendSummary(
                "credits",
                D("20"),
                Reading(1, T0, D("100")),
                Reading(2, T1, D("40")),
                ForeignConsumption(D("40"), Reading(2, T1, D("40")), ((1, 2),), (1, 2)),
            ),
            None,
            already_finished=True,
        ),
    ),
    (contract.FINISH, FinishResult("b2", T1, SpendSummary(None, D(0), None, None, None), "down")),
    (
        contract.REPORT,
        BatchReport(
            BATCH,
            [
                SnapshotView(1, "preflight", T0, D("100"), None, D("100")),
                SnapshotView(2, "finish", T1, None, None, None, {"characters": D("5")}),
            ],
            TOTALS,
            [LateOutcome("late", 1, "succeeded", T1)],
            [FAILURE],
            ForecastView(Decision.STOP, "short", PROJECTION, D("0"), 2, 5),
        ),
    ),
    (contract.LISTING, BatchListing(BATCH, TOTALS)),
    (contract.FAILURE, FAILURE),
    (contract.FINDING, FINDING),
    (
        contract.AUDIT,
        AuditOutcome("default", T0, False, None, 3, 9, "done", True, {"a": 1}, (FINDING,)),
    ),
    (contract.AUDIT, AuditOutcome("default", T0, True, "claimed elsewhere")),
    (
        contract.PROFILE,
        ProfileReading(
            "default",
            4,
            T0,
            "u1",
            "pro",
            {"credits": D("1200.50"), "api_quota_remaining": None},
            31,
            '{"credits": 1200.50}',
        ),
    ),
    (
        contract.PROFILE,
        ProfileReading("eleven", 5, T0, None, None, {"characters": D("10000")}, 8, "{}"),
    ),
    (contract.GUARD, GUARD),
    (contract.FORECAST, ForecastView(None, None, QUIET, D("12.5"), 3, 0)),
    (
        contract.CHECK,
        CheckResult(
            "b2",
            "default",
            Verdict.GO,
            "covers",
            "credits",
            D("100"),
            D("90"),
            D("0"),
            D("0"),
            12,
            "preflight",
            T0,
            "open",
            True,
            False,
            {"kind": "nightly"},
            BASIS,
        ),
    ),
]


def _through_the_wire(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


def _validator(shape: contract.Shape[Any]) -> Any:
    return jsonschema_rs.validator_for(
        {
            "$ref": f"#/components/schemas/{shape.name}",
            "components": {"schemas": contract.components()},
        }
    )


@pytest.mark.parametrize(("shape", "model"), EXAMPLES, ids=lambda x: getattr(x, "name", ""))
def test_a_result_read_back_writes_the_same_json(shape: contract.Shape[Any], model: Any) -> None:
    sent = model.to_dict()
    assert sent == contract.encode(shape, model)
    context = {"outcome": model.outcome} if shape is contract.RECORD else {}
    back = contract.decode(shape, _through_the_wire(sent), **context)
    assert type(back) is type(model)
    assert back.to_dict() == sent


@pytest.mark.parametrize(("shape", "model"), EXAMPLES, ids=lambda x: getattr(x, "name", ""))
def test_what_a_result_writes_is_what_its_schema_says(
    shape: contract.Shape[Any], model: Any
) -> None:
    _validator(shape).validate(_through_the_wire(model.to_dict()))


def test_the_check_answer_is_the_result_and_its_exit_code() -> None:
    _shape, result = EXAMPLES[0]
    answer = {**result.to_dict(), "exit_code": 10}
    _validator(contract.CHECK_ANSWER).validate(_through_the_wire(answer))
    assert not _validator(contract.CHECK_ANSWER).is_valid({**answer, "exit_code": 3})
    assert not _validator(contract.CHECK).is_valid(answer)  # extra keys are refused


def test_amounts_and_values_stay_exact_through_the_wire() -> None:
    _shape, result = EXAMPLES[0]
    back = contract.decode(contract.CHECK, _through_the_wire(result.to_dict()))
    assert back == result
    assert str(back.balance) == "5.000"


def test_every_read_model_has_one_shape_and_no_json_of_its_own() -> None:
    models = [
        cls
        for _name, cls in inspect.getmembers(results, inspect.isclass)
        if issubclass(cls, contract.Wire) and cls is not contract.Wire
    ]
    shapes = {shape.name: shape for shape in contract.SHAPES}
    assert len(models) == 17
    for cls in models:
        assert shapes[cls.shape.name] is cls.shape
        assert cls.shape.model is cls
        assert "to_dict" not in vars(cls), cls  # the shape writes it, nothing else


def test_a_shape_binds_one_model() -> None:
    with pytest.raises(TypeError, match="already bound"):
        contract.CHECK.binds(CheckResult)


def test_the_domain_holds_no_exit_codes() -> None:
    assert not {"exit_code", "EXIT_CODES", "STRICT_AT_RISK_EXIT"} & set(vars(domain_verdict))


def test_the_batch_id_pattern_is_the_domains() -> None:
    assert f"^{BATCH_ID_PATTERN.pattern}$" == contract.BATCH_ID


def test_the_problem_types_read_back_as_their_errors() -> None:
    for cls, slug in contract.PROBLEM_TYPES:
        back = contract.ERROR_OF_TYPE[contract.problem_type(slug)]
        # A no-go carries no verdict to rebuild a NoGoError from: a usage error (exit 2).
        assert back is (UsageError if cls is NoGoError else cls)


@pytest.mark.parametrize(
    ("decision", "strict", "code"),
    [
        (Decision.CONTINUE, False, 0),
        (Decision.CONTINUE, True, 0),
        (Decision.AT_RISK, False, 0),
        (Decision.AT_RISK, True, 14),
        (Decision.STOP, False, 15),
        (Decision.STOP, True, 15),
    ],
)
def test_the_guards_exit_codes(decision: Decision, strict: bool, code: int) -> None:
    assert contract.guard_exit_code(decision, strict=strict) == code
    assert contract.guard_exit_code(Decision.STOP) == GUARD_STOP


def test_the_domain_of_the_guard_holds_no_exit_codes() -> None:
    from preflight.domain import forecast as domain_forecast

    assert not {"exit_code", "DECISION_EXIT", "STRICT_AT_RISK_EXIT"} & set(vars(domain_forecast))
    assert not hasattr(Decision, "exit_code")


# ---------------------------------------------------------------- lossless: read back whole

#: Every field of the evidence set, a negative balance and a top-up among them.
FULL_EVIDENCE = Evidence(
    D("100"),
    T0,
    D("-2.50"),
    T1,
    D("60"),
    D("12.5"),
    "mean_succeeded",
    D("40"),
    True,
    D("10"),
    True,
    True,
    ((3, 4),),
    (1, 3, 4, 7),
)
TAGGED = RecordResult(
    "b1",
    build_outcome({"job_id": "j-1", "status": "failed", "http_status": 402, "cost": "3"}),
    True,
    Classification(
        Tag.CONCURRENT_CONSUMPTION,
        "others spent 40",
        FULL_EVIDENCE,
        (Attributed("other", D("12.5")), Attributed("third", D("0.5"))),
        D("27"),
        "3",
    ),
    7,
    None,
)
#: A 401 the vendor's own rule made a quota failure (ElevenLabs), as the server stored it.
SAID_BY_THE_VENDOR = {"job_id": "tts-1", "status": "failed", "http_status": 401, "cost": "9"}
MARKED = RecordResult(
    "b1",
    replace(build_outcome(SAID_BY_THE_VENDOR), marked_quota=True),
    True,
    Classification(Tag.INCONCLUSIVE, "no preflight snapshot", Evidence(snapshot_ids=(5,))),
    5,
    None,
)
UNTAGGED = RecordResult(
    "b1", build_outcome({"job_id": "ok", "status": "succeeded"}), False, None, None, None
)
LOSSLESS: list[tuple[contract.Shape[Any], Any]] = [
    *EXAMPLES,
    (contract.RECORD, TAGGED),
    (contract.RECORD, MARKED),
    (contract.RECORD, UNTAGGED),
    (
        contract.FINISH,
        FinishResult(
            "b3",
            T1,
            SpendSummary(
                "usd",
                D("1.5"),
                Reading(4, T0, D("10"), "preflight"),
                Reading(9, T1, None, "finish"),
                None,
            ),
            None,
        ),
    ),
]


def _client_outcome(model: Any) -> Any:
    """The outcome a remote client sent: as it built it, before the server's vendor rule."""
    if model is MARKED:
        return build_outcome(SAID_BY_THE_VENDOR)
    return model.outcome


@pytest.mark.parametrize(("shape", "model"), LOSSLESS, ids=lambda x: getattr(x, "name", ""))
def test_a_result_read_back_is_the_same_result(shape: contract.Shape[Any], model: Any) -> None:
    context = {"outcome": _client_outcome(model)} if shape is contract.RECORD else {}
    sent = _through_the_wire(model.to_dict())
    _validator(shape).validate(sent)
    assert contract.decode(shape, sent, **context) == model


def test_a_record_carries_its_whole_classification() -> None:
    sent = TAGGED.to_dict()
    assert sent["evidence"] == FULL_EVIDENCE.to_dict()
    assert sent["attribution"] == [
        {"batch_id": "other", "cost": "12.5"},
        {"batch_id": "third", "cost": "0.5"},
    ]
    assert (sent["unattributed"], sent["classifier_version"]) == ("27", "3")
    untagged = UNTAGGED.to_dict()
    assert [untagged[k] for k in ("evidence", "attribution", "unattributed")] == [None, [], None]
    assert untagged["classifier_version"] is None


def test_a_finish_carries_its_two_snapshots_and_its_top_ups() -> None:
    _shape, finished = EXAMPLES[3]
    sent = finished.to_dict()
    assert sent["preflight_snapshot"] == {
        "id": 1,
        "kind": "audit",
        "taken_at": T0.isoformat(),
        "balance": "100",
    }
    assert sent["finish_snapshot"]["id"] == 2
    assert sent["topups"] == [[1, 2]]
    # The keys from before stay as they were, in their order, before the new ones.
    assert list(sent)[:11] == [
        "batch_id",
        "status",
        "finished_at",
        "meter",
        "own_cost",
        "preflight_balance",
        "finish_balance",
        "balance_drop",
        "foreign_consumption",
        "foreign_is_lower_bound",
        "snapshot_ids",
    ]


_DECIMALS = st.decimals(
    min_value=D("-1E+12"), max_value=D("1E+12"), allow_nan=False, allow_infinity=False
)
_TIMES = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]))
_IDS = st.integers(min_value=1, max_value=2**53)


@st.composite
def _evidence(draw: st.DrawFn) -> Evidence:
    maybe = st.none() | _DECIMALS
    return Evidence(
        b0=draw(maybe),
        t0=draw(st.none() | _TIMES),
        ba=draw(maybe),
        ta=draw(st.none() | _TIMES),
        own=draw(maybe),
        expected_cost=draw(maybe),
        expected_cost_source=draw(st.sampled_from([None, "declared", "mean_succeeded", "unknown"])),
        foreign=draw(maybe),
        foreign_is_lower_bound=draw(st.booleans()),
        foreign_before_failure=draw(maybe),
        before_failure=draw(st.booleans()),
        attributed_exceeds_measured=draw(st.booleans()),
        topups=tuple(draw(st.lists(st.tuples(_IDS, _IDS), max_size=3))),
        snapshot_ids=tuple(draw(st.lists(_IDS, max_size=5))),
    )


@given(_evidence())
def test_evidence_is_written_as_stored_and_read_back_whole(evidence: Evidence) -> None:
    sent = contract.encode(contract.EVIDENCE, evidence)
    assert sent == evidence.to_dict()  # the JSON the tag is stored with
    _validator(contract.EVIDENCE).validate(_through_the_wire(sent))
    assert contract.decode(contract.EVIDENCE, _through_the_wire(sent)) == evidence


_READINGS = st.builds(
    Reading,
    _IDS,
    _TIMES,
    st.none() | _DECIMALS,
    st.sampled_from([kind.value for kind in SnapshotKind]),
)


@st.composite
def _finish(draw: st.DrawFn) -> FinishResult:
    start, end = draw(st.none() | _READINGS), draw(st.none() | _READINGS)
    foreign = None
    if end is not None and draw(st.booleans()):
        foreign = ForeignConsumption(
            draw(_DECIMALS),
            end,
            tuple(draw(st.lists(st.tuples(_IDS, _IDS), max_size=3))),
            tuple(draw(st.lists(_IDS, max_size=5))),
        )
    summary = SpendSummary(
        draw(st.none() | st.sampled_from(["credits", "usd"])), draw(_DECIMALS), start, end, foreign
    )
    return FinishResult(
        "b", draw(_TIMES), summary, draw(st.none() | st.text()), draw(st.booleans())
    )


@given(_finish())
def test_a_finish_read_back_is_the_same_finish(finished: FinishResult) -> None:
    sent = _through_the_wire(finished.to_dict())
    _validator(contract.FINISH).validate(sent)
    assert contract.decode(contract.FINISH, sent) == finished
