"""The recipient's whole journey in a real browser (Debian's Chromium via Playwright), over
a running gateway: a [secure] message with an attachment for a domain without TLS is
stored, the notification arrives at the fake MX, and the recipient opens the link,
registers with the emailed code, reads, downloads, replies with an attachment (the reply
reaches the internal relay, threaded), signs out and in, and changes the time zone.

Screenshots of each page at desktop and phone widths go to tests/artifacts/.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from playwright.sync_api import FilePayload

from tests.browser import (
    Watch,
    chromium,
    error_next_to,
    frame_height,
    frame_text,
    mail_text,
    notified_link,
    register,
    secure_html_message,
    shoot,
)
from tests.conftest import wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import PASSWORD, PDF, wait_for_code

NOTES = b"My blood pressure readings:\n120/80\n118/79\n"
XSS_SUBJECT = '<img src=x onerror=alert("subject")>'
XSS_HTML = (
    '<p>Corpus</p><script>alert("script")</script><img src=x onerror=alert("img")>'
    '<svg onload=alert("svg")></svg><iframe srcdoc="<script>alert(1)</script>"></iframe>'
    '<a href="javascript:alert(\'link\')" id="js-link">click</a>'
    '<math><mtext><table><mglyph><style><img src=x onerror=alert("mxss")>'
    '<form action="javascript:alert(1)"><button id="go">go</button></form>'
    '<div style="background:url(https://tracker.invalid/t.gif)">bg</div>'
    '<img src="https://tracker.invalid/pixel.gif">'
)


def test_recipient_journey_in_a_real_browser(gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
                                             unique: str, tmp_path: Path) -> None:
    rcpt, sender = f"{unique}@plain.test", f"doctor-{unique}@clinic.test"
    original_id = f"<results-{unique}@clinic.test>"
    gateway.send(secure_html_message(sender, rcpt, original_id, text=f"Biopsy: benign. {unique}"))
    link = notified_link(gateway, mx_hosts["plain"], rcpt)

    with chromium(tmp_path / "profile", time_zone="America/New_York") as context:
        page = context.new_page()
        watch = Watch()
        watch.attach(page)

        # First visit: the address is filled in and cannot be changed.
        page.goto(link)
        assert page.input_value("#address") == rcpt
        assert page.get_attribute("#address", "readonly") is not None
        shoot(page, "start")

        # The code from the email, a name and a password; a mistake shows at its field.
        page.click("text=Email me a verification code")
        page.wait_for_url("**/verify?notice=sent")
        shoot(page, "verify")
        page.fill("#code", wait_for_code(mx_hosts["plain"], rcpt))
        page.fill("#first_name", "Pat")
        page.fill("#last_name", "Doe")
        page.fill("#password", PASSWORD)
        page.fill("#password_confirm", "not the same words")
        page.click("text=Continue to my message")
        assert "not the same" in error_next_to(page, "password_confirm")
        shoot(page, "verify-error")
        page.fill("#password", PASSWORD)
        page.fill("#password_confirm", PASSWORD)
        page.click("text=Continue to my message")
        page.wait_for_url(link)

        # Reading: headers, the HTML body in its sandboxed frame with its inline image,
        # times in the zone the browser reported.
        assert page.locator("h1").inner_text() == "Your results"
        assert "Biopsy: benign. " + unique in frame_text(page)
        frame = page.frame_locator("iframe.message-frame").first
        assert frame.locator("img").evaluate("img => img.complete && img.naturalWidth") == 8
        height = frame_height(page)
        assert 40 < height < 384, "the frame is sized to its content by portal.js"
        assert "10:04 EST" in page.locator(".message-headers").inner_text()
        shoot(page, "message")

        with page.expect_download() as download:
            page.click("a:has-text('report.pdf')")
        assert Path(download.value.path()).read_bytes() == PDF
        assert download.value.suggested_filename == "report.pdf"

        # Too much to attach: script says so at the field, before uploading anything. (The
        # page's limit is the server's, 100 MB; lowered here to keep the test small.)
        assert page.get_attribute("#attachments", "data-max-total") == str(100 * 1024 * 1024)
        page.evaluate("document.getElementById('attachments').dataset.maxTotal = '1000'")
        page.fill("#text", "Thank you, doctor. My readings are attached.")
        page.set_input_files("#attachments", files=[
            FilePayload(name=name, mimeType="application/octet-stream", buffer=b"x" * 800)
            for name in ("a.bin", "b.bin")])
        too_large = page.locator(".field:has(#attachments) [role=alert]").inner_text()
        assert "add up to" in too_large and "at most" in too_large
        page.click("text=Send reply")
        assert page.url == link and page.locator("article.message-reply").count() == 0
        shoot(page, "reply-too-large")
        page.evaluate("document.getElementById('attachments').dataset.maxTotal = '104857600'")

        # A secure reply with an attachment, kept in the thread.
        page.set_input_files("#attachments", files=[
            FilePayload(name="readings.txt", mimeType="text/plain", buffer=NOTES)])
        page.click("text=Send reply")
        page.wait_for_selector("text=Your reply was sent securely")
        reply = page.locator("article.message-reply")
        assert "My readings are attached." in reply.inner_text()
        assert "readings.txt" in reply.inner_text()
        shoot(page, "reply-sent")

        # ...and it reaches the original sender through the organization's relay, threaded.
        relayed = wait_for_mail(mx_hosts["relay"], sender)
        assert relayed.mail_from == rcpt
        sent = email.message_from_bytes(relayed.content, policy=email.policy.default)
        assert sent["In-Reply-To"] == original_id
        assert original_id in str(sent["References"]).split()
        assert str(sent["Subject"]) == "Re: Your results"
        assert sent["From"].addresses[0].addr_spec == rcpt
        attachments = {part.get_filename(): part.get_content()
                       for part in sent.iter_attachments()}
        assert attachments == {"readings.txt": NOTES.decode()}
        assert "My readings are attached." in mail_text(relayed.content)

        # The print view: the thread without navigation.
        page.click("text=Print")
        page.wait_for_url("**/print")
        assert page.is_visible("button[data-print]")
        assert page.locator(".site-header").count() == 0
        assert "Biopsy: benign." in page.inner_text("main")
        shoot(page, "print")
        page.go_back()

        # Sign out; sign in again with address and password.
        page.click("text=Sign out")
        page.wait_for_url("**/login?notice=signed-out")
        shoot(page, "signed-out")
        page.fill("#address", rcpt)
        page.fill("#password", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(f"{gateway.portal_url}/")
        inbox = page.locator(".inbox-item")
        assert inbox.count() == 1
        assert "Replied" in inbox.inner_text() and "deleted on" in inbox.inner_text()
        shoot(page, "inbox")

        # Time zone: changed in the account, reflected in every time stamp.
        page.click("nav >> text=Account")
        page.wait_for_url("**/account")
        assert page.input_value("#time_zone") == "America/New_York"
        shoot(page, "account")
        page.select_option("#time_zone", "Asia/Tokyo")
        page.click("text=Save time zone")
        page.wait_for_selector("text=Times are now shown in Asia/Tokyo")
        page.goto(link)
        assert "24 Nov 2026, 00:04 JST" in page.locator(".message-headers").first.inner_text()
        assert "JST" in page.locator("article.message-reply .message-headers").inner_text()
        watch.assert_clean()


def test_hostile_message_runs_nothing_in_the_browser(gateway: GatewayProcess,
                                                     mx_hosts: dict[str, FakeMX], unique: str,
                                                     tmp_path: Path) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(secure_html_message("doctor@clinic.test", rcpt, f"<xss-{unique}@clinic.test>",
                                     subject=f"[secure] {XSS_SUBJECT}", html=XSS_HTML))
    link = notified_link(gateway, mx_hosts["plain"], rcpt)
    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        watch = Watch()
        watch.attach(page)
        page.goto(link)
        register(page, mx_hosts["plain"], rcpt)
        page.wait_for_url(link)
        assert page.locator("h1").inner_text() == XSS_SUBJECT
        assert "Corpus" in frame_text(page)
        frame = page.frame_locator("iframe.message-frame").first
        frame.locator("#js-link, a:has-text('click')").first.click()  # disarmed: no href
        for url in (link, f"{link}/print", f"{link}/body", gateway.portal_url + "/"):
            page.goto(url)
            page.wait_for_timeout(100)
            assert page.evaluate("() => document.querySelectorAll('script:not([src])').length") == 0
        watch.assert_clean()  # no dialog, no script error, no CSP violation
