"""Sending with DSN parameters (RFC 3461) and reading the reports that come back (RFC 3464),
for the tests of the DSN extension and its receipts."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage, Message

from tests.gateway_process import GatewayProcess


def send_with_dsn(gateway: GatewayProcess, message: EmailMessage, rcpts: list[str],
                  mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = ()) -> str:
    """Submit MESSAGE from its From to RCPTS, the same RCPT_OPTIONS on each; the 250 reply."""
    with smtplib.SMTP(gateway.host, gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        code, reply = client.mail(str(message["From"]), list(mail_options))
        assert code == 250, (code, reply)
        for rcpt in rcpts:
            code, reply = client.rcpt(rcpt, list(rcpt_options))
            assert code == 250, (code, reply)
        code, reply = client.data(message.as_bytes(policy=email.policy.SMTP))
        assert code == 250, (code, reply)
        return reply.decode()


def report_of(raw: bytes) -> Message:
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    return report


def status_blocks(raw: bytes) -> list[dict[str, str]]:
    """The message/delivery-status part: the per-message block, then one per recipient."""
    status = next(p for p in report_of(raw).walk()
                  if p.get_content_type() == "message/delivery-status")
    return [{k: str(v) for k, v in block.items()} for block in status.get_payload()]


def readable_text(raw: bytes) -> str:
    part = next(p for p in report_of(raw).walk() if p.get_content_type() == "text/plain")
    return str(part.get_content())


def returned_part(raw: bytes) -> Message:
    """The third part: the original's header section, or the whole message."""
    return report_of(raw).get_payload()[2]
