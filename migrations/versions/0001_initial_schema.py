"""initial schema: accounts, batches, snapshots, outcomes, failure tags

Revision ID: 0001
Revises:
Create Date: 2026-11-24 19:06:20.916143
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import preflight.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("meter", sa.String(length=32), nullable=True),
        sa.Column("need", preflight.db.types.Amount(), nullable=True),
        sa.Column("reserve", preflight.db.types.Amount(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("checked_at", preflight.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", preflight.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "last_activity_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_batches_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_batches_batch_id")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_batches_account_status", ["account_id", "status"], unique=False)

    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_pk", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("cost", preflight.db.types.Amount(), nullable=True),
        sa.Column("expected_cost", preflight.db.types.Amount(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("quota_failure", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_pk"], ["batches.id"], name=op.f("fk_outcomes_batch_pk_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint("batch_pk", "job_id", "attempt", name="uq_outcomes_batch_job_attempt"),
    )
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.create_index("ix_outcomes_occurred", ["occurred_at"], unique=False)

    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("batch_pk", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("taken_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("credits", preflight.db.types.Amount(), nullable=True),
        sa.Column("api_quota_remaining", preflight.db.types.Amount(), nullable=True),
        sa.Column("tier", sa.String(length=100), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_snapshots_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["batch_pk"], ["batches.id"], name=op.f("fk_snapshots_batch_pk_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_snapshots_account_taken", ["account_id", "taken_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_snapshots_batch_pk"), ["batch_pk"], unique=False)
        batch_op.create_index(
            "uq_snapshots_one_preflight_per_batch",
            ["batch_pk"],
            unique=True,
            sqlite_where=sa.text("kind = 'preflight'"),
            postgresql_where=sa.text("kind = 'preflight'"),
        )

    op.create_table(
        "failure_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outcome_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("attribution", sa.JSON(), nullable=False),
        sa.Column("unattributed", preflight.db.types.Amount(), nullable=True),
        sa.Column("classifier_version", sa.String(length=16), nullable=False),
        sa.Column("classified_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["outcome_id"],
            ["outcomes.id"],
            name=op.f("fk_failure_tags_outcome_id_outcomes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failure_tags")),
        sa.UniqueConstraint("outcome_id", name=op.f("uq_failure_tags_outcome_id")),
    )
    with op.batch_alter_table("failure_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_failure_tags_tag"), ["tag"], unique=False)

    op.create_table(
        "tag_snapshots",
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_tag_snapshots_snapshot_id_snapshots"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"],
            ["failure_tags.id"],
            name=op.f("fk_tag_snapshots_tag_id_failure_tags"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag_id", "snapshot_id", name=op.f("pk_tag_snapshots")),
    )
    with op.batch_alter_table("tag_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tag_snapshots_snapshot_id"), ["snapshot_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tag_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tag_snapshots_snapshot_id"))

    op.drop_table("tag_snapshots")
    with op.batch_alter_table("failure_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_failure_tags_tag"))

    op.drop_table("failure_tags")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_snapshots_one_preflight_per_batch",
            sqlite_where=sa.text("kind = 'preflight'"),
            postgresql_where=sa.text("kind = 'preflight'"),
        )
        batch_op.drop_index(batch_op.f("ix_snapshots_batch_pk"))
        batch_op.drop_index("ix_snapshots_account_taken")

    op.drop_table("snapshots")
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_outcomes_occurred")

    op.drop_table("outcomes")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index("ix_batches_account_status")
        batch_op.drop_index(batch_op.f("ix_batches_account_id"))

    op.drop_table("batches")
    op.drop_table("accounts")
