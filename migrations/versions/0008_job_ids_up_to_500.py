"""job ids up to 500 characters: room for an orchestrator's task id and map index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 05:00:00

``outcomes.job_id`` widens from VARCHAR(200) to VARCHAR(500) (domain/outcome.py: an Airflow
task id of up to 250 characters with ``[map_index]``, as ``preflight_job`` records it, and
room for other orchestrators' ids). It is the only column that stores a job id (a tag's
evidence and a finding's detail are JSON). As in 0007 (preflight/db/varchar.py): PostgreSQL
alters the column in place; on SQLite only the declared type in the schema changes, the
outcomes table is not copied.

Downgrade narrows the column back; it refuses, naming how many, while a stored job id is
longer than 200 characters, since those would not fit.
"""

from __future__ import annotations

from collections.abc import Sequence

from preflight.db.varchar import refuse_longer, set_length

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = 200
_NEW = 500


def upgrade() -> None:
    set_length("outcomes", "job_id", _OLD, _NEW)


def downgrade() -> None:
    refuse_longer("outcomes", "job_id", _OLD, below="0008", what="job id")
    set_length("outcomes", "job_id", _NEW, _OLD)
