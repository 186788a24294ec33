"""Delivery-security receipts: success DSNs (RFC 3464, Action delivered or relayed) that
tell the sender how each recipient's copy left, for a sender to file for compliance.

For a copy handed to an MX host: the host, the TLS version and cipher, and how the host
was authenticated (verdict.Authentication: DANE-EE, DANE-TA, MTA-STS enforce, PKIX and
host name, or not at all). For a copy stored for pickup: stored encrypted, the recipient
notified, and when it is destroyed. Both in the text for people and in per-recipient
fields of our own (`X-Sealgate-*`, RFC 3464 2.4 extension fields):

    X-Sealgate-Delivery: smtp | pickup
    X-Sealgate-TLS-Version: TLSv1.3 | none          (smtp)
    X-Sealgate-TLS-Cipher: TLS_AES_256_GCM_SHA384  (smtp, when TLS)
    X-Sealgate-TLS-Authentication: dane-ee | dane-ta | mta-sts | pkix | none  (smtp)
    X-Sealgate-Pickup-Expires: <RFC 5322 date>      (pickup)
    X-Sealgate-Pickup-Notification: queued          (pickup)

Only the original header section goes back, never the body (RFC 3461 4.3: RET is about
failed DSNs). A caller may add lines for people per message (`note`): the sender status
page with its revoke link, for one.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from gateway.ops.metrics import receipt_built
from gateway.queue.dsn import RecipientReport, Returned, build_report
from gateway.tls.verdict import Authentication

__all__ = ["AUTHENTICATION_TEXT", "HandedOver", "StoredForPickup", "build_receipt"]

# How the text for people names each way of authenticating the server.
AUTHENTICATION_TEXT = {
    Authentication.DANE_EE: "The server was authenticated by DANE-EE: its key matched the"
                            " domain's DNSSEC-signed TLSA record.",
    Authentication.DANE_TA: "The server was authenticated by DANE-TA: its certificate chains"
                            " to the trust anchor in the domain's DNSSEC-signed TLSA record.",
    Authentication.MTA_STS: "The server was authenticated by MTA-STS enforce: a certificate"
                            " from a trusted authority, for a host name the domain's MTA-STS"
                            " policy lists.",
    Authentication.PKIX: "The server was authenticated by PKIX: a certificate from a trusted"
                         " authority, for the host's name.",
    Authentication.NONE: "The server was not authenticated: its certificate was not checked.",
}
_INDENT = " " * 6
_WIDTH = 76


@dataclass(frozen=True)
class HandedOver:
    """A copy an MX host (or nexthop) took. RELAYED: the host does not offer DSN, so
    nobody after it will report (RFC 3461 6.2.1 c: Action relayed)."""

    rcpt: str
    host: str
    address: str
    reply: str
    tls_version: str | None
    cipher: str | None
    authentication: Authentication
    relayed: bool = False
    orcpt: str = ""

    @property
    def server_reply(self) -> str:
        """The host's reply without our "host[address] said:" in front of it."""
        return " ".join(self.reply.partition(" said: ")[2].split()) or self.reply

    def lines(self) -> list[str]:
        where = f"{self.host} [{self.address}]" if self.address else self.host
        verb = "relayed to" if self.relayed else "delivered to"
        if self.tls_version:
            how = [f"Encrypted with {self.tls_version} ({self.cipher or 'cipher unknown'}).",
                   AUTHENTICATION_TEXT[self.authentication]]
        else:
            how = ["Sent WITHOUT encryption: the server did not offer TLS."]
        if self.reply:
            how.append(f"Its reply: {self.server_reply}")
        if self.relayed:
            how.append("That server does not send delivery notifications: this is the last"
                       " report about this copy.")
        return [f"  <{self.rcpt}>: {verb} {where}", *_wrapped(how)]

    def report(self) -> RecipientReport:
        extra = [("X-Sealgate-Delivery", "smtp"),
                 ("X-Sealgate-TLS-Version", self.tls_version or "none")]
        if self.tls_version and self.cipher:
            extra.append(("X-Sealgate-TLS-Cipher", self.cipher))
        authentication = self.authentication if self.tls_version else Authentication.NONE
        extra.append(("X-Sealgate-TLS-Authentication", authentication.value))
        return RecipientReport(self.rcpt, "relayed" if self.relayed else "delivered", "2.0.0",
                               self.server_reply, self.orcpt, self.host, tuple(extra))


@dataclass(frozen=True)
class StoredForPickup:
    """A copy stored encrypted for the recipient to collect in the portal: for Sealgate
    its final delivery (Action delivered)."""

    rcpt: str
    expires: float
    orcpt: str = ""

    @property
    def expiry(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.expires, UTC))

    def lines(self) -> list[str]:
        day = datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return [f"  <{self.rcpt}>: stored encrypted (AES-256-GCM) for pickup", *_wrapped([
            "A notification is on its way to the recipient, who collects the message in the"
            " portal after proving they own the address.",
            f"It will be destroyed on {day}, read or not."])]

    def report(self) -> RecipientReport:
        return RecipientReport(self.rcpt, "delivered", "2.0.0", "", self.orcpt,
                               extra=(("X-Sealgate-Delivery", "pickup"),
                                      ("X-Sealgate-Pickup-Expires", self.expiry),
                                      ("X-Sealgate-Pickup-Notification", "queued")))


def _wrapped(sentences: list[str]) -> list[str]:
    return [line for sentence in sentences
            for line in textwrap.wrap(sentence, _WIDTH, initial_indent=_INDENT,
                                      subsequent_indent=_INDENT)]


def build_receipt(*, reporting_mta: str, sender: str, queue_id: str, original: bytes,
                  arrival: float, copies: Sequence[HandedOver | StoredForPickup],
                  envid: str = "", note: Sequence[str] = ()) -> bytes:
    """A receipt to SENDER for COPIES of the message QUEUE_ID; ORIGINAL: its header
    section (a body in it is never returned). NOTE: lines for people added after the
    recipients (one paragraph per message, e.g. a link to the sender's status page)."""
    receipt_built()
    explanation = [f"This is the mail system at {reporting_mta}.", "",
                   "Your message left this gateway as follows:", ""]
    for copy in copies:
        explanation += [*copy.lines(), ""]
    if note:
        explanation += [*note, ""]
    explanation.append("Keep this receipt as the record of how each copy was sent.")
    return build_report(reporting_mta=reporting_mta, to=sender,
                        subject="Delivery receipt: how your message was sent",
                        queue_id=queue_id, explanation=explanation,
                        recipients=[copy.report() for copy in copies], arrival=arrival,
                        returned=Returned(original), envid=envid)
