"""Pickup notifications: the email that tells a recipient a secure message is waiting.
It carries the link and the sender, never the message's subject or body."""

from __future__ import annotations

import email.policy
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import jinja2

from gateway.ops.logs import notification_queued
from gateway.resources import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR
_text_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                               undefined=jinja2.StrictUndefined)
_html_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                               undefined=jinja2.StrictUndefined)


def human_date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%d %b %Y, %H:%M UTC")


def build_notification(*, notify_from: str, sender: str, recipient: str, link: str,
                       expires: float, organization: str) -> bytes:
    notification_queued(recipient, link)
    values = {"sender": sender, "link": link, "expires": human_date(expires),
              "organization": organization}
    message = EmailMessage()
    message["From"] = notify_from
    message["To"] = recipient
    message["Subject"] = f"Secure message from {sender}"
    message["Date"] = format_datetime(datetime.fromtimestamp(time.time(), timezone.utc))
    message["Message-ID"] = make_msgid(domain=notify_from.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_text_env.get_template("mail/notification.txt").render(values))
    message.add_alternative(_html_env.get_template("mail/notification.html").render(values),
                            subtype="html")
    return message.as_bytes(policy=email.policy.SMTP)
