"""meters by name: a snapshot keeps any vendor adapter's meters beside the first two

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:00:00

``credits`` and ``api_quota_remaining`` keep their columns, so every stored snapshot reads
as before; any other meter (``characters``, ``usd``, ...) goes in ``extra_meters``, a JSON
object of exact decimal strings. Downgrade drops those other meters (the raw body that
each came from stays) and only them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import preflight.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both dialects (SQLite has dropped columns since 3.35): a batch
# table rebuild would copy every snapshot to add one nullable column.
def upgrade() -> None:
    op.add_column("snapshots", sa.Column("extra_meters", preflight.db.types.MeterMap()))


def downgrade() -> None:
    op.drop_column("snapshots", "extra_meters")
