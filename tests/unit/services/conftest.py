"""A :class:`Runtime` on an in-memory SQLite database and a fake vendor (``httpx.MockTransport``):
no process, no socket, no database file.

The schema is the real one: Alembic migrates an in-memory template once per test session,
and every test gets a copy of it (``sqlite3.Connection.backup``, well under a millisecond).
Two accounts are configured: ``default`` on ``vendor`` and ``team-b`` on ``vendor_b``.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from preflight.db import migrate
from preflight.db.session import Database, build_engine
from preflight.secret import Secret
from preflight.services.runtime import Runtime
from preflight.settings import AccountSettings, Settings, load_settings
from tests.support import Clock
from tests.unit.services.fakes import TEAM_B_TOKEN, TOKEN, FakeVendor

VENDOR_HOST = "vendor.test"
TEAM_B_HOST = "team-b.vendor.test"

ENVIRONMENT = {
    "PREFLIGHT_DATABASE_URL": "sqlite://",
    "PREFLIGHT_API_TOKEN": TOKEN,
    "PREFLIGHT_VENDOR_URL": f"http://{VENDOR_HOST}",
    # Retries run at once: no backoff, and a vendor Retry-After is capped at nothing.
    "PREFLIGHT_BACKOFF_BASE": "0",
    "PREFLIGHT_BACKOFF_MAX": "0",
    "PREFLIGHT_RETRY_AFTER_MAX": "0",
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake vendor is in process: any socket connection is a bug of the test set-up."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("tests/unit/services must not open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="session")
def schema_template() -> Iterator[sqlite3.Connection]:
    """An in-memory database migrated to head by Alembic, once per test session."""
    engine = build_engine("sqlite://")
    migrate.upgrade(engine)
    raw = engine.raw_connection()  # the one connection of the in-memory database
    connection = raw.driver_connection
    assert isinstance(connection, sqlite3.Connection)
    yield connection
    raw.close()
    engine.dispose()


@pytest.fixture
def database(schema_template: sqlite3.Connection) -> Iterator[Database]:
    """A fresh in-memory database at the schema head, shared by every session of the test."""
    database = Database(build_engine("sqlite://"))
    raw = database.engine.raw_connection()
    try:
        target = raw.driver_connection
        assert isinstance(target, sqlite3.Connection)
        schema_template.backup(target)
    finally:
        raw.close()
    yield database
    database.dispose()


@pytest.fixture
def vendor() -> FakeVendor:
    """The default account's vendor: credits 1000, no api_quota_remaining."""
    return FakeVendor()


@pytest.fixture
def vendor_b() -> FakeVendor:
    """Account ``team-b``'s vendor: credits 500."""
    return FakeVendor(TEAM_B_TOKEN, credits="500", user_id="user-b")


@pytest.fixture
def settings_env() -> dict[str, str]:
    """The PREFLIGHT_* environment of ``settings``; a module overrides it to change one."""
    return dict(ENVIRONMENT)


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    base = load_settings(settings_env)
    team_b = AccountSettings("team-b", Secret(TEAM_B_TOKEN), vendor_url=f"http://{TEAM_B_HOST}")
    return load_settings(settings_env, accounts={**base.accounts, "team-b": team_b})


@pytest.fixture
def rt(
    settings: Settings,
    database: Database,
    vendor: FakeVendor,
    vendor_b: FakeVendor,
    clock: Clock,
) -> Iterator[Runtime]:
    """The runtime every verb runs on; its clock is the root conftest's ``clock``."""
    transports = {VENDOR_HOST: vendor.transport, TEAM_B_HOST: vendor_b.transport}

    def http_factory(base_url: str) -> httpx.Client:
        transport = transports[httpx.URL(base_url).host]
        return httpx.Client(transport=transport, base_url=base_url, timeout=httpx.Timeout(5))

    with Runtime(settings, database=database, http_factory=http_factory, clock=clock) as runtime:
        yield runtime
