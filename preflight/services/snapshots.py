"""Reading the profile and keeping it: the one way every verb takes a snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from preflight import metrics
from preflight.db import repositories as repo
from preflight.domain.vocabulary import SnapshotKind
from preflight.services.runtime import Runtime

if TYPE_CHECKING:
    from preflight.db.session import Session
    from preflight.vendor import Profile


@dataclass(frozen=True)
class Taken:
    snapshot_id: int
    taken_at: datetime
    profile: Profile


def take_snapshot(
    rt: Runtime,
    account: str,
    kind: SnapshotKind,
    *,
    batch_id: str | None = None,
    outcome: tuple[str, int] | None = None,
) -> Taken:
    """Read ``account``'s profile (outside any transaction: a slow vendor never holds a
    database lock), then store it. ``outcome`` (job id, attempt of ``batch_id``) names the
    quota failure a live ``failure`` snapshot measures."""
    profile = rt.vendor(account).get_profile()
    now = rt.clock()

    def store(session: Session) -> int:
        account_row = repo.get_or_create_account(session, account, now=now)
        batch = repo.find_batch(session, batch_id) if batch_id else None
        outcome_id = (
            repo.outcome_id(session, batch, *outcome)
            if batch is not None and outcome is not None
            else None
        )
        return repo.store_snapshot(
            session, account_row, profile, now=now, kind=kind, batch=batch, outcome_id=outcome_id
        ).id

    taken = Taken(rt.database.run_write(store), now, profile)
    metrics.balance_seen(account, profile.meters)
    return taken
