"""The sender's pages in a real browser (Chromium over a running gateway), in English and
Spanish: the status of each recipient's copy behind the receipt link, the confirmation page,
and the page after revoking. Every page shot goes through shoot() (tests/artifacts/NAME-
desktop.png and NAME-phone.png, 360 px; axe-core at both widths)."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page

from gateway.config import load_config
from gateway.storage import open_storage
from gateway.vault.sender_links import sender_link_url
from tests.browser import Watch, chromium, notified_link, shoot
from tests.conftest import make_message
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess


def stored_message(gateway: GatewayProcess, mx: FakeMX, sender: str, *rcpts: str) -> str:
    """Send a confidential message to RCPTS (stored for pickup: plain.test offers no TLS);
    the sender link for it once every recipient was notified."""
    message = make_message(sender, rcpts[0], "[secure] Lab results", "Hemoglobin 14.2")
    reply = gateway.send(message, recipients=list(rcpts))
    queue_id = reply.rsplit(" ", 1)[1]
    for rcpt in rcpts:
        notified_link(gateway, mx, rcpt)
    store = open_storage(load_config(gateway.config))  # the public storage API, as the CLI
    try:
        deadline = time.monotonic() + 30
        while not all(any(e.event == "notified" for e in store.audit_events(p.id))
                      for p in store.message_pickups(queue_id)):
            assert time.monotonic() < deadline, "notifications not recorded"
            time.sleep(0.2)
        return sender_link_url(store, gateway.portal_url, queue_id, sender)
    finally:
        store.close()


def revoke_in_browser(page: Page, name: str, revoke: str, confirm: str) -> None:
    page.click(f"text={revoke}")
    page.wait_for_url("**/revoke")
    shoot(page, f"{name}-confirm")
    page.click(f"text={confirm}")
    page.wait_for_load_state()


def test_the_senders_pages_in_english(gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
                                      unique: str, tmp_path: Path) -> None:
    sender = f"doctor-{unique}@clinic.test"
    rcpts = (f"{unique}@plain.test", f"{unique}-b@plain.test")
    link = stored_message(gateway, mx_hosts["plain"], sender, *rcpts)
    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        watch = Watch()
        watch.attach(page)
        page.goto(link)
        main = page.locator("main").inner_text()
        assert all(r in main for r in rcpts) and "Notified" in main and "Not yet" in main
        shoot(page, "sender-status")
        revoke_in_browser(page, "sender-revoke", "Revoke this message", "Yes, destroy every copy")
        assert page.url == link
        assert "You revoked this message on" in page.locator("main").inner_text()
        shoot(page, "sender-revoked")
        watch.assert_clean()


def test_the_senders_pages_in_spanish(gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
                                      unique: str, tmp_path: Path) -> None:
    sender = f"doctor-{unique}@clinic.test"
    link = stored_message(gateway, mx_hosts["plain"], sender, f"{unique}@plain.test")
    with chromium(tmp_path / "profile", locale="es-ES") as context:  # Accept-Language: es-ES
        page = context.new_page()
        watch = Watch()
        watch.attach(page)
        page.goto(link)
        assert "Su mensaje seguro" in page.locator("main").inner_text()
        shoot(page, "sender-status-es")
        revoke_in_browser(page, "sender-revoke-es", "Revocar este mensaje",
                          "Sí, destruir todas las copias")
        assert "Revocó este mensaje el" in page.locator("main").inner_text()
        shoot(page, "sender-revoked-es")
        watch.assert_clean()
