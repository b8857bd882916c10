"""batch ids up to 500 characters: room for an orchestrator's ``dag_id/run_id``

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 02:00:00

``batches.batch_id`` widens from VARCHAR(200) to VARCHAR(500) (domain/batch.py: a
250-character Airflow dag id, ``/``, a 250-character run id). PostgreSQL alters the column
in place (widening a VARCHAR rewrites nothing). SQLite never enforces a VARCHAR length
and stores the column the same whatever length it declares, so only the declared type in
the schema changes: the batches table is not copied (its batch-mode copy would also drop
and recreate the table that outcomes and snapshots reference). preflight/db/varchar.py
holds how, for this migration and 0008.

Downgrade narrows the column back; it refuses, naming how many, while a stored batch id
is longer than 200 characters, since those would not fit (PostgreSQL would fail on them
half-way; SQLite would keep ids that the older schema says cannot exist).
"""

from __future__ import annotations

from collections.abc import Sequence

from preflight.db.varchar import refuse_longer, set_length

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = 200
_NEW = 500


def upgrade() -> None:
    set_length("batches", "batch_id", _OLD, _NEW)


def downgrade() -> None:
    refuse_longer("batches", "batch_id", _OLD, below="0007", what="batch id")
    set_length("batches", "batch_id", _NEW, _OLD)
