"""Helpers for journeys through a running gateway over real sockets: what it stored for
pickup, what its notifications say, and the recipient's way through the portal with httpx
(CSRF-protected forms, the verification code mailed to the fake MX, registration).
Test modules import what they use; the browser's counterparts are in tests/browser.py."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.config import Config, load_config
from gateway.storage import open_storage
from gateway.storage.protocols import Pickup, QueueInspection, RecipientStatus, Storage
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess

PASSWORD = "correct horse battery staple"
PDF = b"%PDF-1.4 test report " + bytes(range(256))
WRITTEN_BY_SEALGATE = ("pickup notification", "delivery status notification",
                       "postmaster copy of an undeliverable bounce")


@contextmanager
def opened_storage(storage_dir: Path) -> Iterator[Storage]:
    """The storage under STORAGE_DIR, opened as the admin commands open it: tests see what
    a gateway stored through the storage Protocols, never through SQL."""
    config_file = storage_dir.parent / "sealgate.toml"  # a GatewayProcess's: maybe PostgreSQL
    config = load_config(config_file) if config_file.exists() else Config()
    config.storage.dir = str(storage_dir)
    storage = open_storage(config)
    try:
        yield storage
    finally:
        storage.close()


def queued_status(storage: QueueInspection, rcpt: str,
                  written_by_sealgate: bool = False) -> RecipientStatus | None:
    """RCPT in the first message queued to it; without WRITTEN_BY_SEALGATE, not in the
    notifications and reports Sealgate wrote itself (which may go to the same address)."""
    for message in storage.messages_to(rcpt):
        for recipient in message.recipients:
            if recipient.rcpt == rcpt and (written_by_sealgate
                                           or recipient.reason not in WRITTEN_BY_SEALGATE):
                return recipient
    return None


def recipient_state(storage_dir: Path, rcpt: str) -> tuple[str, str] | None:
    """RCPT's state and the owner delivering it (empty when none) in the first message
    queued to it; None while nothing is."""
    with opened_storage(storage_dir) as storage:
        found = queued_status(storage, rcpt)
    return (found.state, found.claimed_by) if found else None


def stored_pickups(gateway: GatewayProcess, recipient: str, timeout: float = 30.0
                   ) -> list[Pickup]:
    """The pickups stored for RECIPIENT, once there is one."""
    deadline = time.monotonic() + timeout
    with opened_storage(gateway.storage_dir) as storage:
        while time.monotonic() < deadline:
            if pickups := storage.list_pickups(recipient):
                return pickups
            time.sleep(0.05)
    raise AssertionError(f"no pickup stored for {recipient}:\n{gateway.log_tail()}")


def wait_until(condition: str, check: Callable[[], object], gateway: GatewayProcess,
               timeout: float = 30) -> None:
    """Wait until CHECK() is true; fail naming CONDITION, with the gateway's log."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never {condition}:\n{gateway.log_tail()}"
        time.sleep(0.05)


def text_of(raw: bytes) -> str:
    """The text of every text/plain and text/html part of the message RAW."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return "\n".join(part.get_content() for part in message.walk()
                     if part.get_content_type() in ("text/plain", "text/html"))


def csrf_token(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {page.url}"
    return match.group(1)


def post_form(client: httpx.Client, page: httpx.Response, action: str, **fields: str
              ) -> httpx.Response:
    """Submit a form to ACTION with the CSRF token of PAGE, following redirects."""
    return client.post(action, data={"csrf_token": csrf_token(page), **fields},
                       follow_redirects=True)


def emailed_code(mx: FakeMX, rcpt: str) -> str:
    """The verification code in the latest code mail MX received for RCPT."""
    for message in reversed(mx.messages):
        if rcpt in message.rcpt_tos and b"Subject: Your verification code" in message.content:
            parsed = email.message_from_bytes(message.content, policy=email.policy.default)
            text = parsed.get_body(("plain",)).get_content()
            return re.search(r"^\s+(\d{6,})\s*$", text, re.MULTILINE).group(1)
    raise AssertionError(f"no verification code mailed to {rcpt}")


def wait_for_code(mx: FakeMX, rcpt: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return emailed_code(mx, rcpt)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def register(client: httpx.Client, link: str, mx: FakeMX, rcpt: str,
             password: str = PASSWORD) -> httpx.Response:
    """From the notification LINK to the message page, with the code mailed to RCPT."""
    start = client.get(link)
    assert start.status_code == 200 and rcpt in start.text
    verify = post_form(client, start, f"{link}/code")
    code = wait_for_code(mx, rcpt)
    return post_form(client, verify, f"{link}/verify", code=code, first_name="Pat",
                     last_name="Doe", password=password, password_confirm=password)
