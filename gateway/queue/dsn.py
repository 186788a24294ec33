"""Delivery status notifications (RFC 3464) for the envelope sender.

One builder (`build_report`) writes every kind: failures and delays (`build_dsn`), and the
success receipts of gateway/queue/receipt.py. What goes back of the original message:
only its header section (text/rfc822-headers), unless the sender asked RET=FULL for a
failure of mail that is not confidential (RFC 3461 4.3: RET applies to failed DSNs only);
confidential content never travels back in plaintext.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from gateway.ops.metrics import dsn_built

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def status_of(reply: str, default: str = "5.0.0") -> str:
    match = _STATUS.search(reply)
    return match.group(1) if match else default


def headers_of(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    return original if end < 0 else original[: end + 2]


@dataclass(frozen=True)
class RecipientReport:
    """The per-recipient fields of one recipient (RFC 3464 2.3); EXTRA: fields of our own
    (X-Sealgate-...), in order."""

    rcpt: str
    action: str  # failed, delayed, delivered, relayed
    status: str
    diagnostic: str = ""  # the reply, for Diagnostic-Code
    orcpt: str = ""       # "addr-type;address" from ORCPT: Original-Recipient
    remote_mta: str = ""  # the host that took it (delivered, relayed)
    extra: tuple[tuple[str, str], ...] = ()

    def fields(self) -> list[str]:
        lines = []
        if self.orcpt:
            addr_type, _, address = self.orcpt.partition(";")
            lines.append(f"Original-Recipient: {addr_type}; {_one_line(address)}")
        lines += [f"Final-Recipient: rfc822; {self.rcpt}", f"Action: {self.action}",
                  f"Status: {self.status}"]
        if self.remote_mta:
            lines.append(f"Remote-MTA: dns; {self.remote_mta}")
        if self.diagnostic:
            lines.append(f"Diagnostic-Code: smtp; {_one_line(self.diagnostic)}")
        return lines + [f"{name}: {_one_line(value)}" for name, value in self.extra]


@dataclass(frozen=True)
class Returned:
    """What of the original goes back: its header section, or with FULL the message."""

    content: bytes
    full: bool = False


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_report(*, reporting_mta: str, to: str, subject: str, queue_id: str,
                 explanation: Sequence[str], recipients: Sequence[RecipientReport],
                 arrival: float, returned: Returned | None, envid: str = "") -> bytes:
    """A multipart/report (report-type delivery-status) to TO: EXPLANATION as the text for
    people, RECIPIENTS as the machine-readable part, then RETURNED (None: nothing of the
    original goes back)."""
    boundary = f"=_sealgate_dsn_{secrets.token_hex(12)}"
    message_fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        message_fields.append(f"Original-Envelope-Id: {_one_line(envid)}")
    message_fields += [f"X-Sealgate-Queue-ID: {queue_id}",
                       f"Arrival-Date: {format_datetime(datetime.fromtimestamp(arrival, UTC))}",
                       ""]
    for recipient in recipients:
        message_fields += [*recipient.fields(), ""]
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        *explanation,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *message_fields,
    ]
    if returned is None:
        return "\r\n".join([*head, f"--{boundary}--", ""]).encode()
    kind = "message/rfc822" if returned.full else "text/rfc822-headers"
    content = returned.content if returned.full else headers_of(returned.content)
    head += [f"--{boundary}", f"Content-Type: {kind}", ""]
    tail = f"\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(head).encode() + b"\r\n" + content + tail


def build_dsn(*, reporting_mta: str, sender: str, queue_id: str, original: bytes,
              failures: dict[str, str], arrival: float, delayed: bool = False,
              double_bounce: bool = False, envid: str = "",
              orcpts: dict[str, str] | None = None, full: bool = False) -> bytes:
    """A multipart/report telling SENDER about FAILURES (recipient -> reply): not delivered,
    or with DELAYED, not delivered yet and still being retried. With DOUBLE_BOUNCE, SENDER
    is the postmaster and the undeliverable message was itself a bounce (null sender).
    ENVID and ORCPTS (recipient -> ORCPT): what the sender gave (RFC 3461); FULL: ORIGINAL
    is the whole message and goes back whole (the caller decides it may)."""
    dsn_built(delayed, double_bounce)
    explanation = [f"This is the mail system at {reporting_mta}.", ""]
    if double_bounce:
        explanation += [f"A message with an empty envelope sender (a bounce), queue id {queue_id},",
                        "could not be delivered. Nobody else was told; its headers are attached.",
                        ""]
        subject = f"Postmaster Copy: Undeliverable bounce {queue_id}"
    elif delayed:
        explanation += ["Your message could not be delivered yet to these recipients.",
                        "It is still being retried; you do not need to send it again.", ""]
        subject = "Delayed Mail (still being retried)"
    else:
        explanation += ["Your message could not be delivered to these recipients:", ""]
        subject = "Undelivered Mail Returned to Sender"
    explanation += [f"  <{rcpt}>: {_one_line(reply)}" for rcpt, reply in failures.items()]
    action, default = ("delayed", "4.0.0") if delayed else ("failed", "5.0.0")
    recipients = [RecipientReport(rcpt, action, status_of(reply, default), reply,
                                  (orcpts or {}).get(rcpt, ""))
                  for rcpt, reply in failures.items()]
    return build_report(reporting_mta=reporting_mta, to=sender, subject=subject,
                        queue_id=queue_id, explanation=explanation, recipients=recipients,
                        arrival=arrival, returned=Returned(original, full and not delayed),
                        envid=envid)
