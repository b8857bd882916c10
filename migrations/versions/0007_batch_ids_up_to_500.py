"""batch ids up to 500 characters: room for an orchestrator's ``dag_id/run_id``

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 02:00:00

``batches.batch_id`` widens from VARCHAR(200) to VARCHAR(500) (domain/batch.py: a
250-character Airflow dag id, ``/``, a 250-character run id). PostgreSQL alters the column
in place (widening a VARCHAR rewrites nothing). SQLite never enforces a VARCHAR length
and stores the column the same whatever length it declares, so only the declared type in
the schema changes: the batches table is not copied (its batch-mode copy would also drop
and recreate the table that outcomes and snapshots reference).

Downgrade narrows the column back; it refuses, naming how many, while a stored batch id
is longer than 200 characters, since those would not fit (PostgreSQL would fail on them
half-way; SQLite would keep ids that the older schema says cannot exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from preflight.errors import StorageError

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = 200
_NEW = 500


def upgrade() -> None:
    _set_length(_OLD, _NEW)


def downgrade() -> None:
    longer = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM batches WHERE length(batch_id) > :n"), {"n": _OLD}
    )
    if longer:
        raise StorageError(
            f"cannot downgrade below 0007: {longer} batch id(s) are longer than {_OLD}"
            " characters, which the older schema cannot hold"
        )
    _set_length(_NEW, _OLD)


def _set_length(old: int, new: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.alter_column(
            "batches",
            "batch_id",
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
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'batches'")
    )
    declared = re.compile(rf"(\bbatch_id\s+VARCHAR\(){old}(\))", re.IGNORECASE)
    edited, count = declared.subn(rf"\g<1>{new}\g<2>", sql)
    if count != 1:
        raise StorageError(f"batches.batch_id is not declared VARCHAR({old}): {sql!r}")
    version = bind.scalar(sa.text("PRAGMA schema_version"))
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.execute(
            sa.text(
                "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'batches'"
            ),
            {"sql": edited},
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = bind.scalar(sa.text("PRAGMA integrity_check"))
    if problems != "ok":
        raise StorageError(f"the SQLite schema edit left the database inconsistent: {problems}")
