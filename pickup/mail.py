"""Mail the portal sends itself: verification codes, password-reset links and notices of
account changes. None of it ever carries a secure message's subject or body.

Templates come from pickup.templates_dir first (mail/NAME), then from the package, so an
organization can reword them without editing the package.
"""

from __future__ import annotations

import email.policy
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from gateway.resources import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR


def template_loader(override_dir: str, package_dir: Path) -> jinja2.BaseLoader:
    """The override directory first (when configured), then the package's templates."""
    loaders: list[jinja2.BaseLoader] = []
    if override_dir:
        loaders.append(jinja2.FileSystemLoader(override_dir))
    loaders.append(jinja2.FileSystemLoader(package_dir))
    return jinja2.ChoiceLoader(loaders)


@cache
def mail_environment(templates_dir: str) -> jinja2.Environment:
    from pickup import i18n  # i18n needs gateway.config, which this module must not

    # Plain text mail: autoescaping would turn '&' in a link or name into '&amp;'.
    env = jinja2.Environment(
        loader=template_loader(templates_dir, TEMPLATES), autoescape=False,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    i18n.install(env)
    return env


class Mailer:
    def __init__(self, notify_from: str, organization: str, templates_dir: str = "") -> None:
        self.notify_from = notify_from
        self.organization = organization
        self.env = mail_environment(templates_dir)

    def compose(self, *, to: str, subject: str, template: str, now: float, language: str,
                **values: Any) -> bytes:
        message = EmailMessage()
        message["From"] = formataddr((self.organization, self.notify_from))
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.fromtimestamp(now, timezone.utc))
        message["Message-ID"] = make_msgid(domain=self.notify_from.rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"  # no out-of-office replies to a robot
        message.set_content(self.env.get_template(f"mail/{template}").render(
            organization=self.organization, address=to, language=language, **values))
        message["Content-Language"] = language  # after set_content, which drops Content-*
        return message.as_bytes(policy=email.policy.SMTP)

    def localized_subject(self, language: str, text: str) -> str:
        from pickup import i18n
        return i18n.gettext_for(language)(text) % {"organization": self.organization}

    def verification(self, to: str, code: str, link: str, minutes: int, now: float,
                     language: str = "en") -> bytes:
        return self.compose(
            to=to, subject=self.localized_subject(
                language, "Your verification code for %(organization)s secure messages"),
            template="verify_code.txt", now=now, language=language, code=code, link=link,
            minutes=minutes)

    def sign_in_code(self, to: str, code: str, link: str, minutes: int, now: float,
                     language: str = "en") -> bytes:
        return self.compose(
            to=to, subject=self.localized_subject(
                language, "Your sign-in code for %(organization)s secure messages"),
            template="sign_in_code.txt", now=now, language=language, code=code, link=link,
            minutes=minutes)

    def password_reset(self, to: str, link: str, minutes: int, now: float,
                       language: str = "en") -> bytes:
        return self.compose(
            to=to, subject=self.localized_subject(
                language, "Reset your password for %(organization)s secure messages"),
            template="password_reset.txt", now=now, language=language, link=link,
            minutes=minutes)

    def registered(self, to: str, when: str, link: str, now: float,
                   language: str = "en") -> bytes:
        return self.compose(
            to=to, subject=self.localized_subject(
                language, "Your account for %(organization)s secure messages"),
            template="registered.txt", now=now, language=language, when=when, link=link)

    def password_changed(self, to: str, when: str, link: str, now: float,
                         language: str = "en") -> bytes:
        return self.compose(
            to=to, subject=self.localized_subject(
                language, "Your password for %(organization)s secure messages was changed"),
            template="password_changed.txt", now=now, language=language, when=when, link=link)
