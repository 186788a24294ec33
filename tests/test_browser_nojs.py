"""The core flows with JavaScript switched off, in a real browser over a running gateway:
register, read, reply with an attachment, print view, sign-in errors, forgot password with
the emailed reset link, and the error page.

Screenshots of each page at desktop and phone widths go to tests/artifacts/.
"""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

from playwright.sync_api import FilePayload

from tests.browser import (
    Watch,
    chromium,
    error_next_to,
    frame_height,
    frame_text,
    link_in,
    notified_link,
    register,
    secure_html_message,
    shoot,
)
from tests.conftest import wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess

NEW_PASSWORD = "four unrelated words here"


def wait_for_subject(mx: FakeMX, rcpt: str, subject: str) -> bytes:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in reversed(mx.messages):
            parsed = email.message_from_bytes(message.content, policy=email.policy.default)
            if rcpt in message.rcpt_tos and subject in str(parsed["Subject"]):
                return message.content
        time.sleep(0.05)
    raise AssertionError(f"no mail '{subject}' for {rcpt}")


def test_core_flows_without_javascript(gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
                                       unique: str, tmp_path: Path) -> None:
    rcpt, sender = f"{unique}@plain.test", f"doctor-{unique}@clinic.test"
    gateway.send(secure_html_message(sender, rcpt, f"<nojs-{unique}@clinic.test>",
                                     text=f"Scan booked for Tuesday. {unique}"))
    link = notified_link(gateway, mx_hosts["plain"], rcpt)

    with chromium(tmp_path / "profile", javascript=False) as context:
        page = context.new_page()
        watch = Watch()
        watch.attach(page)
        page.goto(link)
        register(page, mx_hosts["plain"], rcpt)
        page.wait_for_url(link)

        # Without script: no detected time zone (UTC until changed), the frame keeps its
        # fixed height and scrolls, and still shows the message.
        assert "15:04 UTC" in page.locator(".message-headers").inner_text()
        assert f"Scan booked for Tuesday. {unique}" in frame_text(page)
        assert frame_height(page) == 384
        assert page.locator("a:has-text('logo.png')").count() == 0  # shown in the text instead

        # An empty reply is refused at the field; then a reply with an attachment goes.
        page.click("text=Send reply")
        assert "Write your reply" in page.locator(".field:has(#text) .error-message").inner_text()
        assert page.get_attribute("#text", "aria-invalid") == "true"
        shoot(page, "reply-error")
        page.fill("#text", "I can come on Tuesday.")
        page.set_input_files("#attachments", files=[
            FilePayload(name="insurance card.jpg", mimeType="image/jpeg",
                        buffer=b"\xff\xd8\xff\xe0jpeg")])
        page.click("text=Send reply")
        page.wait_for_selector("text=Your reply was sent securely")
        relayed = wait_for_mail(mx_hosts["relay"], sender)
        assert b"I can come on Tuesday." in relayed.content
        assert b"insurance card.jpg" in relayed.content

        # Print view: the Print button needs script, the hint does not.
        page.click("text=Print")
        assert not page.is_visible("button[data-print]")
        assert page.is_visible("text=Use your browser's Print command")
        assert "Scan booked for Tuesday." in page.inner_text("main")

        # Sign-in errors are shown next to the field.
        page.goto(link)
        page.click("text=Sign out")
        page.fill("#address", rcpt)
        page.fill("#password", "not my password")
        page.click("button:has-text('Sign in')")
        assert "not right" in error_next_to(page, "password")
        shoot(page, "login-error")

        # Forgot password: a link by email, which opens a form; the new password signs in.
        page.goto(link)
        assert "Sign in to read your secure message" in page.inner_text("h1")
        shoot(page, "login-message")
        page.click("text=Forgot your password?")
        assert page.input_value("#address") == rcpt
        shoot(page, "forgot")
        page.click("text=Email me a link")
        page.wait_for_selector("text=Check your email")
        shoot(page, "forgot-sent")
        mail = wait_for_subject(mx_hosts["plain"], rcpt, "Reset your password")
        reset = link_in(mail, rf"{gateway.portal_url}/reset/[A-Za-z0-9_-]+")
        page.goto(reset)
        shoot(page, "reset")
        page.fill("#password", "password1")
        page.fill("#password_confirm", "password1")
        page.click("text=Save new password")
        assert "most common passwords" in error_next_to(page, "password")
        page.fill("#password", NEW_PASSWORD)
        page.fill("#password_confirm", NEW_PASSWORD)
        page.click("text=Save new password")
        page.wait_for_url(link)
        assert "I can come on Tuesday." in page.inner_text("article.message-reply")
        wait_for_subject(mx_hosts["plain"], rcpt, "was changed")

        # The spent link, and a message that does not exist, get calm pages.
        page.goto(reset)
        assert "This link no longer works" in page.inner_text("h1")
        page.goto(f"{gateway.portal_url}/m/NoSuchMessageAtAll0000000000")
        assert "This message is not available" in page.inner_text("h1")
        assert "Traceback" not in page.content()
        shoot(page, "not-found")
        watch.assert_clean()
