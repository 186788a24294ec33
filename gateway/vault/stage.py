"""The pickup stage: encrypt the message for its recipient, queue the notification, and
settle the recipient, all in one transaction so a crash leaves no half-done pickup."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import sqlite3

from gateway.config import Config
from gateway.storage.store import PICKUP, Route, Settlement, Store, new_pickup_id
from gateway.vault.notify import build_notification
from gateway.vault.retention import EXPIRES_HEADER, expiry_time


class LeaseLost(Exception):
    """The recipient is no longer ours to settle: its lease was taken over (another runner
    delivers it now) or it was settled or deleted meanwhile."""


class PickupStage:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    def expiry_for(self, message_id: str, received: float) -> float:
        head = self.store.read_spool_headers(message_id)
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
        return expiry_time(received, headers.get(EXPIRES_HEADER), self.config.pickup.retention_days,
                           self.config.pickup.max_retention_days, self.store.clock())

    def link(self, pickup_id: str) -> str:
        return f"{self.config.pickup.base_url.rstrip('/')}/m/{pickup_id}"

    def store_for_pickup(self, message_id: str, sender: str, rcpt: str, received: float,
                         reason: str) -> str | None:
        """Blocking (encrypts and fsyncs): call from a worker thread. Returns the pickup id,
        or None when the recipient's lease was lost: then nothing is stored (the runner now
        holding it stores its own pickup, one only)."""
        pickup_id = new_pickup_id()
        expires = self.expiry_for(message_id, received)
        notification = build_notification(
            notify_from=self.config.notify.from_, sender=sender, recipient=rcpt,
            link=self.link(pickup_id), expires=expires,
            organization=self.config.pickup.organization,
        )
        notification_id = self.store.spool(notification)

        def settle(db: sqlite3.Connection, _pickup_id: str) -> None:
            # Like every settlement: only while this runner holds the lease, else the whole
            # transaction (pickup row, notification) rolls back.
            stored = Settlement(message_id, {rcpt: f"stored for pickup: {reason}"}, PICKUP)
            if not self.store.settle_in(db, stored):
                raise LeaseLost(f"{message_id} to {rcpt}")
            self.store.insert_queue_rows(db, notification_id, self.config.notify.from_,
                                         [Route(rcpt, reason="pickup notification")],
                                         len(notification))

        try:
            self.store.store_pickup(message_id, sender, rcpt, expires, then=settle,
                                    pickup_id=pickup_id)
        except BaseException as exc:
            with contextlib.suppress(OSError):  # never queued: a retry writes a new one
                self.store.spool_path(notification_id).unlink()
            if isinstance(exc, LeaseLost):
                return None
            raise
        self.store.release_spool_if_done(message_id)
        return pickup_id
