"""Changing a VARCHAR column's length in a migration, the one way for each dialect.

Migrations 0007 (batch ids) and 0008 (job ids) widen an id column from 200 to 500
characters and narrow it back on downgrade. Each dialect's way is its connector's
(:meth:`preflight.db.connectors.Connector.set_varchar_length`): PostgreSQL alters the column
in place (widening a VARCHAR rewrites nothing); SQLite never enforces a VARCHAR length, so
only the declared type in the schema changes and the table is not copied (Alembic's
batch-mode copy would also drop and recreate a table that others reference, and rewrite
every row of it)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from preflight.db.connectors import connector_of
from preflight.errors import StorageError


def refuse_longer(table: str, column: str, limit: int, *, below: str, what: str) -> None:
    """Refuse a downgrade below revision ``below``, naming how many, while a stored
    ``table.column`` is longer than ``limit`` characters: the older schema cannot hold it
    (PostgreSQL would fail on it half-way; SQLite would keep values that the older schema
    says cannot exist)."""
    stored: sa.ColumnClause[str] = sa.column(column)
    longer = op.get_bind().scalar(
        sa.select(sa.func.count())
        .select_from(sa.table(table, stored))
        .where(sa.func.length(stored) > limit)
    )
    if longer:
        raise StorageError(
            f"cannot downgrade below {below}: {longer} {what}(s) are longer than {limit}"
            " characters, which the older schema cannot hold"
        )


def set_length(table: str, column: str, old: int, new: int) -> None:
    """Declare ``table.column`` VARCHAR(``new``) instead of VARCHAR(``old``), each dialect
    its own way (its connector's)."""
    bind = op.get_bind()
    connector_of(bind.engine).set_varchar_length(bind, table, column, old, new)
