"""``PreflightHook``: the preflight verbs from an Airflow connection, sync and async.

A ``preflight`` connection whose host is a ``preflight serve`` base URL is remote mode (its
password is that server's API token, never the vendor's); a connection without a host is
local mode, configured by the worker's ``PREFLIGHT_*`` settings. ``extra`` may name the
``account`` used when a call names none.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

import preflight
from preflight.errors import ConfigError
from preflight.secret import Secret

if TYPE_CHECKING:
    from preflight.api import Preflight
    from preflight.domain.outcome import OutcomeInput
    from preflight.services.results import (
        BatchReport,
        CheckResult,
        FinishResult,
        ProfileReading,
        RecordResult,
    )

__all__ = ["PreflightHook"]

Amount = Decimal | str | int


@dataclass(frozen=True)
class Target:
    """Where a connection points: a server (remote mode) or this worker's settings."""

    url: str | None
    token: Secret | None
    account: str | None

    @property
    def remote(self) -> bool:
        return self.url is not None


def target_of(conn: Any) -> Target:
    """The :class:`Target` of an Airflow ``Connection`` (host, port, schema, password, extra)."""
    extra = conn.extra_dejson if conn.extra else {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"connection {conn.conn_id!r}: extra must be a JSON object")
    account = extra.get("account") or None
    if account is not None and not isinstance(account, str):
        raise ConfigError(f"connection {conn.conn_id!r}: extra.account must be a string")
    host = (conn.host or "").strip()
    if not host:
        return Target(None, None, account)
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    if not conn.password:
        raise ConfigError(
            f"connection {conn.conn_id!r}: remote mode ({host}) needs the server's API token"
            " as the connection's password"
        )
    return Target(host.rstrip("/"), Secret(conn.password), account)


class PreflightHook(BaseHook):
    """The preflight verbs for a ``preflight`` connection.

    Sync ``check``, ``record``, ``finish``, ``show`` and ``profile`` run on one
    :class:`~preflight.Preflight` facade per hook (close it with :meth:`close`). Their
    async twins (``acheck``, ...) never block the event loop: remote mode awaits
    ``preflight.AsyncPreflight`` (no thread), and local mode (SQLite or PostgreSQL through
    SQLAlchemy, which is sync) runs the sync facade in a worker thread.
    Results and errors are the facade's own.
    """

    conn_name_attr = "preflight_conn_id"
    default_conn_name = "preflight_default"
    conn_type = "preflight"
    hook_name = "preflight"

    def __init__(self, preflight_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.preflight_conn_id = preflight_conn_id
        self._target: Target | None = None
        self._app: Preflight | None = None
        self._lock = threading.Lock()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form reads in Airflow's UI."""
        return {
            "hidden_fields": ["login"],
            "relabeling": {
                "host": "preflight serve URL (empty: local mode from PREFLIGHT_* settings)",
                "password": "preflight API token (remote mode; never the vendor's token)",
            },
            "placeholders": {
                "host": "https://preflight.internal:8080",
                "extra": '{"account": "default"}',
            },
        }

    # ------------------------------------------------------------ connection

    def target(self) -> Target:
        """The connection's :class:`Target`, read once."""
        if self._target is None:
            self._target = target_of(self.get_connection(self.preflight_conn_id))
        return self._target

    async def atarget(self) -> Target:
        """:meth:`target` without blocking the event loop (``aget_connection``)."""
        if self._target is None:
            self._target = target_of(await self.aget_connection(self.preflight_conn_id))
        return self._target

    def get_conn(self) -> Preflight:
        """The hook's :class:`~preflight.Preflight` facade (built once, thread-safe)."""
        return self._facade(self.target())

    def _facade(self, target: Target) -> Preflight:
        with self._lock:
            if self._app is None:
                # The facade resolves on first use: a DAG parse loads none of it.
                self._app = (
                    preflight.Preflight.remote(target.url, target.token)
                    if target.url is not None and target.token is not None
                    else preflight.Preflight()
                )
            return self._app

    def close(self) -> None:
        """Release the facade's engine and HTTP pools."""
        with self._lock:
            app, self._app = self._app, None
        if app is not None:
            app.close()

    def account(self, account: str | None) -> str | None:
        """``account``, else the connection's ``extra.account``, else None (the default)."""
        return account or self.target().account

    # ------------------------------------------------------------ sync verbs

    def check(
        self,
        batch_id: str,
        *,
        need: Amount | None = None,
        account: str | None = None,
        reserve: Amount | None = None,
        labels: Mapping[str, str] | None = None,
        meter: str | None = None,
        fail_open: bool | None = None,
    ) -> CheckResult:
        """Snapshot the balance for ``batch_id`` and answer go / no-go (``Preflight.check``)."""
        return self.get_conn().check(
            batch_id,
            **_check_options(need, self.account(account), reserve, labels, meter, fail_open),
        )

    def record(
        self,
        batch_id: str,
        outcome: OutcomeInput | Mapping[str, object],
        *,
        snapshot: bool = True,
        account: str | None = None,
    ) -> RecordResult:
        """Record one job attempt's outcome (``Preflight.record``)."""
        return self.get_conn().record(
            batch_id, outcome, snapshot=snapshot, account=self.account(account)
        )

    def finish(self, batch_id: str, *, snapshot: bool = True) -> FinishResult:
        """Finish the batch: a ``finish`` snapshot and its spend summary."""
        return self.get_conn().finish(batch_id, snapshot=snapshot)

    def show(self, batch_id: str) -> BatchReport:
        """The batch's post-mortem: snapshots, outcome totals, tagged quota failures."""
        return self.get_conn().show(batch_id)

    def profile(self, account: str | None = None) -> ProfileReading:
        """Read the account's balance now (kept as a ``manual`` snapshot)."""
        return self.get_conn().profile(self.account(account))

    # ------------------------------------------------------------ async twins

    async def _averb(self, verb: str, *args: Any, **kw: Any) -> Any:
        target = await self.atarget()
        if target.url is None or target.token is None:
            facade = await asyncio.to_thread(self._facade, target)
            return await asyncio.to_thread(getattr(facade, verb), *args, **kw)
        async with preflight.AsyncPreflight.remote(target.url, target.token) as pf:
            return await getattr(pf, verb)(*args, **kw)

    async def acheck(
        self,
        batch_id: str,
        *,
        need: Amount | None = None,
        account: str | None = None,
        reserve: Amount | None = None,
        labels: Mapping[str, str] | None = None,
        meter: str | None = None,
        fail_open: bool | None = None,
    ) -> CheckResult:
        """:meth:`check`, awaitable."""
        target = await self.atarget()
        options = _check_options(need, account or target.account, reserve, labels, meter, fail_open)
        result: CheckResult = await self._averb("check", batch_id, **options)
        return result

    async def arecord(
        self,
        batch_id: str,
        outcome: OutcomeInput | Mapping[str, object],
        *,
        snapshot: bool = True,
        account: str | None = None,
    ) -> RecordResult:
        """:meth:`record`, awaitable."""
        target = await self.atarget()
        result: RecordResult = await self._averb(
            "record", batch_id, outcome, snapshot=snapshot, account=account or target.account
        )
        return result

    async def afinish(self, batch_id: str, *, snapshot: bool = True) -> FinishResult:
        """:meth:`finish`, awaitable."""
        result: FinishResult = await self._averb("finish", batch_id, snapshot=snapshot)
        return result

    async def ashow(self, batch_id: str) -> BatchReport:
        """:meth:`show`, awaitable."""
        result: BatchReport = await self._averb("show", batch_id)
        return result

    async def aprofile(self, account: str | None = None) -> ProfileReading:
        """:meth:`profile`, awaitable."""
        target = await self.atarget()
        result: ProfileReading = await self._averb("profile", account or target.account)
        return result

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread (an engine's dispose may wait on the database)."""
        if self._app is not None:
            await asyncio.to_thread(self.close)


def _check_options(
    need: Amount | None,
    account: str | None,
    reserve: Amount | None,
    labels: Mapping[str, str] | None,
    meter: str | None,
    fail_open: bool | None,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "need": need,
        "account": account,
        "reserve": reserve,
        "labels": dict(labels) if labels else None,
        "meter": meter,
        "fail_open": fail_open,
    }
    return {name: value for name, value in options.items() if value is not None}
