"""The public Python surface: a curated ``__all__``, importable, and light to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import preflight

PUBLIC = {
    "AsyncPreflight",
    "AuditOutcome",
    "AuthError",
    "BatchListing",
    "BatchReport",
    "BatchRun",
    "BatchStatus",
    "BillingBlockedError",
    "CheckResult",
    "Classification",
    "ConfigError",
    "ConflictError",
    "FailureView",
    "FindingKind",
    "FindingView",
    "FinishResult",
    "ImportResult",
    "Meter",
    "NoGoError",
    "Preflight",
    "PreflightError",
    "ProfileReading",
    "RecordResult",
    "SchemaMissingError",
    "SnapshotKind",
    "StorageError",
    "Tag",
    "UnusableResponseError",
    "UsageError",
    "Verdict",
    "VendorError",
    "VendorRejectedError",
    "VendorUnavailableError",
}


def test_all_is_the_curated_surface_and_every_name_resolves() -> None:
    assert set(preflight.__all__) == PUBLIC
    for name in preflight.__all__:
        assert getattr(preflight, name).__name__ == name


def test_the_facade_is_the_one_of_preflight_api() -> None:
    from preflight.api import Preflight

    assert preflight.Preflight is Preflight
    assert issubclass(preflight.UsageError, preflight.PreflightError)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NotAThing"):
        _ = preflight.NotAThing  # type: ignore[attr-defined]


def test_importing_preflight_or_its_cli_loads_no_orm_and_no_http_client() -> None:
    program = (
        "import sys, preflight, preflight.cli\n"
        "heavy = [m for m in ('sqlalchemy', 'httpx', 'alembic') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == ""
