"""Fixtures and helpers for the portal's HTTP-level tests: the app over a real Store with a
fake clock, driven by Starlette's TestClient. Test modules import what they use."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
import warnings
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from gateway.config import Config
from gateway.storage.store import Route, Store
from pickup.app import create_app
from pickup.security import CONTENT_SECURITY_POLICY

with warnings.catch_warnings():
    # Starlette 1.x would rather its TestClient ran on httpx2; the test extra installs httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient as TestClient

Page = Any  # a response from the TestClient: httpx's, or httpx2's once that is installed

SENDER = "doctor@hospital.example"
PATIENT = "pat@patients.test"
OTHER = "other@elsewhere.test"
NOTIFY_FROM = "secure-mail@hospital.example"
PASSWORD = "correct horse battery"
SUBJECT = 'Lab results <script>alert("subject")</script>'
BODY_TOKEN = "HEMOGLOBIN-14-2"
MESSAGE_ID = "<lab-1@hospital.example>"
PDF = b"%PDF-1.4 fake pdf\n" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40
HTML = (
    f'<p>Hello <b>patient</b>, {BODY_TOKEN}</p>'
    '<script>alert("script")</script>'
    '<img src="x" onerror="alert(1)">'
    '<img src="https://tracker.example/pixel.gif" alt="tracker">'
    '<a href="javascript:alert(2)">click me</a> '
    '<a href="https://safe.example/page">safe link</a>'
    '<img src="cid:logo@hospital.example" alt="Logo">'
)


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def secure_message(to: str = PATIENT, subject: str = SUBJECT, html: str = HTML,
                   message_id: str = MESSAGE_ID, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Dr. Doctor <{SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 23 Nov 2026 15:04:00 +0000"
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(f"Dear patient,\n{BODY_TOKEN}\nSee https://hospital.example/info\n")
    message.add_alternative(html, subtype="html")
    html_part = message.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@hospital.example>",
                          filename="logo.png")
    message.add_attachment(PDF, maintype="application", subtype="pdf",
                           filename="Résultats 2026.pdf")
    return message.as_bytes(policy=email.policy.SMTP)


def plain_message(text: str, subject: str = "Plain", to: str = PATIENT) -> bytes:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<plain-1@hospital.example>"
    message.set_content(text)
    return message.as_bytes(policy=email.policy.SMTP)


@pytest.fixture(params=["parsed-whole", "streamed"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the message parsed whole and again with it streamed (the path of
    every message over render.IN_MEMORY_LIMIT): both must show the same thing."""
    if request.param == "streamed":
        from pickup import render
        monkeypatch.setattr(render, "IN_MEMORY_LIMIT", 0)
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    opened = Store(tmp_path / "var", clock)
    yield opened
    opened.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config()
    config.storage.dir = str(tmp_path / "var")
    config.pickup.organization = "St. Example Hospital"
    config.notify.from_ = NOTIFY_FROM
    return config


@pytest.fixture
def wakes() -> list[int]:
    return []


@pytest.fixture
def app(config: Config, store: Store, wakes: list[int]) -> Starlette:
    def wake_queue() -> None:
        # The real wake-up is an asyncio.Event: it must be set on the event loop's thread.
        asyncio.get_running_loop()
        wakes.append(1)

    return create_app(config, store, wake_queue)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def other_client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def seed(store: Store, to: str = PATIENT, raw: bytes | None = None, days: float = 1) -> str:
    message_id = store.enqueue(SENDER, [Route(to, True, "pickup")], raw or secure_message(to))
    return store.store_pickup(message_id, SENDER, to, store.clock() + days * 86400)


@pytest.fixture
def pid(store: Store) -> str:
    return seed(store)


def csrf(response: Page) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', response.text)
    assert match, "page has no CSRF field"
    return match.group(1)


def mails(store: Store, address: str, subject: str = "") -> list[str]:
    """Queue ids of the portal's own mail to ADDRESS, newest first, whose Subject has SUBJECT."""
    waiting = sorted((w for w in store.waiting_recipients()
                      if w.rcpt == address and w.sender == NOTIFY_FROM),
                     key=lambda w: (w.received, w.message_id), reverse=True)
    return [w.message_id for w in waiting
            if subject in str(read_mail(store, w.message_id)["Subject"])]


def code_mails(store: Store, address: str) -> list[str]:
    return mails(store, address, "verification code")


def read_mail(store: Store, queue_id: str) -> EmailMessage:
    parsed = email.message_from_bytes(store.read_spool(queue_id), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def mail_text(store: Store, queue_id: str) -> str:
    body = read_mail(store, queue_id).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def latest_code(store: Store, address: str) -> str:
    match = re.search(r"\b(\d{8})\b", mail_text(store, code_mails(store, address)[0]))
    assert match
    return match.group(1)


def ask_code(client: TestClient, pickup_id: str) -> Page:
    page = client.get(f"/m/{pickup_id}/verify")
    return client.post(f"/m/{pickup_id}/code", data={"csrf_token": csrf(page)})


def submit_verification(client: TestClient, pickup_id: str, code: str, **fields: str) -> Page:
    page = client.get(f"/m/{pickup_id}/verify")
    if page.status_code != 200 or 'name="csrf_token"' not in page.text:
        page = client.get("/login")
    data = {"csrf_token": csrf(page), "code": code, "first_name": "Pat", "last_name": "Ient",
            "password": PASSWORD, "password_confirm": PASSWORD}
    data.update(fields)
    return client.post(f"/m/{pickup_id}/verify", data=data)


def register(client: TestClient, store: Store, pickup_id: str, address: str = PATIENT,
             **fields: str) -> Page:
    ask_code(client, pickup_id)
    return submit_verification(client, pickup_id, latest_code(store, address), **fields)


def sign_in(client: TestClient, pickup_id: str, password: str = PASSWORD) -> Page:
    page = client.get(f"/m/{pickup_id}")
    return client.post(f"/m/{pickup_id}/login",
                       data={"csrf_token": csrf(page), "password": password})


def login(client: TestClient, address: str = PATIENT, password: str = PASSWORD) -> Page:
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf(page), "address": address,
                                       "password": password})


def count(store: Store, what: str) -> int:
    """How many of WHAT the storage holds: users, sessions, open_codes, messages or pickups."""
    portal = store.portal_counts()
    return {"users": portal.users, "sessions": portal.sessions, "open_codes": portal.open_codes,
            "messages": store.message_count(), "pickups": len(store.list_pickups())}[what]


def body_frame(client: TestClient, pickup_id: str) -> Page:
    return client.get(f"/m/{pickup_id}/body")


def assert_security_headers(response: Page, cache: str | None = "no-store",
                            policy: str = CONTENT_SECURITY_POLICY) -> None:
    headers = response.headers
    assert headers["content-security-policy"] == policy
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    if cache:
        assert headers["cache-control"] == cache
