"""a quota failure consumed nothing; a failure snapshot names the outcome it measures

The cost declared on a stored quota failure (HTTP 402, or marked as quota) moves into
its expected cost, and its consumed cost becomes 0: own(), totals, attribution,
``finish`` and the audit then count consumption only. An expected cost that was
already declared wins. Downgrade puts the moved amount back into ``cost``.

``snapshots.outcome_id`` links a live ``failure`` snapshot to the 402 it was taken for:
that snapshot measures the failure (classifier version 2).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 03:50:00
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

import preflight.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Bind through the Amount type, so that SQLite gets the same canonical text as the app.
outcomes = sa.table(
    "outcomes",
    sa.column("cost", preflight.db.types.Amount()),
    sa.column("expected_cost", preflight.db.types.Amount()),
    sa.column("quota_failure", sa.Boolean()),
)
ZERO = Decimal(0)


def upgrade() -> None:
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_snapshots_outcome_id_outcomes"), "outcomes", ["outcome_id"], ["id"]
        )
    # A declared cost of 0 says "consumed nothing" and declares no expected cost. SQLite
    # holds amounts as text, where "0.00" != "0": compare numerically there.
    cost = outcomes.c.cost
    nonzero = (
        sa.cast(cost, sa.Float) != 0 if op.get_bind().dialect.name == "sqlite" else cost != ZERO
    )
    declared = sa.and_(outcomes.c.quota_failure.is_(True), cost.is_not(None), nonzero)
    op.execute(
        outcomes.update()
        .where(declared)
        .values(expected_cost=sa.func.coalesce(outcomes.c.expected_cost, outcomes.c.cost))
    )
    op.execute(outcomes.update().where(declared).values(cost=ZERO))


def downgrade() -> None:
    op.execute(
        outcomes.update()
        .where(
            outcomes.c.quota_failure.is_(True),
            outcomes.c.cost == ZERO,
            outcomes.c.expected_cost.is_not(None),
        )
        .values(cost=outcomes.c.expected_cost)
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_snapshots_outcome_id_outcomes"), type_="foreignkey")
        batch_op.drop_column("outcome_id")
