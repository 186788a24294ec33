"""Retention expiry: every stored message is destroyed at its expiry time, read or not."""

from __future__ import annotations

import asyncio
import logging

from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.ops.metrics import purged
from gateway.storage.protocols import PickupStore, QueueStore, Storage

log = logging.getLogger("sealgate.expiry")
DEBRIS_AGE = 3600.0  # while serving, only spool debris this old is surely nobody's work


def purge_expired(store: PickupStore) -> int:
    """Destroy every pickup past its expiry: blob, wrapped data key and row."""
    destroyed = 0
    for pickup_id in store.expired_pickups():
        if store.destroy_pickup(pickup_id):
            destroyed += 1
            purged("pickup")
            log.info("pickup %s expired and was destroyed", pickup_id[:8])
    return destroyed


def prune_history(store: QueueStore, history_retention: float) -> int:
    """Forget settled messages older than HISTORY_RETENTION seconds (rows and attempts)."""
    pruned = store.prune_history(store.clock() - history_retention)
    if pruned:
        purged("queue-history", pruned)
        log.info("forgot %d settled messages older than %.0f days", pruned,
                 history_retention / 86400)
    return pruned


def housekeeping(store: Storage, history_retention: float) -> None:
    """One expiry turn: expired pickups, spool files left by failed writes, and settled
    queue history past its retention."""
    purge_expired(store)
    store.forget_expired_sender_links()  # only hashes, but of links that no longer work
    if removed := store.clean_spool_debris(min_age=DEBRIS_AGE, tmp_min_age=DEBRIS_AGE):
        purged("spool-debris", removed)
        log.info("removed %d orphaned spool files", removed)
    prune_history(store, history_retention)


async def expire_forever(store: Storage, history_retention: float,
                         interval: float = 60.0) -> None:
    await keep_running("retention expiry",
                       lambda: asyncio.to_thread(housekeeping, store, history_retention),
                       interval, RepeatedErrors(log))
