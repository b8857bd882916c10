"""Reading the profile and keeping it: the one way every verb takes a snapshot.

A snapshot is read outside any transaction (a slow vendor never holds a database lock),
then stored by the write port: on its own (:func:`take_snapshot`), or by ``check`` with
the batch it measures (:meth:`preflight.db.store.WriteStore.store_check`), both through
:func:`read_profile` and :func:`seen`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from preflight import metrics
from preflight.domain.vocabulary import SnapshotKind
from preflight.services.runtime import Runtime

if TYPE_CHECKING:
    from preflight.db.store import WriteStore
    from preflight.vendor import Profile


@dataclass(frozen=True)
class Taken:
    snapshot_id: int
    taken_at: datetime
    profile: Profile


@dataclass(frozen=True)
class Reading:
    """A profile as read, and when (the snapshot's time)."""

    profile: Profile
    taken_at: datetime


def read_profile(rt: Runtime, account: str) -> Reading:
    """Read ``account``'s profile, outside any transaction; the vendor's errors propagate."""
    profile = rt.vendor(account).get_profile()
    return Reading(profile, rt.clock())


def seen(account: str, reading: Reading) -> None:
    """A stored snapshot's balances, for the metrics."""
    metrics.balance_seen(account, reading.profile.meters)


def take_snapshot(
    rt: Runtime,
    account: str,
    kind: SnapshotKind,
    *,
    batch_id: str | None = None,
    outcome: tuple[str, int] | None = None,
) -> Taken:
    """Read ``account``'s profile, then store it. ``outcome`` (job id, attempt of
    ``batch_id``) names the quota failure a live ``failure`` snapshot measures."""
    reading = read_profile(rt, account)

    def store(writes: WriteStore) -> int:
        account_id = writes.account(account, now=reading.taken_at).id
        batch = writes.batch(batch_id) if batch_id else None
        outcome_pk = (
            writes.outcome_pk(batch.pk, *outcome)
            if batch is not None and outcome is not None
            else None
        )
        return writes.store_snapshot(
            account_id,
            reading.profile,
            now=reading.taken_at,
            kind=kind,
            batch_pk=batch.pk if batch is not None else None,
            outcome_pk=outcome_pk,
        )

    taken = Taken(rt.database.run_write(store), reading.taken_at, reading.profile)
    seen(account, reading)
    return taken
