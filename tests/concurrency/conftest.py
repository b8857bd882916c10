"""The concurrency suite: K writers of one account at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import Settings, load_settings
from tests.concurrency.support import BARRIER_TIMEOUT, VendorGate
from tests.support import upgrade_schema

_accounts = itertools.count(1)


@pytest.fixture
def gate(sandbox: SandboxServer) -> Iterator[VendorGate]:
    """The sandbox vendor behind a :class:`VendorGate`."""
    with VendorGate(sandbox.url) as running:
        yield running


@pytest.fixture
def url(database_url: str) -> str:
    """The test's database (SQLite, then PostgreSQL), at the schema's head before any
    writer starts: the writers race on their rows, not on a first-use upgrade."""
    upgrade_schema(database_url)
    return database_url


def vendor_env(gate: VendorGate) -> dict[str, str]:
    """The variables that point preflight at the gated vendor. The deadline outlasts the
    barrier: a profile read waits there until every party has arrived."""
    return {
        "PREFLIGHT_VENDOR_URL": gate.url,
        "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        "PREFLIGHT_BACKOFF_BASE": "0.01",
        "PREFLIGHT_DEADLINE": str(int(BARRIER_TIMEOUT) + 60),
        "PREFLIGHT_READ_TIMEOUT": str(int(BARRIER_TIMEOUT) + 30),
    }


def new_account() -> str:
    """A name no test has used yet in this process: an account created on first use."""
    return f"acct-{next(_accounts)}"


def settings_with(url: str, gate: VendorGate, *accounts: str) -> Settings:
    """Settings on ``url`` and the gated vendor, with ``accounts`` configured beside the
    default one (the same token and vendor)."""
    settings = load_settings({"PREFLIGHT_DATABASE_URL": url, **vendor_env(gate)})
    default = settings.accounts["default"]
    extra = {name: dataclasses.replace(default, name=name) for name in accounts}
    return dataclasses.replace(settings, accounts={**settings.accounts, **extra})
