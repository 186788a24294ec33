"""Retention expiry: every stored message is destroyed at its expiry time, read or not."""

from __future__ import annotations

import asyncio
import logging

from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.ops.metrics import purged
from gateway.storage.protocols import PickupStore, Storage

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


def housekeeping(store: Storage) -> None:
    """One expiry turn: expired pickups, then spool files left by failed writes."""
    purge_expired(store)
    if removed := store.clean_spool_debris(min_age=DEBRIS_AGE, tmp_min_age=DEBRIS_AGE):
        purged("spool-debris", removed)
        log.info("removed %d orphaned spool files", removed)


async def expire_forever(store: Storage, interval: float = 60.0) -> None:
    await keep_running("retention expiry", lambda: asyncio.to_thread(housekeeping, store),
                       interval, RepeatedErrors(log))
