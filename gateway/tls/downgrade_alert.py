"""The admin alert about a TLS downgrade (gateway/tls/downgrade.py): an email to
`alerts.to`, queued like a DSN (null envelope sender, so a failing alert cannot bounce
back and forth), saying what changed, what Sealgate does about it and how to clear it."""

from __future__ import annotations

import email.policy
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from gateway.classify.internal import report_route
from gateway.storage.protocols import QueueStore
from gateway.tls.downgrade import Downgrade

__all__ = ["DowngradeMailer", "build_alert"]

log = logging.getLogger("sealgate.tls")
ALERT_REASON = "TLS downgrade alert"


def build_alert(downgrade: Downgrade, *, to: str, alert_from: str, gateway: str) -> bytes:
    until = datetime.fromtimestamp(downgrade.hold_until, timezone.utc)
    message = EmailMessage()
    message["From"] = alert_from
    message["To"] = to
    message["Subject"] = f"Sealgate: TLS downgrade at {downgrade.host} ({downgrade.kind.value})"
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain=alert_from.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"{downgrade.detail}.\n\n"
        "Someone between this gateway and that host may be removing STARTTLS or presenting"
        " a certificate of their own; or the host's administrators changed it.\n\n"
        f"What {gateway} does: confidential mail is not delivered to {downgrade.host} (it goes"
        " to another MX host or is stored for pickup); other mail waits until"
        f" {until:%Y-%m-%d %H:%M UTC}, then goes with opportunistic TLS as before.\n\n"
        "If the change was legitimate, clear what Sealgate remembers about the host:\n\n"
        f"    sealgate tls forget {downgrade.host}\n\n"
        "This alert is sent once per host and day.\n")
    return message.as_bytes(policy=email.policy.SMTP)


class DowngradeMailer:
    """Queues the alert to TO through the normal queue (it is delivered like any mail)."""

    def __init__(self, store: QueueStore, *, to: str, alert_from: str, gateway: str,
                 internal_domains: Iterable[str] = ()) -> None:
        self.store = store
        self.to = to
        self.alert_from = alert_from
        self.gateway = gateway
        self.internal_domains = tuple(internal_domains)

    def __call__(self, downgrade: Downgrade) -> None:
        content = build_alert(downgrade, to=self.to, alert_from=self.alert_from,
                              gateway=self.gateway)
        route = report_route(self.to, ALERT_REASON, self.internal_domains)
        queue_id = self.store.enqueue("", [route], content)
        log.info("%s: TLS downgrade alert about %s queued to %s", queue_id, downgrade.host,
                 self.to, extra={"event": "tls-downgrade-alert", "queue_id": queue_id,
                                 "recipient": self.to, "host": downgrade.host})
