"""The recipients' new pages in a real browser (Chromium over a running gateway), in English
and Spanish: the start page naming the sender, the message page with its deletion date and
.eml download, signing in by an emailed code, and the language switcher. Every page shot
goes through shoot() (phone and desktop width, axe-core), plus a 390x844 phone screenshot
in tests/artifacts/phone/."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path

from playwright.sync_api import Page, ViewportSize

from tests.browser import (
    ARTIFACTS,
    Watch,
    chromium,
    notified_link,
    register,
    secure_html_message,
    shoot,
)
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import PASSWORD

PHONE_390 = ViewportSize(width=390, height=844)


def phone_shot(page: Page, name: str) -> None:
    """shoot()'s checks, and a 390x844 phone screenshot at tests/artifacts/phone/NAME.png."""
    shoot(page, name)
    (ARTIFACTS / "phone").mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(PHONE_390)
    page.wait_for_timeout(50)
    page.screenshot(path=str(ARTIFACTS / "phone" / f"{name}.png"), full_page=True)


def wait_for_subject_code(mx: FakeMX, rcpt: str, subject: str, after: int) -> str:
    """The 8-digit code in the first mail to RCPT, past the first AFTER, whose Subject has
    SUBJECT."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in mx.messages[after:]:
            parsed = email.message_from_bytes(message.content, policy=email.policy.default)
            if rcpt in message.rcpt_tos and subject in str(parsed["Subject"]):
                body = parsed.get_body(("plain",))
                assert body is not None
                found = re.search(r"^\s+(\d{8})\s*$", body.get_content(), re.MULTILINE)
                assert found
                return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no mail '{subject}' for {rcpt}")


def sign_in_by_code(page: Page, mx: FakeMX, rcpt: str, subject: str, button: str) -> None:
    seen = len(mx.messages)
    page.click(f"text={button}")
    page.wait_for_url("**/sign-in-code?notice=sent")
    page.fill("#code", wait_for_subject_code(mx, rcpt, subject, seen))


def test_new_recipient_pages_in_english_and_spanish(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        tmp_path: Path) -> None:
    rcpt, sender = f"{unique}@plain.test", f"doctor-{unique}@clinic.test"
    mx = mx_hosts["plain"]
    gateway.send(secure_html_message(sender, rcpt, f"<new-{unique}@clinic.test>"))
    link = notified_link(gateway, mx, rcpt)

    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        watch = Watch()
        watch.attach(page)

        page.goto(link)
        assert sender in page.locator("main").inner_text()
        phone_shot(page, "en-start")
        register(page, mx, rcpt)
        registered = time.monotonic()  # one code a minute per address, this one included
        page.wait_for_url(link)
        assert page.locator("#deletion-title").inner_text().startswith("Deleted on")
        phone_shot(page, "en-message")
        with page.expect_download() as download:
            page.click("text=Download the message (.eml)")
        assert b"Biopsy: benign." in Path(download.value.path()).read_bytes()

        # Signed out, a code at once: the page says to use the one just sent.
        page.click("text=Sign out")
        page.goto(link)
        phone_shot(page, "en-login")
        page.click("text=Email me a sign-in code")
        page.wait_for_url("**/sign-in-code?notice=wait")
        phone_shot(page, "en-sign-in-code")
        page.goto(link)
        page.fill("#password", PASSWORD)
        page.click("main button:has-text('Sign in')")
        page.wait_for_url(link)

        # The switcher in the footer: Spanish from now on, remembered for the account.
        page.select_option("#language-choice", "es")
        page.click("text=Change language")
        page.wait_for_url(link)
        assert page.get_attribute("html", "lang") == "es"
        assert page.locator("#deletion-title").inner_text().startswith("Se elimina el")
        phone_shot(page, "es-message")
        page.click("text=Cerrar sesión")
        page.goto(link)
        assert page.get_attribute("html", "lang") == "es"
        phone_shot(page, "es-login")

        # The password forgotten: a code from the email signs in (a minute after the last).
        time.sleep(max(0.0, registered + 61 - time.monotonic()))
        sign_in_by_code(page, mx, rcpt, "código de acceso", "Enviarme un código de acceso")
        phone_shot(page, "es-sign-in-code")
        page.click("main button:has-text('Acceder')")
        page.wait_for_url(link)
        assert page.get_attribute("html", "lang") == "es"
        watch.assert_clean()


def test_a_spanish_browser_gets_the_first_visit_in_spanish(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        tmp_path: Path) -> None:
    rcpt, sender = f"{unique}@plain.test", f"doctor-{unique}@clinic.test"
    gateway.send(secure_html_message(sender, rcpt, f"<es-{unique}@clinic.test>"))
    link = notified_link(gateway, mx_hosts["plain"], rcpt)
    with chromium(tmp_path / "profile", locale="es-ES") as context:  # Accept-Language: es-ES
        page = context.new_page()
        page.goto(link)
        assert page.get_attribute("html", "lang") == "es"
        assert "Tiene un mensaje seguro" in page.locator("h1").inner_text()
        phone_shot(page, "es-start")
        page.click("text=Enviarme un código de verificación")
        page.wait_for_url("**/verify?notice=sent")
        phone_shot(page, "es-verify")
