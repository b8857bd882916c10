"""Remote mode: the facade's verbs over a preflight server's HTTP API (``preflight serve``).

With ``PREFLIGHT_SERVER_URL`` and ``PREFLIGHT_SERVER_TOKEN`` (or ``Preflight.remote(...)``),
:class:`preflight.api.Preflight` hands its verbs to a :class:`RemoteClient` instead of the
local services. Each method has the name and the parameters of the service verb it stands
for (without the runtime) and returns the same result dataclass, rebuilt from the server's
JSON, so that the CLI prints the same output and exits with the same codes.

Errors: a problem+json answer becomes the :class:`PreflightError` subclass of its ``type``
(the HTTP edge's own table, read backwards). A server that cannot be reached is a
:class:`StorageError` (exit 3), except for ``check``: there it is the verdict
``unavailable`` (exit 13, or 0 with fail-open), like a vendor that cannot be reached.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import httpx

from preflight.domain.classify import (
    Attributed,
    Classification,
    Evidence,
    ForeignConsumption,
    Reading,
)
from preflight.domain.forecast import Decision, Forecast, NeedBasis
from preflight.domain.outcome import OutcomeInput, build_outcome
from preflight.domain.verdict import Verdict
from preflight.domain.vocabulary import BatchStatus, Tag
from preflight.errors import (
    AuthError,
    BillingBlockedError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PreflightError,
    SchemaMissingError,
    StorageError,
    UsageError,
    VendorError,
    VendorRejectedError,
    VendorUnavailableError,
)
from preflight.secret import Secret, scrub
from preflight.services.outcomes import ImportProgress
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
from preflight.settings import Settings

__all__ = ["RemoteClient", "connect"]

#: problem ``type`` → the error it stands for: the HTTP edge's table
#: (:mod:`preflight.http.problems`) read backwards; tests/unit/test_http_problems.py holds
#: the two together. (The facade may not import the HTTP edge, which sits above it.)
ERROR_OF_TYPE: Final[dict[str, type[PreflightError]]] = {
    "/problems/not-found": NotFoundError,
    "/problems/conflict": ConflictError,
    "/problems/server-config": ConfigError,
    "/problems/bad-request": UsageError,
    "/problems/no-go": UsageError,
    "/problems/vendor-auth": AuthError,
    "/problems/vendor-billing-blocked": BillingBlockedError,
    "/problems/vendor-rejected": VendorRejectedError,
    "/problems/vendor-unavailable": VendorUnavailableError,
    "/problems/vendor-error": VendorError,
    "/problems/schema-missing": SchemaMissingError,
    "/problems/storage-unavailable": StorageError,
    "/problems/validation": UsageError,
    "/problems/too-large": UsageError,
    "/problems/unsupported-media-type": UsageError,
}
#: One JSON Lines upload chunk: lines are batched so the body is not thousands of tiny chunks.
_CHUNK_BYTES: Final = 64 * 1024
#: An audit runs every account, each with a vendor call and its retries.
_AUDIT_TIMEOUT_FACTOR: Final = 5


def connect(
    settings: Settings, server_url: str | None = None, server_token: str | Secret | None = None
) -> RemoteClient | None:
    """The remote client the settings (or the arguments) ask for; None: run locally."""
    url = server_url or settings.server_url
    if url is None:
        return None
    token = server_token if server_token is not None else settings.server_token
    if token is None:
        raise ConfigError(
            "PREFLIGHT_SERVER_URL is set but no token: set PREFLIGHT_SERVER_TOKEN or "
            "PREFLIGHT_SERVER_TOKEN_FILE"
        )
    secret = token if isinstance(token, Secret) else Secret(token)
    return RemoteClient(url, secret, settings)


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, default=_json_default, ensure_ascii=False).encode("utf-8")


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else _json_default(value)


def _amount(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _outcome_fields(outcome: OutcomeInput | Mapping[str, object]) -> dict[str, object]:
    if not isinstance(outcome, OutcomeInput):
        return dict(outcome)
    expected = outcome.expected_cost
    return {
        "job_id": outcome.job_id,
        "status": outcome.status.value,
        "attempt": outcome.attempt,
        "cost": outcome.cost,
        "expected_cost": expected,
        "http_status": outcome.http_status,
        "error": outcome.error,
        "quota_failure": outcome.marked_quota,
        "at": outcome.at,
    }


class RemoteClient:
    """The verbs over HTTP, on one pooled httpx client with explicit timeouts."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._settings = settings
        # The server may itself wait for the vendor up to its deadline before answering.
        read = settings.deadline + settings.read_timeout
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=read,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            headers={
                "Authorization": f"Bearer {token.reveal()}",
                "Accept": "application/json",
            },
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"RemoteClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content: Iterable[bytes] | None = None,
        content_type: str = "application/json",
        params: Mapping[str, object | None] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        headers = {"Content-Type": content_type} if body is not None or content is not None else {}
        data = _dumps(body) if body is not None else content
        try:
            response = self._http.request(
                method,
                path,
                content=data,
                params=query,
                headers=headers,
                timeout=timeout or self._timeout,
            )
        except httpx.HTTPError as exc:
            raise StorageError(
                f"preflight server {self.base_url} unreachable: "
                f"{scrub(str(exc)) or type(exc).__name__}"
            ) from exc
        if response.status_code >= 400:
            raise self._error(response)
        try:
            return response.json()
        except ValueError:
            raise StorageError(
                f"preflight server {self.base_url} answered HTTP {response.status_code} "
                "with a body that is not JSON"
            ) from None

    def _error(self, response: httpx.Response) -> PreflightError:
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        detail = data.get("detail") if isinstance(data, dict) else None
        kind = data.get("type") if isinstance(data, dict) else None
        message = scrub(str(detail)) if detail else f"HTTP {status}"
        if status == 401:
            return ConfigError(
                f"preflight server refused the token ({message}): check PREFLIGHT_SERVER_TOKEN"
            )
        if status == 403:
            return ConfigError(f"preflight server: {message}")
        cls = ERROR_OF_TYPE.get(kind) if isinstance(kind, str) else None
        if cls is not None:
            return cls(message)
        if status >= 500:
            if status == 500:
                return PreflightError(f"preflight server internal error: {message}")
            return StorageError(f"preflight server {self.base_url} unavailable: {message}")
        return UsageError(f"preflight server: {message}")

    @staticmethod
    def _batch_path(batch_id: str, verb: str = "") -> str:
        return f"/v1/batches/{quote(batch_id, safe='')}{verb}"

    # ------------------------------------------------------------ verbs

    def check(
        self,
        batch_id: str,
        *,
        need: Decimal | str | int | None = None,
        meter: str | None = None,
        reserve: Decimal | str | int | None = None,
        fail_open: bool | None = None,
        account: str | None = None,
        labels: Mapping[str, str] | None = None,
        jobs: int | None = None,
        estimate_from: str | None = None,
        estimate: str | None = None,
        min_history: int | None = None,
    ) -> CheckResult:
        body = {
            "need": None if need is None else str(need),
            "meter": meter,
            "reserve": None if reserve is None else str(reserve),
            "fail_open": fail_open,
            "account": account,
            "labels": dict(labels) if labels else None,
            "jobs": jobs,
            "estimate_from": estimate_from,
            "estimate": estimate,
            "min_history": min_history,
        }
        try:
            data = self._request(
                "POST",
                self._batch_path(batch_id, "/check"),
                body={k: v for k, v in body.items() if v is not None},
            )
        except StorageError as exc:
            # The server is the check's source of truth here: unreachable means unavailable.
            opened = self._settings.fail_open if fail_open is None else fail_open
            return CheckResult(
                batch_id=batch_id,
                account=account or self._settings.account,
                verdict=Verdict.UNAVAILABLE,
                reason=str(exc),
                meter=None,
                balance=None,
                need=_amount(None if need is None else str(need)),
                reserve=Decimal(str(reserve)) if reserve is not None else self._settings.reserve,
                outstanding_other=None,
                snapshot_id=None,
                snapshot_kind=None,
                checked_at=datetime.now().astimezone(),
                status=(BatchStatus.OPEN if opened else BatchStatus.BLOCKED).value,
                verified=False,
                fail_open=opened,
                labels=dict(labels or {}),
            )
        return check_result(data)

    def record(
        self,
        batch_id: str,
        outcome: OutcomeInput | Mapping[str, object],
        *,
        snapshot: bool = True,
        account: str | None = None,
    ) -> RecordResult:
        item = outcome if isinstance(outcome, OutcomeInput) else build_outcome(outcome)
        fields = {k: v for k, v in _outcome_fields(outcome).items() if v is not None}
        data = self._request(
            "POST",
            self._batch_path(batch_id, "/outcomes"),
            body=fields,
            params={"snapshot": snapshot, "account": account},
        )
        tag = (
            Classification(Tag(data["tag"]), data["reason"] or "", Evidence())
            if data["tag"]
            else None
        )
        return RecordResult(
            batch_id=data["batch_id"],
            outcome=item,
            created=data["created"],
            tag=tag,
            snapshot_id=data["snapshot_id"],
            snapshot_error=data["snapshot_error"],
            warnings=tuple(data["warnings"]),
        )

    def record_many(
        self,
        batch_id: str,
        lines: Iterable[str | bytes],
        *,
        account: str | None = None,
        chunk_size: int | None = None,
        progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportResult:
        """Stream ``lines`` as application/x-ndjson: never held whole in memory.

        ``progress`` hears the lines sent so far, after each chunk (what the server has
        recorded of them is in the result; ``chunk_size`` is the server's own).
        """
        sent = 0

        def body() -> Iterator[bytes]:
            pending = bytearray()
            for line in lines:
                raw = line.encode("utf-8") if isinstance(line, str) else line
                pending += raw
                if not raw.endswith(b"\n"):
                    pending += b"\n"
                nonlocal sent
                sent += 1
                if len(pending) >= _CHUNK_BYTES:
                    yield bytes(pending)
                    pending.clear()
                    if progress is not None:
                        progress(ImportProgress(sent, 0, 0))
            if pending:
                yield bytes(pending)

        data = self._request(
            "POST",
            self._batch_path(batch_id, "/outcomes"),
            content=body(),
            content_type="application/x-ndjson",
            params={"account": account},
        )
        return ImportResult(
            batch_id=data["batch_id"],
            lines=data["lines"],
            inserted=data["inserted"],
            duplicates=data["duplicates"],
            tags=dict(data["tags"]),
            warnings=tuple(data["warnings"]),
        )

    def guard(
        self,
        batch_id: str,
        *,
        next_cost: Decimal | str | int | None = None,
        max_age: timedelta | None = None,
    ) -> GuardResult:
        body: dict[str, object] = {}
        if next_cost is not None:
            body["next_cost"] = str(next_cost)
        if max_age is not None:
            body["max_age"] = f"{max_age.total_seconds():.6f}s"
        return guard_result(self._request("POST", self._batch_path(batch_id, "/guard"), body=body))

    def finish(self, batch_id: str, *, snapshot: bool = True) -> FinishResult:
        data = self._request(
            "POST", self._batch_path(batch_id, "/finish"), params={"snapshot": snapshot}
        )
        return finish_result(data)

    def classify(
        self, batch_id: str | None = None, *, only_inconclusive: bool = False
    ) -> dict[str, int]:
        body: dict[str, object] = {"only_inconclusive": only_inconclusive}
        if batch_id is not None:
            body["batch_id"] = batch_id
        data = self._request("POST", "/v1/classify", body=body)
        return dict(data["tags"])

    def show(self, batch_id: str) -> BatchReport:
        data = self._request("GET", self._batch_path(batch_id))
        return BatchReport(
            batch=batch_view(data),
            snapshots=[snapshot_view(s) for s in data["snapshots"]],
            outcomes=totals(data["outcomes"]),
            late_outcomes=[
                LateOutcome(o["job_id"], o["attempt"], o["status"], _when(o["recorded_at"]))
                for o in data["late_outcomes"]
            ],
            quota_failures=[failure_view(f) for f in data["quota_failures"]],
            forecast=forecast_view(data.get("forecast")),
        )

    def failures(
        self, *, since: datetime | None = None, tag: str | None = None, account: str | None = None
    ) -> list[FailureView]:
        params = {"since": since, "tag": tag, "account": account}
        return [failure_view(f) for f in self._request("GET", "/v1/failures", params=params)]

    def batches(
        self,
        *,
        since: datetime | None = None,
        status: str | None = None,
        account: str | None = None,
    ) -> list[BatchListing]:
        params = {"since": since, "status": status, "account": account}
        return [
            BatchListing(batch_view(b), totals(b["outcomes"]))
            for b in self._request("GET", "/v1/batches", params=params)
        ]

    def findings(
        self, *, since: datetime | None = None, kind: str | None = None, account: str | None = None
    ) -> list[FindingView]:
        params = {"since": since, "kind": kind, "account": account}
        return [finding_view(f) for f in self._request("GET", "/v1/findings", params=params)]

    def run_audit(
        self,
        *,
        account: str | None = None,
        force: bool = False,
        replica: str | None = None,
        stop: threading.Event | None = None,
        log_findings: bool = True,
    ) -> list[AuditOutcome]:
        """One audit run on the server (``replica``, ``stop`` and logging are the server's)."""
        body: dict[str, object] = {"force": force}
        if account is not None:
            body["account"] = account
        timeout = httpx.Timeout(
            self._timeout.read * _AUDIT_TIMEOUT_FACTOR if self._timeout.read else None,
            connect=self._timeout.connect,
        )
        data = self._request("POST", "/v1/audit", body=body, timeout=timeout)
        return [audit_outcome(item) for item in data]

    def read_profile(self, account: str | None = None) -> ProfileReading:
        from preflight.vendor import Profile

        name = account or self._settings.account
        data = self._request("GET", f"/v1/accounts/{quote(name, safe='')}/profile")
        profile = Profile(
            raw=data["raw"],
            user_id=data["user_id"],
            tier=data["tier"],
            credits=_amount(data["credits"]),
            api_quota_remaining=_amount(data["api_quota_remaining"]),
            http_status=200,
            latency_ms=data["latency_ms"],
            attempts=1,
            **_meters_of_profile(data),
        )
        return ProfileReading(
            data["account"], data["snapshot_id"], _when(data["taken_at"]), profile
        )

    def update_profile(self, webhook_url: str, **_options: object) -> Any:
        raise UsageError(
            "a profile update is not served by the preflight server: "
            "unset PREFLIGHT_SERVER_URL to run it with the vendor token locally"
        )


# ---------------------------------------------------------------- JSON → results


def check_result(data: Mapping[str, Any]) -> CheckResult:
    return CheckResult(
        batch_id=data["batch_id"],
        account=data["account"],
        verdict=Verdict(data["verdict"]),
        reason=data["reason"],
        meter=data["meter"],
        balance=_amount(data["balance"]),
        need=_amount(data["need"]),
        reserve=Decimal(data["reserve"]),
        outstanding_other=_amount(data["outstanding_other"]),
        snapshot_id=data["snapshot_id"],
        snapshot_kind=data["snapshot_kind"],
        checked_at=_when(data["checked_at"]),
        status=data["status"],
        verified=data["verified"],
        fail_open=data["fail_open"],
        labels=dict(data["labels"]),
        need_basis=need_basis(data.get("need_basis")),
    )


def need_basis(data: Mapping[str, Any] | None) -> NeedBasis | None:
    if data is None:
        return None
    return NeedBasis(
        jobs=data["jobs"],
        statistic=data["statistic"],
        per_job=Decimal(data["per_job"]),
        sample_jobs=data["sample_jobs"],
        sample_batches=data["sample_batches"],
        label=data["label"],
    )


def forecast_of(data: Mapping[str, Any]) -> Forecast:
    """The projection as the server wrote it: its rounded minutes and rates read back print
    the same strings."""
    return Forecast(
        balance=Decimal(data["balance"]),
        remaining_need=_amount(data["remaining_need"]),
        affordable_jobs=data["affordable_jobs"],
        own_burn_per_minute=_amount(data["own_burn_per_minute"]),
        foreign_burn_per_minute=_amount(data["foreign_burn_per_minute"]),
        minutes_to_empty=_amount(data["minutes_to_empty"]),
        minutes_to_finish=_amount(data["minutes_to_finish"]),
        runs_out_first=data["runs_out_first"],
    )


def forecast_view(data: Mapping[str, Any] | None) -> ForecastView | None:
    if data is None:
        return None
    return ForecastView(
        decision=None if data["decision"] is None else Decision(data["decision"]),
        reason=data["reason"],
        forecast=forecast_of(data),
        outstanding_other=Decimal(data["outstanding_other"]),
        snapshot_id=data["snapshot_id"],
        snapshot_age_seconds=data["snapshot_age_seconds"],
    )


def guard_result(data: Mapping[str, Any]) -> GuardResult:
    return GuardResult(
        batch_id=data["batch_id"],
        decision=Decision(data["decision"]),
        reason=data["reason"],
        forecast=forecast_of(data),
        outstanding_other=Decimal(data["outstanding_other"]),
        snapshot_id=data["snapshot_id"],
        snapshot_age_seconds=data["snapshot_age_seconds"],
    )


def finish_result(data: Mapping[str, Any]) -> FinishResult:
    finished_at = _when(data["finished_at"])

    def reading(key: str) -> Reading | None:
        balance = _amount(data[key])
        return None if balance is None else Reading(0, finished_at, balance)

    start, end = reading("preflight_balance"), reading("finish_balance")
    foreign = None
    if data["foreign_consumption"] is not None and end is not None:
        foreign = ForeignConsumption(
            amount=Decimal(data["foreign_consumption"]),
            end=end,
            topups=((0, 0),) if data["foreign_is_lower_bound"] else (),
            snapshot_ids=tuple(data["snapshot_ids"]),
        )
    summary = SpendSummary(data["meter"], Decimal(data["own_cost"]), start, end, foreign)
    return FinishResult(
        data["batch_id"],
        finished_at,
        summary,
        data["snapshot_error"],
        already_finished=data["already_finished"],
    )


def batch_view(data: Mapping[str, Any]) -> BatchView:
    return BatchView(
        batch_id=data["batch_id"],
        account=data["account"],
        status=data["status"],
        verdict=data["verdict"],
        verified=data["verified"],
        meter=data["meter"],
        need=_amount(data["need"]),
        reserve=Decimal(data["reserve"]),
        labels=dict(data["labels"]),
        created_at=_when(data["created_at"]),
        checked_at=_time(data["checked_at"]),
        finished_at=_time(data["finished_at"]),
    )


def totals(data: Mapping[str, Any]) -> OutcomeTotals:
    return OutcomeTotals(
        total=data["total"],
        succeeded=data["succeeded"],
        failed=data["failed"],
        quota_failures=data["quota_failures"],
        late=data["late"],
        cost=Decimal(data["cost"]),
    )


def _extra_meters(data: Mapping[str, Any]) -> dict[str, Decimal] | None:
    """The meters other than the first vendor's two, from a ``meters`` object (if any)."""
    meters = data.get("meters") or {}
    extra = {
        name: Decimal(value)
        for name, value in meters.items()
        if name not in ("credits", "api_quota_remaining") and value is not None
    }
    return extra or None


def _meters_of_profile(data: Mapping[str, Any]) -> dict[str, Any]:
    """The Profile fields that name another vendor's meters (none for the first vendor)."""
    meters = data.get("meters")
    if not meters:
        return {}
    return {
        "extra_meters": _extra_meters(data) or {},
        "meter_names": tuple(meters),
    }


def snapshot_view(data: Mapping[str, Any]) -> SnapshotView:
    return SnapshotView(
        id=data["id"],
        kind=data["kind"],
        taken_at=_when(data["taken_at"]),
        credits=_amount(data["credits"]),
        api_quota_remaining=_amount(data["api_quota_remaining"]),
        balance=_amount(data["balance"]),
        extra_meters=_extra_meters(data),
    )


def failure_view(data: Mapping[str, Any]) -> FailureView:
    return FailureView(
        batch_id=data["batch_id"],
        job_id=data["job_id"],
        attempt=data["attempt"],
        failed_at=_when(data["failed_at"]),
        http_status=data["http_status"],
        error=data["error"],
        tag=data["tag"],
        reason=data["reason"],
        evidence=dict(data["evidence"]),
        attribution=tuple(
            Attributed(item["batch_id"], Decimal(item["cost"])) for item in data["attribution"]
        ),
        unattributed=_amount(data["unattributed"]),
        classifier_version=data["classifier_version"],
        classified_at=_time(data["classified_at"]),
    )


def finding_view(data: Mapping[str, Any]) -> FindingView:
    return FindingView(
        id=data["id"],
        kind=data["kind"],
        account=data["account"],
        amount=_amount(data["amount"]),
        window_start=_when(data["window_start"]),
        window_end=_when(data["window_end"]),
        batches=tuple(data["batches"]),
        audit_run_id=data["audit_run_id"],
        detail=dict(data["detail"]),
        created_at=_when(data["created_at"]),
    )


def audit_outcome(data: Mapping[str, Any]) -> AuditOutcome:
    return AuditOutcome(
        account=data["account"],
        period_start=_when(data["period_start"]),
        skipped=data["skipped"],
        reason=data["reason"],
        audit_run_id=data["audit_run_id"],
        snapshot_id=data["snapshot_id"],
        status=data["status"],
        takeover=data["takeover"],
        steps=dict(data["steps"]),
        findings=tuple(finding_view(f) for f in data["findings"]),
    )
