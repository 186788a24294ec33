"""Retention expiry: every stored message is destroyed at its expiry time, read or not, and
then the key-encryption keys that wrapped nothing else (gateway/vault/shredding.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.config import DeliveryConfig, parse_duration
from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.ops.metrics import purged
from gateway.storage.protocols import PickupStore, QueueStore, Storage
from gateway.vault.shredding import shred_spent_keys

log = logging.getLogger("sealgate.expiry")
DEBRIS_AGE = 3600.0  # while serving, only spool debris this old is surely nobody's work


@dataclass(frozen=True)
class Retention:
    """How long, in seconds, what is not a stored message is kept: settled queue history,
    and what was learned of hosts' TLS (the TLS cache, and the downgrade memory that the
    route diagnostics list from it)."""

    history: float
    host_knowledge: float

    @classmethod
    def of(cls, delivery: DeliveryConfig) -> Retention:
        return cls(parse_duration(delivery.history_retention),
                   max(parse_duration(delivery.tls_cache_ttl),
                       parse_duration(delivery.downgrade_window)))


def purge_expired(store: PickupStore) -> int:
    """Destroy every pickup past its expiry: blob, wrapped data key and row."""
    destroyed = 0
    for pickup_id in store.expired_pickups():
        if store.destroy_pickup(pickup_id):
            destroyed += 1
            purged("pickup")
            log.info("pickup %s expired and was destroyed", pickup_id[:8])
    return destroyed


def purge(store: Storage) -> tuple[int, list[str]]:
    """Expired pickups destroyed, then the KEKs left wrapping nothing: how many pickups, and
    the ids of the keys destroyed."""
    destroyed = purge_expired(store)
    return destroyed, shred_spent_keys(store, store.clock())


def prune_history(store: QueueStore, history_retention: float) -> int:
    """Forget settled messages older than HISTORY_RETENTION seconds (rows and attempts)."""
    pruned = store.prune_history(store.clock() - history_retention)
    if pruned:
        purged("queue-history", pruned)
        log.info("forgot %d settled messages older than %.0f days", pruned,
                 history_retention / 86400)
    return pruned


def forget_stale_hosts(store: Storage, host_knowledge: float) -> int:
    """Forget the TLS facts of hosts not seen for HOST_KNOWLEDGE seconds: a gateway that
    meets millions of MX hosts over the years must not keep a row for each forever."""
    forgotten = store.forget_stale_hosts(store.clock() - host_knowledge)
    if forgotten:
        purged("host-knowledge", forgotten)
        log.info("forgot the TLS facts of hosts not seen for %.0f days (%d rows)",
                 host_knowledge / 86400, forgotten)
    return forgotten


def housekeeping(store: Storage, retention: Retention) -> None:
    """One expiry turn: expired pickups and spent keys, spool files left by failed writes,
    settled queue history past its retention, sender links that no longer work, and hosts'
    TLS facts that no longer decide anything."""
    purge(store)
    store.forget_expired_sender_links()  # only hashes, but of links that no longer work
    if removed := store.clean_spool_debris(min_age=DEBRIS_AGE, tmp_min_age=DEBRIS_AGE):
        purged("spool-debris", removed)
        log.info("removed %d orphaned spool files", removed)
    prune_history(store, retention.history)
    forget_stale_hosts(store, retention.host_knowledge)


async def expire_forever(store: Storage, retention: Retention, interval: float = 60.0) -> None:
    await keep_running("retention expiry",
                       lambda: asyncio.to_thread(housekeeping, store, retention),
                       interval, RepeatedErrors(log))
