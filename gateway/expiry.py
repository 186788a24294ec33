"""Retention expiry: every stored message is destroyed at its expiry time, read or not."""

from __future__ import annotations

import asyncio
import logging

from gateway.store import Store

log = logging.getLogger("sealgate.expiry")


def purge_expired(store: Store) -> int:
    """Destroy every pickup past its expiry: blob, wrapped data key and row."""
    destroyed = 0
    for pickup_id in store.expired_pickups():
        if store.destroy_pickup(pickup_id):
            destroyed += 1
            log.info("pickup %s expired and was destroyed", pickup_id[:8])
    return destroyed


async def expire_forever(store: Store, interval: float = 60.0) -> None:
    while True:
        try:
            await asyncio.to_thread(purge_expired, store)
        except Exception:
            log.exception("expiry run failed; will retry")
        await asyncio.sleep(interval)
