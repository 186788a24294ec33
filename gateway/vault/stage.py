"""The pickup stage: encrypt the message for its recipient, queue the notification, and
settle the recipient, in one unit of work of the storage so a crash leaves no half-done
pickup."""

from __future__ import annotations

import email.parser
import email.policy

from gateway.config import Config
from gateway.storage.ids import new_pickup_id
from gateway.storage.protocols import QueueStore, Report, Route, StagedPickup
from gateway.vault.notify import build_notification, notification_language
from gateway.vault.retention import EXPIRES_HEADER, expiry_time

NOTIFICATION_REASON = "pickup notification"


class PickupStage:
    def __init__(self, config: Config, store: QueueStore) -> None:
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
        pickup_id = new_pickup_id()  # before the notification: it links to the pickup
        expires = self.expiry_for(message_id, received)
        language, zone = notification_language(self.store, rcpt,
                                               self.config.pickup.default_language)
        notification = build_notification(
            notify_from=self.config.notify.from_, sender=sender, recipient=rcpt,
            link=self.link(pickup_id), expires=expires,
            organization=self.config.pickup.organization, language=language, time_zone=zone,
            pickup_id=pickup_id,
        )
        return self.store.stage_pickup(StagedPickup(
            message_id, sender, rcpt, expires, pickup_id, f"stored for pickup: {reason}",
            Report(self.config.notify.from_, Route(rcpt, reason=NOTIFICATION_REASON),
                   notification)))
