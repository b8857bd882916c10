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

from preflight.db.types import Amount, MeterMap, UTCDateTime

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
    # Σ Batch.held over the account's batches: the outstanding need a check compares the
    # balance with, kept up to date by every write that changes a batch's hold.
    held_need: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default="0")


class Batch(Base):
    """A caller-named batch of paid jobs on one account and one meter."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(500), unique=True)  # domain/batch.py
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
    # Outcome totals, kept up to date as outcomes are stored, so that listings never sum
    # a batch's outcomes: counts, late ones (recorded after the finish), consumed cost.
    outcome_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    quota_failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    late_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    consumed_cost: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default="0")
    # What the batch holds of its account's balance, counted in Account.held_need:
    # max(need − consumed, 0) while it is open with a need and active within the hold
    # expiry (checks drop the quiet ones and take back the revived ones); None: nothing.
    held: Mapped[Decimal | None]

    account: Mapped[Account] = relationship()

    __table_args__ = (
        Index("ix_batches_account_status", "account_id", "status"),
        # The two sides of the hold: batches that hold (a check drops those gone quiet),
        # and open batches with a need that do not (a check takes back those active again).
        Index(
            "ix_batches_held",
            "account_id",
            "last_activity_at",
            sqlite_where=text("held IS NOT NULL"),
            postgresql_where=text("held IS NOT NULL"),
        ),
        Index(
            "ix_batches_unheld",
            "account_id",
            "last_activity_at",
            sqlite_where=text("held IS NULL AND status = 'open' AND need IS NOT NULL"),
            postgresql_where=text("held IS NULL AND status = 'open' AND need IS NOT NULL"),
        ),
    )


class Snapshot(Base):
    """One profile reading of one account at one instant. Never edited."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    batch_pk: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    # The quota failure a live ``failure`` snapshot was taken for: it measures that failure.
    outcome_id: Mapped[int | None] = mapped_column(ForeignKey("outcomes.id"))
    kind: Mapped[str] = mapped_column(String(16))
    taken_at: Mapped[datetime]
    # The two meters of the first vendor have their own columns; any other meter a vendor
    # adapter reads (characters, usd, limit_remaining, ...) is in extra_meters, by name.
    credits: Mapped[Decimal | None]
    api_quota_remaining: Mapped[Decimal | None]
    extra_meters: Mapped[dict[str, Decimal] | None] = mapped_column(MeterMap)
    tier: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(200))
    # The body exactly as received, unknown fields included.
    raw: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_snapshots_account_taken", "account_id", "taken_at"),
        # Retention walks only the account's batch-less audit snapshots.
        Index(
            "ix_snapshots_audit_taken",
            "account_id",
            "taken_at",
            sqlite_where=text("kind = 'audit' AND batch_pk IS NULL"),
            postgresql_where=text("kind = 'audit' AND batch_pk IS NULL"),
        ),
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
        """The snapshot's balance on meter ``name`` (None: absent)."""
        if name == "credits":
            return self.credits
        if name == "api_quota_remaining":
            return self.api_quota_remaining
        return (self.extra_meters or {}).get(name)

    @property
    def meters(self) -> dict[str, Decimal | None]:
        """Every meter the snapshot has a value for, by name."""
        found = {"credits": self.credits, "api_quota_remaining": self.api_quota_remaining}
        found.update(self.extra_meters or {})
        return {name: value for name, value in found.items() if value is not None}


class Outcome(Base):
    """One job attempt of one batch. (batch, job, attempt) is recorded once."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_pk: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    job_id: Mapped[str] = mapped_column(String(500))  # domain/outcome.py
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    # What the job consumed. A quota failure consumed nothing: 0 when it declared a cost
    # (that cost is then its expected_cost), else absent.
    cost: Mapped[Decimal | None]
    # What the job was expected to cost (the classifier's c), when the caller knows.
    expected_cost: Mapped[Decimal | None]
    error: Mapped[str | None] = mapped_column(Text)
    quota_failure: Mapped[bool] = mapped_column(Boolean)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]

    __table_args__ = (
        # Also the index of every per-batch query. No (batch_pk, occurred_at) index on
        # purpose: with it, PostgreSQL planned the bulk import's duplicate lookup on the
        # wrong index and each chunk got slower as the batch grew.
        UniqueConstraint("batch_pk", "job_id", "attempt", name="uq_outcomes_batch_job_attempt"),
        Index("ix_outcomes_occurred", "occurred_at"),
        # Quota failures are few among many outcomes: failures, show and the classifier
        # read them through this index, never through the batch's other outcomes. (Partial,
        # so it can never serve the bulk import's duplicate lookup.) The WHERE is spelled as
        # each dialect spells ``quota_failure IS true``, which SQLite's planner needs.
        Index(
            "ix_outcomes_quota_failures",
            "batch_pk",
            "occurred_at",
            sqlite_where=text("quota_failure IS 1"),
            postgresql_where=text("quota_failure IS true"),
        ),
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


# ---------------------------------------------------------------- scheduled audit


class AuditClaim(Base):
    """One account's audit period, claimed by exactly one replica at a time.

    Inserted with ON CONFLICT DO NOTHING on (account, period_start): the replica whose
    insert wins runs the period; every later write of its run first renews the lease
    and aborts if the lease lapsed, so a claim whose holder died can be taken over
    (``running`` with an expired lease, or ``abandoned`` on a graceful shutdown).
    """

    __tablename__ = "audit_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    period_start: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed | abandoned
    holder: Mapped[str] = mapped_column(String(200))  # replica id: host:pid:random
    lease_expires_at: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # The audit snapshot taken under this claim: a replica taking the period over reuses
    # it instead of taking a second one. Indexed: deleting a snapshot looks its claims up.
    snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("snapshots.id", ondelete="SET NULL"), index=True
    )

    __table_args__ = (
        UniqueConstraint("account_id", "period_start", name="uq_audit_claims_account_period"),
        Index("ix_audit_claims_status_lease", "status", "lease_expires_at"),
    )


class AuditRun(Base):
    """One completed audit of one account: written with its findings in one transaction."""

    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # Unique: a claimed period has at most one run. None for a --force run (no claim).
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("audit_claims.id"), unique=True)
    period_start: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # ok | partial | auth_failed | skipped
    # Per step: {"ok": bool, "error": text, ...}; never a token, at most its fingerprint.
    steps: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Indexed: deleting a snapshot (retention) looks up the runs that name it.
    snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("snapshots.id", ondelete="SET NULL"), index=True
    )
    # Unexplained consumption was checked for snapshot windows ending up to here.
    checked_until: Mapped[datetime | None]

    __table_args__ = (Index("ix_audit_runs_account_started", "account_id", "started_at"),)


class Finding(Base):
    """Something an audit run noticed. ``key`` makes it reported once, not every tick."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_run_id: Mapped[int] = mapped_column(
        ForeignKey("audit_runs.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal | None]
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    batches: Mapped[list[str]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("account_id", "kind", "key", name="uq_findings_account_kind_key"),
        Index("ix_findings_created", "created_at"),
    )


# ---------------------------------------------------------------- the HTTP API's own tokens


class ApiToken(Base):
    """A bearer token of the HTTP API. Only its SHA-256 is kept: the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Hex SHA-256 of the token; requests are authenticated by looking this up.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
