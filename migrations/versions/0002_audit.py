"""scheduled audit: per-period claims, audit runs and their findings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:25:34.055548
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import preflight.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("period_start", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column(
            "lease_expires_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("started_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", preflight.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_audit_claims_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_audit_claims_snapshot_id_snapshots"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_claims")),
        sa.UniqueConstraint("account_id", "period_start", name="uq_audit_claims_account_period"),
    )
    with op.batch_alter_table("audit_claims", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_claims_status_lease", ["status", "lease_expires_at"], unique=False
        )

    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=True),
        sa.Column("period_start", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("checked_until", preflight.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_audit_runs_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["audit_claims.id"], name=op.f("fk_audit_runs_claim_id_audit_claims")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_audit_runs_snapshot_id_snapshots"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_runs")),
        sa.UniqueConstraint("claim_id", name=op.f("uq_audit_runs_claim_id")),
    )
    with op.batch_alter_table("audit_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_runs_account_started", ["account_id", "started_at"], unique=False
        )

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_run_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("amount", preflight.db.types.Amount(), nullable=True),
        sa.Column("window_start", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("window_end", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("batches", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", preflight.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_findings_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["audit_run_id"],
            ["audit_runs.id"],
            name=op.f("fk_findings_audit_run_id_audit_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("account_id", "kind", "key", name="uq_findings_account_kind_key"),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_findings_audit_run_id"), ["audit_run_id"], unique=False
        )
        batch_op.create_index("ix_findings_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_created")
        batch_op.drop_index(batch_op.f("ix_findings_audit_run_id"))

    op.drop_table("findings")
    with op.batch_alter_table("audit_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_runs_account_started")

    op.drop_table("audit_runs")
    with op.batch_alter_table("audit_claims", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_claims_status_lease")

    op.drop_table("audit_claims")
