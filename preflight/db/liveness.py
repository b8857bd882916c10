"""Pooled PostgreSQL connections: a dead one is dropped at checkout, without a round trip.

``pool_pre_ping`` sends ``SELECT 1`` at every checkout: a round trip before each
transaction, two per ``check``. Instead, a connection taken from the pool is looked at
locally: one psycopg already knows is closed or broken, or whose socket is readable while
idle — PostgreSQL sends nothing unprompted to an idle session except when it ends it
(shutdown, restart, ``pg_terminate_backend``), so readable means a farewell or end of
file — is dropped, and the pool connects afresh (SQLAlchemy retries the checkout on
``DisconnectionError``). A connection that dies silently (a firewall forgetting an idle
flow) is replaced by ``pool_recycle`` before it gets old, and otherwise fails its first
statement like any connection lost mid-use.
"""

from __future__ import annotations

import select
from typing import Any, Final

from sqlalchemy import Engine, event, exc

#: Seconds a pooled connection is reused before it is replaced.
POOL_RECYCLE_SECONDS: Final = 1800


def _gone(dbapi_connection: Any) -> bool:
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        return True
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def drop_dead_connections(engine: Engine) -> Engine:
    """Check every connection ``engine``'s pool hands out (PostgreSQL)."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if _gone(dbapi_connection):
            raise exc.DisconnectionError("the pooled connection was closed by the server")

    return engine
