"""Sending with DSN parameters (RFC 3461) and reading the reports that come back (RFC 3464),
for the tests of the DSN extension and its receipts."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import time
from collections.abc import Sequence
from email.message import EmailMessage, Message

from tests.gateway_process import GatewayProcess


def send_with_dsn(gateway: GatewayProcess, message: EmailMessage,
                  rcpts: dict[str, Sequence[str]], mail_options: Sequence[str] = ()) -> str:
    """Submit MESSAGE from its From to RCPTS (address -> its RCPT parameters) with
    MAIL_OPTIONS; returns the queue id."""
    with smtplib.SMTP(gateway.host, gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        code, reply = client.mail(str(message["From"]), list(mail_options))
        assert code == 250, (code, reply)
        for rcpt, options in rcpts.items():
            code, reply = client.rcpt(rcpt, list(options))
            assert code == 250, (code, reply)
        code, reply = client.data(message.as_bytes(policy=email.policy.SMTP))
        assert code == 250, (code, reply)
        return reply.decode().rsplit(" ", 1)[1]


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


def wait_until_settled_with_nothing_for(gateway: GatewayProcess, queue_id: str, sender: str,
                                        timeout: float = 30.0) -> None:
    """Wait until every recipient of QUEUE_ID is settled and nothing waits for SENDER: a
    report is queued in the commit that settles what it reports, so by then any report
    for SENDER has been delivered."""
    deadline = time.monotonic() + timeout
    while True:
        shown = json.loads(gateway.cli("queue", "show", queue_id, "--json").stdout)
        settled = all(r["state"] in SETTLED for r in shown["recipients"])
        waiting = json.loads(gateway.cli("queue", "list", "--json").stdout)
        if settled and not [w for w in waiting if w["rcpt"] == sender]:
            return
        assert time.monotonic() < deadline, (shown, waiting)
        time.sleep(0.2)


SETTLED = ("delivered", "pickup", "bounced")
