"""The wire contract: how each result of the verbs is written as JSON and read back.

One declaration per read model (a :class:`Shape`: its JSON keys in order, each with a
:class:`Codec`) drives three things, so that they cannot drift apart:

- :func:`encode`: the results' ``to_dict()``, i.e. what the CLI prints with ``--format
  json`` and what the HTTP API sends;
- :func:`decode`: remote mode and the async client read the server's answers with it;
- :func:`json_schema`: the HTTP API's OpenAPI document describes its answers with it.

Beside them, the tables both ends of the wire share: the problem ``type`` of each error
(the HTTP statuses stay in :mod:`preflight.http.problems`), the exit code of each verdict
(the CLI's, which the HTTP check answer carries too) and the id patterns, taken from the
domain's own validators. No web framework here: remote mode imports this module.

A shape binds to its dataclass where the dataclass is defined (``@SHAPE.binds``), so that
this module imports no read model: a cold ``preflight check`` loads the check's result and
this table, not the sixteen other read models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar

from preflight.domain.batch import BATCH_ID_PATTERN
from preflight.domain.classify import (
    Attributed,
    Classification,
    Evidence,
    ForeignConsumption,
    Reading,
)
from preflight.domain.forecast import (
    ESTIMATE_STATISTICS,
    Decision,
    Forecast,
    NeedBasis,
    minutes_text,
    rate_text,
)
from preflight.domain.verdict import Verdict
from preflight.domain.vocabulary import (
    FINDING_KINDS,
    BatchStatus,
    OutcomeStatus,
    SnapshotKind,
    Tag,
)
from preflight.domain.wire import amount_text
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    ConfigError,
    ConflictError,
    NoGoError,
    NotFoundError,
    PreflightError,
    SchemaMissingError,
    StorageError,
    UsageError,
    VendorError,
    VendorRejectedError,
    VendorUnavailableError,
)

if TYPE_CHECKING:
    from preflight.services.check_result import CheckResult
    from preflight.services.results import (
        AuditOutcome,
        BatchListing,
        BatchReport,
        BatchView,
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

T = TypeVar("T")

#: Said with every check's answer: it is a reading, not a reservation.
ADVISORY: Final = "advisory: the balance was read, not reserved; other workers may still spend it"

# ---------------------------------------------------------------- id patterns

#: A batch id, as :func:`preflight.domain.batch.validate_batch_id` accepts it.
BATCH_ID: Final = f"^{BATCH_ID_PATTERN.pattern}$"
#: A non-negative decimal within the amount bound (40 digits before the point, 20 after).
AMOUNT_IN: Final = r"^[0-9]{1,40}(\.[0-9]{1,20})?$"
#: An amount as every output writes it: a plain decimal, never an exponent.
AMOUNT_OUT: Final = r"^-?[0-9]+(\.[0-9]+)?$"
#: A vendor adapter's meter name (credits, api_quota_remaining, characters, usd, ...).
METER: Final = r"^[a-z][a-z0-9_]{0,31}$"

# ---------------------------------------------------------------- exit codes of verdicts

#: The CLI's exit code of each verdict (README, "Exit codes"); the HTTP check answer
#: carries it as ``exit_code``.
EXIT_CODES: Final[Mapping[Verdict, int]] = {
    Verdict.GO: 0,
    Verdict.AT_RISK: 0,
    Verdict.INSUFFICIENT: 10,
    Verdict.AUTH_FAILED: 11,
    Verdict.BILLING_BLOCKED: 12,
    Verdict.UNAVAILABLE: 13,
}
STRICT_AT_RISK_EXIT: Final = 14


def exit_code(verdict: Verdict, *, strict: bool = False, fail_open: bool = False) -> int:
    """The exit code of a verdict: ``strict`` makes at_risk 14, ``fail_open`` unavailable 0."""
    if verdict is Verdict.AT_RISK and strict:
        return STRICT_AT_RISK_EXIT
    if verdict is Verdict.UNAVAILABLE and fail_open:
        return 0
    return EXIT_CODES[verdict]


#: The CLI's exit code of each guard decision (README, "Exit codes"); the HTTP guard answer
#: carries it as ``exit_code``. ``at_risk`` with ``strict`` is 14, as a check's.
GUARD_EXIT_CODES: Final[Mapping[Decision, int]] = {
    Decision.CONTINUE: 0,
    Decision.AT_RISK: 0,
    Decision.STOP: 15,
}


def guard_exit_code(decision: Decision, *, strict: bool = False) -> int:
    """The exit code of a guard decision: ``strict`` makes at_risk 14."""
    if decision is Decision.AT_RISK and strict:
        return STRICT_AT_RISK_EXIT
    return GUARD_EXIT_CODES[decision]


# ---------------------------------------------------------------- problem types of errors

#: Each error's problem ``type`` slug, most specific first: the first class an error is an
#: instance of gives its type. The server writes it, the remote clients read it back.
PROBLEM_TYPES: Final[tuple[tuple[type[PreflightError], str], ...]] = (
    (NotFoundError, "not-found"),
    (ConflictError, "conflict"),
    # Settings are the server's: a request cannot fix them (e.g. an account without token).
    (ConfigError, "server-config"),
    (UsageError, "bad-request"),
    (NoGoError, "no-go"),
    (AuthError, "vendor-auth"),
    (BillingBlockedError, "vendor-billing-blocked"),
    (VendorRejectedError, "vendor-rejected"),
    (VendorUnavailableError, "vendor-unavailable"),
    (VendorError, "vendor-error"),
    (SchemaMissingError, "schema-missing"),
    (StorageError, "storage-unavailable"),
)
#: ``type`` URIs are relative references to the API's own docs: stable identifiers.
TYPE_BASE: Final = "/problems/"
#: The HTTP edge's own problems (no error class raised them): what a client reads them as.
EDGE_PROBLEMS: Final[Mapping[str, type[PreflightError]]] = {
    "validation": UsageError,
    "too-large": UsageError,
    "unsupported-media-type": UsageError,
    "method-not-allowed": UsageError,
}


def problem_type(slug: str) -> str:
    return TYPE_BASE + slug


#: problem ``type`` → the error a remote client raises for it. (The no-go answer is a
#: usage error on the client: it carries no verdict to rebuild a NoGoError from.)
ERROR_OF_TYPE: Final[Mapping[str, type[PreflightError]]] = {
    **{problem_type(slug): UsageError if cls is NoGoError else cls for cls, slug in PROBLEM_TYPES},
    **{problem_type(slug): cls for slug, cls in EDGE_PROBLEMS.items()},
}


# ---------------------------------------------------------------- codecs


@dataclass(frozen=True)
class Codec:
    """One value's two directions and its JSON Schema."""

    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]
    schema: Mapping[str, Any]


def _same(value: Any) -> Any:
    return value


STR: Final = Codec(_same, _same, {"type": "string"})
INT: Final = Codec(_same, _same, {"type": "integer"})
BOOL: Final = Codec(_same, _same, {"type": "boolean"})
AMOUNT: Final = Codec(amount_text, Decimal, {"type": "string", "pattern": AMOUNT_OUT})
TIME: Final = Codec(
    datetime.isoformat, datetime.fromisoformat, {"type": "string", "format": "date-time"}
)
#: JSON already in its wire form (stored evidence, an audit's steps): passed as it is.
OBJECT: Final = Codec(dict, dict, {"type": "object"})
METER_NAME: Final = Codec(_same, _same, {"type": "string", "pattern": METER})
#: Minutes of a forecast: decimal strings rounded to 0.1; rates per minute: to a millionth.
MINUTES: Final = Codec(minutes_text, Decimal, {"type": "string", "pattern": AMOUNT_OUT})
RATE: Final = Codec(rate_text, Decimal, {"type": "string", "pattern": AMOUNT_OUT})


def nullable(codec: Codec) -> Codec:
    return Codec(
        lambda value: None if value is None else codec.dump(value),
        lambda value: None if value is None else codec.load(value),
        {"anyOf": [codec.schema, {"type": "null"}]},
    )


def array(codec: Codec, into: Callable[[Iterable[Any]], Any] = list) -> Codec:
    return Codec(
        lambda values: [codec.dump(value) for value in values],
        lambda values: into(codec.load(value) for value in values),
        {"type": "array", "items": codec.schema},
    )


def mapping(codec: Codec) -> Codec:
    return Codec(
        lambda values: {key: codec.dump(value) for key, value in values.items()},
        lambda values: {key: codec.load(value) for key, value in values.items()},
        {"type": "object", "additionalProperties": codec.schema},
    )


def words(values: Iterable[str]) -> Codec:
    """A string of a closed vocabulary, kept a plain string."""
    return Codec(_same, _same, {"type": "string", "enum": list(values)})


def words_int(values: Iterable[int]) -> Codec:
    """An integer of a closed set (an exit code)."""
    return Codec(_same, _same, {"type": "integer", "enum": list(values)})


def enum(kind: type[StrEnum]) -> Codec:
    """A string of a closed vocabulary, read back as its enum."""
    return Codec(
        lambda value: value.value, kind, {"type": "string", "enum": [k.value for k in kind]}
    )


def nested(shape: Shape[Any]) -> Codec:
    return Codec(
        lambda value: encode(shape, value),
        lambda value: decode(shape, value),
        {"$ref": f"#/components/schemas/{shape.name}"},
    )


# ---------------------------------------------------------------- shapes


class Wire:
    """Base of the read models: ``to_dict()`` is the JSON form their shape declares."""

    __slots__ = ()
    shape: ClassVar[Shape[Any]]

    def to_dict(self) -> dict[str, Any]:
        """This result's JSON form: amounts as decimal strings, times ISO 8601."""
        return encode(self.shape, self)


W = TypeVar("W", bound=Wire)


@dataclass(frozen=True)
class Field:
    """One JSON key of a shape.

    ``attr``: the model's attribute (and constructor keyword) it comes from and goes to
    (default: the key); ``get``: how to read it from the model when that is not an
    attribute; ``read=False``: written only (a value the model derives, or a constant);
    ``when``: written only when it holds of the model (an optional key); ``inline``: the
    nested shape's keys are written at this level.
    """

    key: str
    codec: Codec
    attr: str | None = None
    get: Callable[[Any], Any] | None = None
    read: bool = True
    when: Callable[[Any], bool] | None = None
    inline: Shape[Any] | None = None

    def value_of(self, model: Any) -> Any:
        return self.get(model) if self.get is not None else getattr(model, self.attr or self.key)


class Shape(Generic[T]):
    """A read model's JSON form: its keys in order. ``build`` makes the model from the
    values read back, by attribute (default: the model's constructor with them)."""

    def __init__(
        self,
        name: str,
        *fields: Field,
        build: Callable[..., T] | None = None,
        model: type[T] | None = None,
    ) -> None:
        self.name = name
        self.fields = fields
        self._build = build
        self._model: type[T] | None = model

    def __repr__(self) -> str:
        return f"Shape({self.name!r})"

    def binds(self, model: type[W]) -> type[W]:
        """Class decorator: ``model`` is this shape's read model (its ``to_dict()``)."""
        if self._model is not None:
            raise TypeError(f"{self.name} is already bound to {self._model.__name__}")
        self._model = model  # type: ignore[assignment]
        model.shape = self
        return model

    @property
    def model(self) -> type[T]:
        if self._model is None:
            raise TypeError(f"no read model is bound to {self.name}")
        return self._model

    def build(self, values: dict[str, Any], **context: Any) -> T:
        if self._build is not None:
            return self._build(self.model, values, **context)
        return self.model(**values)


def encode(shape: Shape[Any], model: Any) -> dict[str, Any]:
    """``model``'s JSON form, key by key as ``shape`` declares."""
    data: dict[str, Any] = {}
    for f in shape.fields:
        value = f.value_of(model)
        if f.inline is not None:
            data.update(encode(f.inline, value))
        elif f.when is None or f.when(model):
            data[f.key] = f.codec.dump(value)
    return data


def decode(shape: Shape[T], data: Mapping[str, Any], **context: Any) -> T:
    """The read model of ``data`` (a server's answer); ``context``: what the request knew."""
    values: dict[str, Any] = {}
    for f in shape.fields:
        if not f.read:
            continue
        if f.inline is not None:
            # What the outer shape read so far is the inner one's context (a finish's time).
            values[f.attr or f.key] = decode(f.inline, data, **{**context, **values})
        elif f.when is None or f.key in data:
            values[f.attr or f.key] = f.codec.load(data[f.key])
    return shape.build(values, **context)


def json_schema(shape: Shape[Any]) -> dict[str, Any]:
    """The JSON Schema of ``shape`` (references to nested shapes by component name)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in shape.fields:
        if f.inline is not None:
            inner = json_schema(f.inline)
            properties.update(inner["properties"])
            required.extend(inner["required"])
            continue
        properties[f.key] = dict(f.codec.schema)
        if f.when is None:
            required.append(f.key)
    return {
        "title": shape.name,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- the read models

_AMOUNT_OR_NULL: Final = nullable(AMOUNT)
_TIME_OR_NULL: Final = nullable(TIME)
_STR_OR_NULL: Final = nullable(STR)
_INT_OR_NULL: Final = nullable(INT)
_STATUS: Final = words(s.value for s in BatchStatus)
_TAG_OR_NULL: Final = nullable(words(t.value for t in Tag))
_FIRST_METERS: Final = ("credits", "api_quota_remaining")


def _has_other_meters(meters: Mapping[str, object] | None) -> bool:
    """A vendor with meters besides the first vendor's two: its JSON names every meter."""
    return bool(meters) and any(name not in _FIRST_METERS for name in meters or ())


NEED_BASIS: Final[Shape[NeedBasis]] = Shape(
    "NeedBasis",
    Field("jobs", INT),
    Field("statistic", words(ESTIMATE_STATISTICS)),
    Field("per_job", AMOUNT),
    Field("sample_jobs", INT),
    Field("sample_batches", INT),
    Field("label", STR),
    model=NeedBasis,
)

_ATTRIBUTED: Final[Shape[Attributed]] = Shape(
    "Attributed",
    Field("batch_id", STR),
    Field("cost", AMOUNT),
    model=Attributed,
)

#: A top-up in evidence: the snapshots before and after the balance rose.
_PAIR: Final = Codec(
    list,
    tuple,
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
)

#: A classification's evidence (docs/classification.md), as it is stored with the tag.
EVIDENCE: Final[Shape[Evidence]] = Shape(
    "Evidence",
    Field("b0", _AMOUNT_OR_NULL),
    Field("t0", _TIME_OR_NULL),
    Field("ba", _AMOUNT_OR_NULL),
    Field("ta", _TIME_OR_NULL),
    Field("own", _AMOUNT_OR_NULL),
    Field("expected_cost", _AMOUNT_OR_NULL),
    Field("expected_cost_source", _STR_OR_NULL),
    Field("foreign", _AMOUNT_OR_NULL),
    Field("foreign_is_lower_bound", BOOL),
    Field("foreign_before_failure", _AMOUNT_OR_NULL),
    Field("before_failure", BOOL),
    Field("attributed_exceeds_measured", BOOL),
    Field("topup", BOOL, get=lambda e: bool(e.topups), read=False),
    Field("topups", array(_PAIR, tuple)),
    Field("snapshot_ids", array(INT, tuple)),
    model=Evidence,
)

#: One snapshot read on a batch's meter: the ends of a finish's spend summary.
READING: Final[Shape[Reading]] = Shape(
    "SnapshotReading",
    Field("id", INT, attr="snapshot_id"),
    Field("kind", words(k.value for k in SnapshotKind)),
    Field("taken_at", TIME),
    Field("balance", _AMOUNT_OR_NULL),
    model=Reading,
)

CHECK: Final[Shape[CheckResult]] = Shape(
    "CheckResult",
    Field("batch_id", STR),
    Field("account", STR),
    Field("verdict", enum(Verdict)),
    Field("reason", STR),
    Field("meter", nullable(METER_NAME)),
    Field("balance", _AMOUNT_OR_NULL),
    Field("need", _AMOUNT_OR_NULL),
    # How the need was estimated from history (check --jobs N --estimate-from K=V).
    Field("need_basis", nullable(nested(NEED_BASIS))),
    Field("reserve", AMOUNT),
    Field("outstanding_other", _AMOUNT_OR_NULL),
    Field("snapshot_id", _INT_OR_NULL),
    Field("snapshot_kind", nullable(words(k.value for k in SnapshotKind))),
    Field("checked_at", TIME),
    Field("status", _STATUS),
    Field("verified", BOOL),
    Field("fail_open", BOOL),
    Field("labels", mapping(STR), get=lambda r: r.labels),
    Field("advisory", STR, get=lambda _r: ADVISORY, read=False),
)

#: The HTTP check's answer: the result and the CLI's exit code of its verdict, which the
#: HTTP edge adds (it knows ``strict``). Remote mode reads it as a :data:`CHECK`.
CHECK_ANSWER: Final[Shape[CheckResult]] = Shape(
    "CheckAnswer",
    *CHECK.fields,
    Field("exit_code", words_int(sorted({*EXIT_CODES.values(), STRICT_AT_RISK_EXIT})), read=False),
)


def _record(model: type[RecordResult], values: dict[str, Any], *, outcome: Any) -> RecordResult:
    """The tag with all the classifier said, on the outcome as the server stored it: a
    failure the vendor's own rule made a quota failure (ElevenLabs' 401) is one here too."""
    tag, reason = values.pop("tag"), values.pop("reason")
    evidence, attribution = values.pop("evidence"), values.pop("attribution")
    unattributed, version = values.pop("unattributed"), values.pop("classifier_version")
    classification = (
        Classification(Tag(tag), reason or "", evidence, attribution, unattributed, version)
        if tag
        else None
    )
    if values.pop("quota_failure") and not outcome.quota_failure:
        outcome = replace(outcome, marked_quota=True)
    return model(outcome=outcome, tag=classification, **values)


def _of_tag(name: str, default: Any = None) -> Callable[[Any], Any]:
    """A field of a record's classification (``default`` when it was not classified)."""
    return lambda r: getattr(r.tag, name) if r.tag else default


RECORD: Final[Shape[RecordResult]] = Shape(
    "RecordResult",
    Field("batch_id", STR),
    Field("job_id", STR, get=lambda r: r.outcome.job_id, read=False),
    Field("attempt", INT, get=lambda r: r.outcome.attempt, read=False),
    Field(
        "status",
        words(s.value for s in OutcomeStatus),
        get=lambda r: r.outcome.status.value,
        read=False,
    ),
    Field("created", BOOL),
    Field("quota_failure", BOOL, get=lambda r: r.outcome.quota_failure),
    Field("tag", _TAG_OR_NULL, get=lambda r: r.tag.tag.value if r.tag else None),
    Field("reason", _STR_OR_NULL, get=_of_tag("reason")),
    Field("snapshot_id", _INT_OR_NULL),
    Field("snapshot_error", _STR_OR_NULL),
    Field("warnings", array(STR, tuple)),
    # The classification whole, as ``failures`` shows it once stored (null: no tag).
    Field("evidence", nullable(nested(EVIDENCE)), get=_of_tag("evidence")),
    Field("attribution", array(nested(_ATTRIBUTED), tuple), get=_of_tag("attribution", ())),
    Field("unattributed", _AMOUNT_OR_NULL, get=_of_tag("unattributed")),
    Field("classifier_version", _STR_OR_NULL, get=_of_tag("version")),
    build=_record,
)

IMPORT: Final[Shape[ImportResult]] = Shape(
    "ImportResult",
    Field("batch_id", STR),
    Field("lines", INT),
    Field("inserted", INT),
    Field("duplicates", INT),
    Field("tags", mapping(INT)),
    Field("warnings", array(STR, tuple)),
)


def _summary(model: type[SpendSummary], values: dict[str, Any], **_outer: Any) -> SpendSummary:
    """The summary of its two readings; the foreign consumption ends at the finish's."""
    start, end = values["start"], values["end"]
    foreign = None
    if values["foreign_consumption"] is not None and end is not None:
        foreign = ForeignConsumption(
            amount=values["foreign_consumption"],
            end=end,
            topups=values["topups"],
            snapshot_ids=values["snapshot_ids"],
        )
    return model(values["meter"], values["own_cost"], start, end, foreign)


def _of_foreign(name: str, default: Any) -> Callable[[Any], Any]:
    """A field of a summary's foreign consumption (``default`` when there is none)."""
    return lambda s: getattr(s.foreign, name) if s.foreign else default


SUMMARY: Final[Shape[SpendSummary]] = Shape(
    "SpendSummary",
    Field("meter", nullable(METER_NAME)),
    Field("own_cost", AMOUNT),
    Field(
        "preflight_balance",
        _AMOUNT_OR_NULL,
        get=lambda s: s.start.balance if s.start else None,
        read=False,
    ),
    Field(
        "finish_balance",
        _AMOUNT_OR_NULL,
        get=lambda s: s.end.balance if s.end else None,
        read=False,
    ),
    Field("balance_drop", _AMOUNT_OR_NULL, get=lambda s: s.drop, read=False),
    Field("foreign_consumption", _AMOUNT_OR_NULL, get=_of_foreign("amount", None)),
    Field("foreign_is_lower_bound", BOOL, get=_of_foreign("is_lower_bound", False), read=False),
    Field("snapshot_ids", array(INT, tuple), get=_of_foreign("snapshot_ids", ())),
    # Where the balances come from: the two snapshots, and the top-ups between them.
    Field("topups", array(_PAIR, tuple), get=_of_foreign("topups", ())),
    Field("preflight_snapshot", nullable(nested(READING)), attr="start"),
    Field("finish_snapshot", nullable(nested(READING)), attr="end"),
    build=_summary,
)


FINISH: Final[Shape[FinishResult]] = Shape(
    "FinishResult",
    Field("batch_id", STR),
    Field(
        "status",
        words([BatchStatus.FINISHED.value]),
        get=lambda _r: BatchStatus.FINISHED.value,
        read=False,
    ),
    Field("finished_at", TIME),
    Field("summary", nested(SUMMARY), inline=SUMMARY),
    Field("snapshot_error", _STR_OR_NULL),
    Field("already_finished", BOOL),
)

BATCH: Final[Shape[BatchView]] = Shape(
    "BatchView",
    Field("batch_id", STR),
    Field("account", STR),
    Field("status", _STATUS),
    Field("verdict", nullable(words(v.value for v in Verdict))),
    Field("verified", BOOL),
    Field("meter", nullable(METER_NAME)),
    Field("need", _AMOUNT_OR_NULL),
    Field("reserve", AMOUNT),
    Field("labels", OBJECT),
    Field("created_at", TIME),
    Field("checked_at", _TIME_OR_NULL),
    Field("finished_at", _TIME_OR_NULL),
)

TOTALS: Final[Shape[OutcomeTotals]] = Shape(
    "OutcomeTotals",
    Field("total", INT),
    Field("succeeded", INT),
    Field("failed", INT),
    Field("quota_failures", INT),
    Field("late", INT),
    Field("cost", AMOUNT),
)


def _snapshot(model: type[SnapshotView], values: dict[str, Any]) -> SnapshotView:
    meters = values.pop("extra_meters", None) or {}
    others = {
        name: value
        for name, value in meters.items()
        if name not in _FIRST_METERS and value is not None
    }
    return model(**values, extra_meters=others or None)


SNAPSHOT: Final[Shape[SnapshotView]] = Shape(
    "SnapshotView",
    Field("id", INT),
    Field("kind", words(k.value for k in SnapshotKind)),
    Field("taken_at", TIME),
    Field("credits", _AMOUNT_OR_NULL),
    Field("api_quota_remaining", _AMOUNT_OR_NULL),
    Field("balance", _AMOUNT_OR_NULL),
    # Any other vendor's meters by name (none for the first vendor).
    Field(
        "meters",
        mapping(_AMOUNT_OR_NULL),
        attr="extra_meters",
        when=lambda s: bool(s.extra_meters),
    ),
    build=_snapshot,
)

LATE: Final[Shape[LateOutcome]] = Shape(
    "LateOutcome",
    Field("job_id", STR),
    Field("attempt", INT),
    Field("status", words(s.value for s in OutcomeStatus)),
    Field("recorded_at", TIME),
)

FAILURE: Final[Shape[FailureView]] = Shape(
    "FailureView",
    Field("batch_id", STR),
    Field("job_id", STR),
    Field("attempt", INT),
    Field("failed_at", TIME),
    Field("http_status", _INT_OR_NULL),
    Field("error", _STR_OR_NULL),
    Field("tag", _TAG_OR_NULL),
    Field("reason", STR),
    Field("evidence", OBJECT),
    Field("attribution", array(nested(_ATTRIBUTED), tuple)),
    Field("unattributed", _AMOUNT_OR_NULL),
    Field("classifier_version", _STR_OR_NULL),
    Field("classified_at", _TIME_OR_NULL),
)


def _projection_fields(decision: Codec) -> tuple[Field, ...]:
    """The guard's fields after its ``batch_id``: the decision, then the projection (read
    back into a :class:`~preflight.domain.forecast.Forecast`) and its snapshot."""

    def of(name: str) -> Callable[[Any], Any]:
        return lambda view: getattr(view.forecast, name)

    return (
        Field("decision", decision),
        Field("reason", decision_reason(decision)),
        Field("balance", AMOUNT, get=of("balance")),
        Field("remaining_need", _AMOUNT_OR_NULL, get=of("remaining_need")),
        Field("outstanding_other", AMOUNT),
        Field("affordable_jobs", _INT_OR_NULL, get=of("affordable_jobs")),
        Field("own_burn_per_minute", nullable(RATE), get=of("own_burn_per_minute")),
        Field("foreign_burn_per_minute", nullable(RATE), get=of("foreign_burn_per_minute")),
        Field("minutes_to_empty", nullable(MINUTES), get=of("minutes_to_empty")),
        Field("minutes_to_finish", nullable(MINUTES), get=of("minutes_to_finish")),
        Field("runs_out_first", BOOL, get=of("runs_out_first")),
        Field("snapshot_id", INT),
        Field("snapshot_age_seconds", INT),
    )


def decision_reason(decision: Codec) -> Codec:
    """A guard's reason is there with its decision (show's forecast of a batch without a
    need has neither)."""
    return _STR_OR_NULL if "anyOf" in decision.schema else STR


_PROJECTION: Final = (
    "balance",
    "remaining_need",
    "affordable_jobs",
    "own_burn_per_minute",
    "foreign_burn_per_minute",
    "minutes_to_empty",
    "minutes_to_finish",
    "runs_out_first",
)


def _projected(model: Callable[..., T], values: dict[str, Any]) -> T:
    projection = Forecast(**{name: values.pop(name) for name in _PROJECTION})
    return model(**values, forecast=projection)


#: An open batch's forecast in ``show`` (no decision for a batch without a need).
FORECAST: Final[Shape[ForecastView]] = Shape(
    "ForecastView", *_projection_fields(nullable(enum(Decision))), build=_projected
)

#: ``guard``'s answer.
GUARD: Final[Shape[GuardResult]] = Shape(
    "GuardResult", Field("batch_id", STR), *_projection_fields(enum(Decision)), build=_projected
)

#: The HTTP guard's answer: the result and the CLI's exit code of its decision (the HTTP
#: edge adds it: it knows ``strict``). Remote mode reads it as a :data:`GUARD`.
GUARD_ANSWER: Final[Shape[GuardResult]] = Shape(
    "GuardAnswer",
    *GUARD.fields,
    Field(
        "exit_code",
        words_int(sorted({*GUARD_EXIT_CODES.values(), STRICT_AT_RISK_EXIT})),
        read=False,
    ),
)

REPORT: Final[Shape[BatchReport]] = Shape(
    "BatchReport",
    Field("batch", nested(BATCH), inline=BATCH),
    Field("snapshots", array(nested(SNAPSHOT))),
    Field("outcomes", nested(TOTALS)),
    Field("late_outcomes", array(nested(LATE))),
    Field("quota_failures", array(nested(FAILURE))),
    Field("overlapping_batches", array(STR), read=False),
    Field("forecast", nullable(nested(FORECAST))),
)

LISTING: Final[Shape[BatchListing]] = Shape(
    "BatchListing",
    Field("batch", nested(BATCH), inline=BATCH),
    Field("outcomes", nested(TOTALS)),
)

FINDING: Final[Shape[FindingView]] = Shape(
    "FindingView",
    Field("id", INT),
    Field("kind", words(FINDING_KINDS)),
    Field("account", STR),
    Field("amount", _AMOUNT_OR_NULL),
    Field("window_start", TIME),
    Field("window_end", TIME),
    Field("batches", array(STR, tuple)),
    Field("audit_run_id", INT),
    Field("detail", OBJECT),
    Field("created_at", TIME),
)

AUDIT: Final[Shape[AuditOutcome]] = Shape(
    "AuditOutcome",
    Field("account", STR),
    Field("period_start", TIME),
    Field("skipped", BOOL),
    Field("reason", _STR_OR_NULL),
    Field("audit_run_id", _INT_OR_NULL),
    Field("snapshot_id", _INT_OR_NULL),
    Field("status", _STR_OR_NULL),
    Field("takeover", BOOL),
    Field("steps", OBJECT),
    Field("findings", array(nested(FINDING), tuple)),
)


def _profile(model: type[ProfileReading], values: dict[str, Any]) -> ProfileReading:
    first = {name: values.pop(name) for name in _FIRST_METERS}
    meters = values.pop("meters", None) or first
    return model(**values, meters=meters)


PROFILE: Final[Shape[ProfileReading]] = Shape(
    "ProfileReading",
    Field("account", STR),
    Field("snapshot_id", INT),
    Field("taken_at", TIME),
    Field("user_id", _STR_OR_NULL),
    Field("tier", _STR_OR_NULL),
    Field("credits", _AMOUNT_OR_NULL),
    Field("api_quota_remaining", _AMOUNT_OR_NULL),
    # Every meter by name, for a vendor with others than the first vendor's two.
    Field("meters", mapping(_AMOUNT_OR_NULL), when=lambda p: _has_other_meters(p.meters)),
    Field("latency_ms", INT),
    Field("raw", STR),
    build=_profile,
)

#: Every read model's shape, by the name the OpenAPI document gives it.
SHAPES: Final[tuple[Shape[Any], ...]] = (
    NEED_BASIS,
    EVIDENCE,
    READING,
    CHECK,
    CHECK_ANSWER,
    FORECAST,
    GUARD,
    GUARD_ANSWER,
    RECORD,
    IMPORT,
    SUMMARY,
    FINISH,
    BATCH,
    TOTALS,
    SNAPSHOT,
    LATE,
    _ATTRIBUTED,
    FAILURE,
    REPORT,
    LISTING,
    FINDING,
    AUDIT,
    PROFILE,
)


def components() -> dict[str, dict[str, Any]]:
    """Every shape's JSON Schema, by name: the OpenAPI document's response components."""
    return {shape.name: json_schema(shape) for shape in SHAPES}
