"""What every service runs on: settings, the database, per-account vendor clients, a clock.

Built once per process (or per facade object) and handed to every verb; ``close()``
releases the engine and the HTTP connection pools.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self

from preflight.errors import ConfigError
from preflight.logs import apply_level
from preflight.vendor import RetryPolicy, VendorClient, build_http_client

if TYPE_CHECKING:
    import httpx

    from preflight.adapters import Adapter
    from preflight.db.embedded import EmbeddedPostgreSQL, EmbeddedSQLite
    from preflight.db.session import Database
    from preflight.settings import Settings

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Runtime:
    """Resources shared by the verbs. The engine is built on first use, and only once."""

    def __init__(
        self,
        settings: Settings,
        *,
        database: Database | None = None,
        http_factory: Callable[[str], httpx.Client] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # A library writes at the configured level and configures no output of its own.
        apply_level(settings.log_level)
        self._database = database
        self._embedded: EmbeddedSQLite | EmbeddedPostgreSQL | None = None
        self._embedded_tried = database is not None
        self._first_use = threading.Lock()
        self._http_factory = http_factory
        self._vendors: dict[str, VendorClient] = {}
        self._http_clients: list[httpx.Client] = []

    @property
    def database(self) -> Database:
        """The database, its schema checked (the embedded SQLite upgrades itself)."""
        if self._database is None:
            with self._first_use:  # threads sharing this runtime build one, not one each
                if self._database is None:
                    self._database = self._build_database()
        return self._database

    def _build_database(self) -> Database:
        # cold path: `Preflight.remote(...)` loads nothing of db/, nor SQLAlchemy
        from preflight.db.migrate import ensure_schema
        from preflight.db.session import Database  # cold path: `preflight check` cold

        database = Database.from_url(
            self.settings.database_url,
            outage_window=self.settings.database_outage_window.total_seconds(),
        )
        database.wait_until_reachable()
        ensure_schema(database.engine)
        return database

    @property
    def plain_database(self) -> Database | EmbeddedSQLite | EmbeddedPostgreSQL:
        """Where work of the write port only (:mod:`preflight.db.store`, a check) runs: on
        a database at the schema's head, until :attr:`database` is built, a driver
        connection of its own (sqlite3 or psycopg: :mod:`preflight.db.embedded`), which
        needs no SQLAlchemy (a cold check then imports none); else :attr:`database`. Both
        hand the work the same store of the dialect."""
        if self._embedded is not None:
            return self._embedded
        if self._database is None and not self._embedded_tried:
            with self._first_use:  # threads sharing this runtime open one, not one each
                if not self._embedded_tried:
                    # cold path: `Preflight.remote(...)` loads nothing of db/
                    from preflight.db.embedded import open_embedded

                    self._embedded = open_embedded(
                        self.settings.database_url,
                        connect_timeout=self.settings.connect_timeout,
                        fallback=lambda: self.database,
                    )
                    self._embedded_tried = True
            if self._embedded is not None:
                return self._embedded
        return self.database

    def account_name(self, account: str | None) -> str:
        """The configured account ``account`` (default: the settings' default account)."""
        return self.settings.account_settings(account).name

    def vendor(self, account: str | None = None) -> VendorClient:
        """The vendor client of ``account``; ConfigError when it has no token."""
        account_settings = self.settings.account_settings(account)
        name = account_settings.name
        if name not in self._vendors:
            if account_settings.token is None:
                hint = (
                    "set PREFLIGHT_API_TOKEN or PREFLIGHT_API_TOKEN_FILE"
                    if name == "default"
                    else f"set token_file or token_env in [accounts.{name}]"
                )
                raise ConfigError(f"no vendor token for account {name!r}: {hint}")
            base_url = self.settings.vendor_url_for(account_settings)
            http = (
                self._http_factory(base_url)
                if self._http_factory
                else build_http_client(self.settings, base_url)
            )
            self._http_clients.append(http)
            self._vendors[name] = VendorClient(
                http,
                account_settings.token,
                policy=RetryPolicy.from_settings(self.settings),
                max_body_bytes=self.settings.max_body_bytes,
                adapter=account_settings.adapter,
            )
        return self._vendors[name]

    def adapter(self, account: str | None = None) -> Adapter:
        """How ``account``'s vendor is read and its quota failures recognised."""
        return self.settings.account_settings(account).adapter

    @property
    def quota_signals(self) -> bool:
        """Whether any account's vendor signals quota failures beyond HTTP 402."""
        return any(
            a.adapter.recognises_more_quota_failures for a in self.settings.accounts.values()
        )

    def close(self) -> None:
        for client in self._http_clients:
            client.close()
        self._http_clients.clear()
        self._vendors.clear()
        if self._database is not None:
            self._database.dispose()
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
