"""The schema, as typed SQLAlchemy models. Alembic migrations in ``migrations/`` own the DDL.

Snapshots are observations and are never updated; tags are derived from them and
from outcomes, and are recomputed, never the other way round.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from preflight.db.types import Amount, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {Decimal: Amount(), datetime: UTCDateTime()}


class Account(Base):
    """One configured vendor account (a token's owner)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The vendor's user_id, learned from the first profile reading.
    user_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Batch(Base):
    """A caller-named batch of paid jobs on one account and one meter."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # None until a check (or an outcome) tells which meter the batch spends.
    meter: Mapped[str | None] = mapped_column(String(32))
    need: Mapped[Decimal | None]
    reserve: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str | None] = mapped_column(String(32))
    # False when dispatched without a usable check (fail-open, or never checked).
    verified: Mapped[bool] = mapped_column(Boolean)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    checked_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Last check or outcome: a batch quiet for longer than the hold expiry stops
    # counting towards other batches' outstanding need.
    last_activity_at: Mapped[datetime]

    account: Mapped[Account] = relationship()

    __table_args__ = (Index("ix_batches_account_status", "account_id", "status"),)


class Snapshot(Base):
    """One profile reading of one account at one instant. Never edited."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    batch_pk: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    taken_at: Mapped[datetime]
    credits: Mapped[Decimal | None]
    api_quota_remaining: Mapped[Decimal | None]
    tier: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(200))
    # The body exactly as received, unknown fields included.
    raw: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_snapshots_account_taken", "account_id", "taken_at"),
        # A batch has at most one preflight snapshot: a second check is a recheck.
        Index(
            "uq_snapshots_one_preflight_per_batch",
            "batch_pk",
            unique=True,
            sqlite_where=text("kind = 'preflight'"),
            postgresql_where=text("kind = 'preflight'"),
        ),
    )

    def meter(self, name: str) -> Decimal | None:
        value: Decimal | None = getattr(self, name)
        return value


class Outcome(Base):
    """One job attempt of one batch. (batch, job, attempt) is recorded once."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_pk: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    job_id: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[Decimal | None]
    # What the job was expected to cost (the classifier's c), when the caller knows.
    expected_cost: Mapped[Decimal | None]
    error: Mapped[str | None] = mapped_column(Text)
    quota_failure: Mapped[bool] = mapped_column(Boolean)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("batch_pk", "job_id", "attempt", name="uq_outcomes_batch_job_attempt"),
        Index("ix_outcomes_batch_occurred", "batch_pk", "occurred_at"),
        Index("ix_outcomes_occurred", "occurred_at"),
    )


class FailureTag(Base):
    """The classification of one quota failure, recomputed from stored rows."""

    __tablename__ = "failure_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    outcome_id: Mapped[int] = mapped_column(
        ForeignKey("outcomes.id", ondelete="CASCADE"), unique=True
    )
    tag: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    attribution: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    unattributed: Mapped[Decimal | None]
    classifier_version: Mapped[str] = mapped_column(String(16))
    classified_at: Mapped[datetime]


class TagSnapshot(Base):
    """A snapshot that a tag's evidence cites: retention may never delete it (RESTRICT)."""

    __tablename__ = "tag_snapshots"

    tag_id: Mapped[int] = mapped_column(
        ForeignKey("failure_tags.id", ondelete="CASCADE"), primary_key=True
    )
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
