"""maintained per-batch totals and held need; indexes for listings, failures and retention

Each batch keeps its outcome totals (count, failed, quota failures, late, consumed cost) and
``held``, what it holds of its account's balance (max(need − consumed, 0) while open with a
need); each account keeps ``held_need``, the sum of its batches' ``held``. Checks and
listings read these instead of summing outcomes and loading every open batch. Upgrade
derives them from the stored outcomes (a batch quiet past the hold expiry is dropped from
``held_need`` by the next check); downgrade drops them, nothing else changes.

Indexes: quota failures (partial), the two sides of the hold (partial), batch-less audit
snapshots (partial, for retention), and the snapshot ids of audit runs and claims (deleting
a snapshot looks them up for ON DELETE SET NULL).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

import preflight.db.types
from preflight.db.session import decimal_sum

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ZERO = Decimal(0)
_COUNTS = ("outcome_count", "failed_count", "quota_failure_count", "late_count")

# Bound through the Amount and UTCDateTime types, so SQLite gets the app's canonical text.
accounts = sa.table(
    "accounts",
    sa.column("id", sa.Integer()),
    sa.column("held_need", preflight.db.types.Amount()),
)
batches = sa.table(
    "batches",
    sa.column("id", sa.Integer()),
    sa.column("account_id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("need", preflight.db.types.Amount()),
    sa.column("finished_at", preflight.db.types.UTCDateTime()),
    sa.column("consumed_cost", preflight.db.types.Amount()),
    sa.column("held", preflight.db.types.Amount()),
    *(sa.column(name, sa.Integer()) for name in _COUNTS),
)
outcomes = sa.table(
    "outcomes",
    sa.column("batch_pk", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("cost", preflight.db.types.Amount()),
    sa.column("quota_failure", sa.Boolean()),
    sa.column("recorded_at", preflight.db.types.UTCDateTime()),
)

_PARTIAL = {
    "ix_batches_held": ("batches", ["account_id", "last_activity_at"], "held IS NOT NULL"),
    "ix_batches_unheld": (
        "batches",
        ["account_id", "last_activity_at"],
        "held IS NULL AND status = 'open' AND need IS NOT NULL",
    ),
    "ix_snapshots_audit_taken": (
        "snapshots",
        ["account_id", "taken_at"],
        "kind = 'audit' AND batch_pk IS NULL",
    ),
}


def _quota_where(dialect: str) -> str:
    return "quota_failure IS 1" if dialect == "sqlite" else "quota_failure IS true"


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_need", preflight.db.types.Amount(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        for name in _COUNTS:
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column(
                "consumed_cost", preflight.db.types.Amount(), server_default="0", nullable=False
            )
        )
        batch_op.add_column(sa.Column("held", preflight.db.types.Amount(), nullable=True))

    _derive_totals()

    for name, (table, columns, where) in _PARTIAL.items():
        op.create_index(
            name, table, columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
        )
    op.create_index(
        "ix_outcomes_quota_failures",
        "outcomes",
        ["batch_pk", "occurred_at"],
        sqlite_where=sa.text(_quota_where("sqlite")),
        postgresql_where=sa.text(_quota_where("postgresql")),
    )
    op.create_index(op.f("ix_audit_runs_snapshot_id"), "audit_runs", ["snapshot_id"])
    op.create_index(op.f("ix_audit_claims_snapshot_id"), "audit_claims", ["snapshot_id"])


def _derive_totals() -> None:
    """Totals from the stored outcomes, one grouped query; held need from them."""
    bind = op.get_bind()
    one = sa.literal(1)
    zero = sa.literal(0)
    late = sa.and_(
        batches.c.finished_at.is_not(None), outcomes.c.recorded_at > batches.c.finished_at
    )
    rows = bind.execute(
        sa.select(
            outcomes.c.batch_pk,
            sa.func.count(),
            sa.func.sum(sa.case((outcomes.c.status == "failed", one), else_=zero)),
            sa.func.sum(sa.case((outcomes.c.quota_failure.is_(True), one), else_=zero)),
            sa.func.sum(sa.case((late, one), else_=zero)),
            decimal_sum(outcomes.c.cost),
        )
        .join(batches, batches.c.id == outcomes.c.batch_pk)
        .group_by(outcomes.c.batch_pk)
    ).all()
    for pk, total, failed, quota, n_late, cost in rows:
        bind.execute(
            batches.update()
            .where(batches.c.id == pk)
            .values(
                outcome_count=total,
                failed_count=failed or 0,
                quota_failure_count=quota or 0,
                late_count=n_late or 0,
                consumed_cost=cost or ZERO,
            )
        )
    held_need: dict[int, Decimal] = {}
    for pk, account_id, need, consumed in bind.execute(
        sa.select(
            batches.c.id, batches.c.account_id, batches.c.need, batches.c.consumed_cost
        ).where(batches.c.status == "open", batches.c.need.is_not(None))
    ).all():
        held = max(need - consumed, ZERO)
        bind.execute(batches.update().where(batches.c.id == pk).values(held=held))
        held_need[account_id] = held_need.get(account_id, ZERO) + held
    for account_id, total in held_need.items():
        bind.execute(accounts.update().where(accounts.c.id == account_id).values(held_need=total))


def _drop_columns(table: str, names: Sequence[str]) -> None:
    bind = op.get_bind()
    native = bind.dialect.name != "sqlite" or bind.dialect.dbapi.sqlite_version_info >= (3, 35)
    if native:
        # SQLite 3.35+ drops a column in place. The batch mode's copy-and-move would drop
        # and recreate tables that outcomes and snapshots reference.
        for name in names:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            batch_op.drop_column(name)


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_claims_snapshot_id"), table_name="audit_claims")
    op.drop_index(op.f("ix_audit_runs_snapshot_id"), table_name="audit_runs")
    op.drop_index("ix_outcomes_quota_failures", table_name="outcomes")
    for name, (table, _columns, _where) in _PARTIAL.items():
        op.drop_index(name, table_name=table)
    _drop_columns("batches", [*_COUNTS, "consumed_cost", "held"])
    _drop_columns("accounts", ["held_need"])
