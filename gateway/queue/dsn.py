"""Delivery status notifications (RFC 3464) for the envelope sender.

Only the original headers are returned (text/rfc822-headers): the body may be
confidential and must not travel back in plaintext.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from gateway.ops.metrics import dsn_built

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def status_of(reply: str, default: str = "5.0.0") -> str:
    match = _STATUS.search(reply)
    return match.group(1) if match else default


def _headers_of(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    return original if end < 0 else original[: end + 2]


def build_dsn(*, reporting_mta: str, sender: str, queue_id: str, original: bytes,
              failures: dict[str, str], arrival: float, delayed: bool = False,
              double_bounce: bool = False) -> bytes:
    """A multipart/report telling SENDER about FAILURES (recipient -> reply): not delivered,
    or with DELAYED, not delivered yet and still being retried. With DOUBLE_BOUNCE, SENDER
    is the postmaster and the undeliverable message was itself a bounce (null sender)."""
    dsn_built(delayed, double_bounce)
    boundary = f"=_sealgate_dsn_{secrets.token_hex(12)}"
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
    explanation += [f"  <{rcpt}>: {' '.join(reply.split())}" for rcpt, reply in failures.items()]
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
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
        *_status_fields(reporting_mta, queue_id, failures, arrival, delayed),
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(head).encode() + b"\r\n" + _headers_of(original) + tail


def _status_fields(reporting_mta: str, queue_id: str, failures: dict[str, str],
                   arrival: float, delayed: bool) -> list[str]:
    fields = [f"Reporting-MTA: dns; {reporting_mta}", f"X-Sealgate-Queue-ID: {queue_id}",
              f"Arrival-Date: {format_datetime(datetime.fromtimestamp(arrival, UTC))}", ""]
    for rcpt, reply in failures.items():
        action, default = ("delayed", "4.0.0") if delayed else ("failed", "5.0.0")
        fields += [f"Final-Recipient: rfc822; {rcpt}", f"Action: {action}",
                   f"Status: {status_of(reply, default)}",
                   f"Diagnostic-Code: smtp; {' '.join(reply.split())}", ""]
    return fields
