"""Mail the portal sends itself: the verification code that proves a recipient reads
the mailbox a message was sent to. It never carries the secure message's subject or body."""

from __future__ import annotations

import email.policy
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Plain text mail: autoescaping would turn '&' in a link or name into '&amp;'.
_text_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                               undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def verification_email(*, notify_from: str, organization: str, to: str, code: str,
                       link: str, minutes: int, now: float) -> bytes:
    message = EmailMessage()
    message["From"] = formataddr((organization, notify_from))
    message["To"] = to
    message["Subject"] = f"Your verification code for {organization} secure messages"
    message["Date"] = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    message["Message-ID"] = make_msgid(domain=notify_from.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"  # no out-of-office replies to a robot
    message.set_content(_text_env.get_template("mail/verify_code.txt").render(
        organization=organization, code=code, link=link, minutes=minutes))
    return message.as_bytes(policy=email.policy.SMTP)
