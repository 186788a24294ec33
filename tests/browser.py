"""Browser tests' plumbing: Debian's Chromium driven by Playwright, a screenshot helper
that also checks the page on a 360 px phone, checks every page must pass, and the
recipient's steps in the browser (the notification's link, registering, the message frame).

Playwright's own browser downloads are never used (`playwright install` is not run
anywhere): the tests drive /usr/bin/chromium, which .ci/run installs with apt-get. When it
is missing the tests fail, loudly; they never skip.
"""

from __future__ import annotations

import email
import email.policy
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    ViewportSize,
    sync_playwright,
)

from tests.conftest import wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import PASSWORD, PDF, wait_for_code

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# axe-core, the npm package, which scripts/test installs into .axe/ (never fetched at run time).
AXE_JS = Path(__file__).resolve().parent.parent / ".axe/node_modules/axe-core/axe.min.js"
# WCAG 2.2 A and AA, and the earlier versions it includes.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=360, height=740)


def require_chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
                    "(`apt-get install chromium`, which .ci/run does). They must run, not skip.")
    return str(CHROMIUM)


@dataclass
class Watch:
    """What a page did that no portal page should: script errors, CSP violations, dialogs."""

    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        if message.type not in ("error", "warning"):
            return
        # A page answered with 400 or 404 on purpose (a form with errors, a missing
        # message) is logged as a failed load of the page itself: that one is expected.
        if (message.text.startswith("Failed to load resource") and
                message.location.get("url") == page.url):
            return
        self.problems.append(f"console {message.type}: {message.text} "
                             f"({message.location.get('url')})")

    def _dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@contextmanager
def chromium(profile: Path, javascript: bool = True, time_zone: str = "America/New_York",
             locale: str = "en-GB") -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh user data dir at PROFILE."""
    executable = require_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            java_script_enabled=javascript, timezone_id=time_zone, locale=locale,
            viewport=DESKTOP, accept_downloads=True)
        # axe-core needs script; a JavaScript-off context cannot run it (see assert_accessible)
        context.sealgate_javascript = javascript  # type: ignore[attr-defined]
        try:
            yield context
        finally:
            context.close()


def shoot(page: Page, name: str) -> None:
    """Screenshots of PAGE at desktop and phone widths (tests/artifacts/NAME-*.png), and the
    checks every page must pass: nothing wider than a 360 px phone, every field labelled,
    and no axe-core violation of WCAG 2.2 AA at either width."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    assert_accessible(page, f"{name} (desktop)")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(50)  # let a resized message frame settle
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: {width} px wide on a {PHONE['width']} px phone"
    assert_fields_labelled(page, name)
    assert_accessible(page, f"{name} (phone)")
    page.set_viewport_size(DESKTOP)


def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: the browser tests run axe-core, which scripts/test "
                    "installs with npm (npm install --prefix .axe axe-core). They must run.")
    return AXE_JS.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.2 A/AA violations on PAGE as it is now, one line each. axe is put
    in by Playwright's evaluate (DevTools), which the page's CSP does not govern, so the
    page keeps its real policy. The message body frame is the sender's HTML, not ours: it
    is left out (its document is checked where it opens on its own)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source() + "\n;undefined")
    found: list[str] = page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                iframes: false, resultTypes: ['violations']});
        return result.violations.map(v => `${v.id} (${v.impact}): ${v.help}: ` +
            v.nodes.map(n => n.target.join(' ')).slice(0, 5).join(', '));
    }""", AXE_TAGS)
    return found


def assert_accessible(page: Page, name: str) -> None:
    """No axe-core violation on PAGE. Pages seen with JavaScript off are checked where the
    same page is shot with it on (test_browser_journey, test_browser_recipients)."""
    if not getattr(page.context, "sealgate_javascript", True):
        return
    violations = axe_violations(page)
    assert violations == [], f"{name}: axe-core found:\n" + "\n".join(violations)


def assert_fields_labelled(page: Page, name: str) -> None:
    unlabelled = page.evaluate("""() => Array.from(
        document.querySelectorAll('input:not([type=hidden]), select, textarea'))
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map(el => el.name || el.id)""")
    assert unlabelled == [], f"{name}: fields without a label: {unlabelled}"


def error_next_to(page: Page, field_id: str) -> str:
    """The error message shown with FIELD_ID, which must sit in the field's own block and be
    announced with it (aria-describedby)."""
    block = page.locator(f".field:has(#{field_id})")
    message = block.locator(".error-message").inner_text()
    described = page.get_attribute(f"#{field_id}", "aria-describedby") or ""
    assert f"{field_id}-error" in described.split()
    assert page.get_attribute(f"#{field_id}", "aria-invalid") == "true"
    return message


def mail_text(content: bytes) -> str:
    message = email.message_from_bytes(content, policy=email.policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(content: bytes, pattern: str) -> str:
    found = re.search(pattern, mail_text(content))
    assert found, f"no link matching {pattern} in the mail"
    return found.group(0)


def tiny_png() -> bytes:
    """An 8x8 blue PNG, so the inline image really renders."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\x1d\x4e\xd8" * 8 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def secure_html_message(sender: str, rcpt: str, message_id: str,
                        subject: str = "[secure] Your results", text: str = "Biopsy: benign.",
                        html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Dr. Doctor <{sender}>"
    message["To"] = rcpt
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message["Date"] = "Mon, 23 Nov 2026 15:04:00 +0000"
    message.set_content(f"{text}\n")
    message.add_alternative(html or f'<p><b>{text}</b></p><p><img src="cid:logo@clinic.test" '
                            'alt="Clinic logo" width="64" height="64"></p>', subtype="html")
    html_part = message.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(tiny_png(), maintype="image", subtype="png", cid="<logo@clinic.test>",
                          filename="logo.png")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    return message


def notified_link(gateway: GatewayProcess, mx: FakeMX, rcpt: str) -> str:
    notification = wait_for_mail(mx, rcpt)
    return link_in(notification.content, rf"{gateway.portal_url}/m/[A-Za-z0-9_-]+")


def register(page: Page, mx: FakeMX, rcpt: str, shots: str = "") -> None:
    """From the notification link's page to the message, with the emailed code."""
    page.click("text=Email me a verification code")
    page.wait_for_url("**/verify?notice=sent")
    if shots:
        shoot(page, f"{shots}-verify")
    page.fill("#code", wait_for_code(mx, rcpt))
    page.fill("#first_name", "Pat")
    page.fill("#last_name", "Doe")
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.click("text=Continue to my message")


def frame_height(page: Page) -> float:
    return float(page.locator("iframe.message-frame").evaluate(
        "frame => frame.getBoundingClientRect().height"))


def frame_text(page: Page) -> str:
    return page.frame_locator("iframe.message-frame").first.locator("body").inner_text()
