"""Crypto-shredding: purge destroys a key-encryption key (KEK) once nothing it wraps is
left, and from then on no copy of those messages decrypts, wherever the copy went.

- an epoch KEK (gateway/vault/epochs.py) goes once its epoch is over and no pickup it wraps
  remains: every message of the day has expired and been purged;
- a KEK of the ring before epochs goes once the last pickup it wraps has been purged (it
  wraps nothing new, so nothing can come back to need it).
Each destruction is an audit event (KEY_DESTROYED about "key:<id>") naming the epoch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from gateway.ops.metrics import purged
from gateway.storage.protocols import KeyStore, KeyUsage
from gateway.vault.epochs import epoch_end, key_epoch

log = logging.getLogger("sealgate.keys")
PURGE_CLIENT = "purge"


@dataclass(frozen=True)
class KeyStatus:
    key_id: str
    epoch: date | None        # None: a key of the ring before epochs
    pickups: int              # stored messages whose data key it wraps (expired or not)
    destroyed_from: float     # the first moment purge may destroy it (if nothing is left)

    def spent(self, now: float) -> bool:
        return self.pickups == 0 and now >= self.destroyed_from

    @property
    def description(self) -> str:
        return f"epoch {self.epoch.isoformat()}" if self.epoch else "key ring before epochs"


def key_status(usage: KeyUsage) -> KeyStatus:
    epoch = key_epoch(usage.key_id)
    last = usage.last_expiry or 0.0
    destroyed_from = max(epoch_end(epoch), last) if epoch else last
    return KeyStatus(usage.key_id, epoch, usage.pickups, destroyed_from)


def shred_spent_keys(store: KeyStore, now: float, client: str = PURGE_CLIENT) -> list[str]:
    """Destroy every KEK spent at NOW (run after the expired pickups were destroyed); returns
    their ids."""
    destroyed = []
    for status in (key_status(u) for u in store.key_usage()):
        if status.spent(now) and store.destroy_key(status.key_id, client, status.description):
            destroyed.append(status.key_id)
            purged("key")
            log.info("key-encryption key %s (%s) destroyed: nothing it wrapped is left",
                     status.key_id, status.description)
    store.retire_epochs(now)  # each node's turn, whichever node destroyed the keys
    return destroyed
