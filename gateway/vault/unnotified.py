"""Telling the original sender when a recipient cannot be told: the pickup notification
bounced, or is still deferred at delivery.delay_warning (say the recipient's domain enforces
an MTA-STS policy its own servers fail). The message is stored, but the recipient does not
know; without this only notify.from (the notification's own envelope sender) would hear.

The sender gets one report per recipient, a multipart/report (RFC 6522) from the null
sender: "delayed" when the notification is late, "failed" when it bounced, unless a
"delayed" one went first (once per recipient: the second would only repeat it). The
notification names its pickup in a header (PICKUP_HEADER), so the runner finds the copy,
and with it the sender and the audit trail, where what happened is written down (NOTIFIED,
NOTIFICATION_DELAYED, NOTIFICATION_FAILED): the sender's status page reads it from there.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.queue.dsn import RecipientReport, build_report, status_of
from gateway.storage.protocols import AuditEvent, Pickup

log = logging.getLogger("sealgate.unnotified")

PICKUP_HEADER = "X-Sealgate-Pickup"
NOTIFIED = "notified"
NOTIFICATION_DELAYED = "notification-delayed"
NOTIFICATION_FAILED = "notification-failed"
SENDER_TOLD = (NOTIFICATION_DELAYED, NOTIFICATION_FAILED)
_PICKUP_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@runtime_checkable
class NotificationRecords(Protocol):
    """What telling senders needs of the storage besides the queue (every back-end's
    Storage has it; the runner is typed for its QueueStore only)."""

    def get_pickup(self, pickup_id: str) -> Pickup | None: ...
    def audit(self, pickup_id: str, event: str, client: str = "", detail: str = "") -> None: ...
    def audit_events(self, pickup_id: str) -> list[AuditEvent]: ...


@dataclass(frozen=True)
class Unnotified:
    """A report for the original sender: the copy PICKUP was stored, its recipient not told
    (REPLY: what the recipient's mail server said to the notification)."""

    pickup: Pickup
    reply: str
    delayed: bool


def pickup_of_notification(headers: bytes) -> str | None:
    """The pickup id a notification's header section names, if it is well formed."""
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(headers)
    value = str(parsed.get(PICKUP_HEADER, "")).strip()
    return value if _PICKUP_ID.match(value) else None


def record_outcome(store: NotificationRecords, pickup_id: str, state: str, reply: str,
                   delay_reported: bool) -> Unnotified | None:
    """Write what happened to the notification of PICKUP_ID into its audit trail; the report
    the sender is owed, if any (none when the copy is gone or the sender was told before)."""
    pickup = store.get_pickup(pickup_id)
    if pickup is None or not pickup.sender:  # revoked or expired, or no one to tell
        return None
    if state == "delivered":
        store.audit(pickup_id, NOTIFIED, "", reply)
        return None
    if state == "deferred" and not delay_reported:
        return None
    told = any(e.event in SENDER_TOLD for e in store.audit_events(pickup_id))
    store.audit(pickup_id, NOTIFICATION_DELAYED if state == "deferred" else NOTIFICATION_FAILED,
                "", reply)
    return None if told else Unnotified(pickup, reply, delayed=state == "deferred")


def build_unnotified_report(*, reporting_mta: str, report: Unnotified, expires_text: str
                            ) -> bytes:
    """The multipart/report for REPORT.pickup.sender. Action "delayed" (4.x.x) or "failed"
    (the notification's status); no copy of the message itself, nor its headers: the spool
    is gone once it is stored, and the body is confidential."""
    pickup, reply = report.pickup, " ".join(report.reply.split())
    action, default = ("delayed", "4.0.0") if report.delayed else ("failed", "5.0.0")
    text = [
        f"This is the mail system at {reporting_mta}.",
        "",
        f"Your confidential message to <{pickup.recipient}> is stored securely for pickup,",
        "but the recipient has NOT been told about it: the email with the pickup link",
        "is still being retried." if report.delayed else "could not be delivered.",
        "",
        f"  <{pickup.recipient}>: {reply}",
        "",
        f"The stored message is deleted on {expires_text}. Let the recipient know another",
        "way, or send the message again to an address that can be reached.",
    ]
    return build_report(
        reporting_mta=reporting_mta, to=pickup.sender,
        subject=f"Stored, but the recipient was not told: {pickup.recipient}",
        queue_id=pickup.message_id, explanation=text, arrival=pickup.created, returned=None,
        recipients=[RecipientReport(
            pickup.recipient, action, status_of(reply, default), diagnostic=reply,
            extra=(("X-Sealgate-Stored-For-Pickup", "yes; recipient not notified"),))])
