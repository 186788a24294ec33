"""Pickup notifications: the email that tells a recipient a secure message is waiting.
It carries the link and the sender, never the message's subject or body.

Built to look (and be) genuine rather than like phishing: it names the organization and
the sender, says which web address the link goes to and that no password is ever asked
for by email, and carries nothing that tracks the reader: no remote image, no link but the
pickup link itself. The text part is one line per paragraph (no hard wrap mid-sentence:
mail programs wrap it to the screen). It is written in the recipient's language: the one
they chose in the portal, else pickup.default_language.
"""

from __future__ import annotations

import email.policy
import time
import urllib.parse
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from functools import cache

import jinja2

from gateway.ops.logs import notification_queued
from gateway.resources import TEMPLATES_DIR
from gateway.vault.unnotified import PICKUP_HEADER

TEMPLATES = TEMPLATES_DIR


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    from pickup import i18n  # the portal's catalogs and date formats

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    i18n.install(env)
    return env


def human_date(timestamp: float, language: str = "en", zone: str = "UTC") -> str:
    from pickup import i18n
    return i18n.format_time(timestamp, zone, language)


def notification_language(store: object, recipient: str, default: str) -> tuple[str, str]:
    """The recipient's saved language and time zone when they have a portal account (STORE
    is the whole storage in the gateway), else DEFAULT and UTC."""
    get_user = getattr(store, "get_user", None)
    user = get_user(recipient.strip().lower()) if callable(get_user) else None
    language = getattr(user, "language", "") or default
    return language, getattr(user, "time_zone", "") or "UTC"


def build_notification(*, notify_from: str, sender: str, recipient: str, link: str,
                       expires: float, organization: str, language: str = "en",
                       time_zone: str = "UTC", pickup_id: str = "") -> bytes:
    from pickup import i18n

    notification_queued(recipient, link)
    portal = urllib.parse.urlsplit(link)
    values = {"sender": sender, "link": link,
              "expires": human_date(expires, language, time_zone),
              "organization": organization, "recipient": recipient, "language": language,
              "portal_host": portal.hostname or "",
              "portal_root": f"{portal.scheme}://{portal.netloc}"}
    _ = i18n.gettext_for(language)
    message = EmailMessage()
    message["From"] = formataddr((organization, notify_from))
    message["To"] = recipient
    message["Subject"] = _("Secure message from %(sender)s at %(organization)s") % {
        "sender": sender, "organization": organization}
    message["Date"] = format_datetime(datetime.fromtimestamp(time.time(), timezone.utc))
    message["Message-ID"] = make_msgid(domain=notify_from.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    if pickup_id:  # which copy it announces, for the report to its sender if it bounces
        message[PICKUP_HEADER] = pickup_id
    message.set_content(_environment(False).get_template("mail/notification.txt").render(values))
    html = _environment(True).get_template("mail/notification.html").render(values)
    message.add_alternative(html, subtype="html")
    message["Content-Language"] = language  # after the parts: set_content drops Content-*
    return message.as_bytes(policy=email.policy.SMTP)
