"""Changing a VARCHAR column's length in a migration, the one way for each dialect.

Migrations 0007 (batch ids) and 0008 (job ids) widen an id column from 200 to 500
characters and narrow it back on downgrade. PostgreSQL alters the column in place (widening
a VARCHAR rewrites nothing). SQLite never enforces a VARCHAR length and stores the column
the same whatever length it declares, so only the declared type in the schema changes: the
table is not copied (Alembic's batch-mode copy would also drop and recreate a table that
others reference, and rewrite every row of it).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

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
    """Declare ``table.column`` (NOT NULL) VARCHAR(``new``) instead of VARCHAR(``old``)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.alter_column(
            table,
            column,
            existing_type=sa.String(old),
            type_=sa.String(new),
            existing_nullable=False,
        )
        return
    # SQLite's own recipe for a schema change that leaves the stored rows as they are
    # (https://sqlite.org/lang_altertable.html, "making other kinds of table schema
    # changes"): edit the table's CREATE statement, bump the schema version so that every
    # connection re-reads it, and check the database's integrity before committing.
    sql = bind.scalar(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    )
    declared = re.compile(rf"(\b{column}\s+VARCHAR\(){old}(\))", re.IGNORECASE)
    edited, count = declared.subn(rf"\g<1>{new}\g<2>", sql)
    if count != 1:
        raise StorageError(f"{table}.{column} is not declared VARCHAR({old}): {sql!r}")
    version = bind.scalar(sa.text("PRAGMA schema_version"))
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.execute(
            sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
            {"sql": edited, "t": table},
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = bind.scalar(sa.text("PRAGMA integrity_check"))
    if problems != "ok":
        raise StorageError(f"the SQLite schema edit left the database inconsistent: {problems}")
