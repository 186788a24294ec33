"""The whole pickup journey through a running gateway, over real sockets: a [secure]
message to a domain without TLS is stored, the recipient is notified, registers with the
code emailed to their address, reads the message and downloads its attachment."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import PASSWORD, PDF, csrf_token, post_form, register, stored_pickups


def attachment_links(page: httpx.Response) -> list[str]:
    links = re.findall(r'href="([^"]*/attachments/\d+)"', page.text)
    assert links, "no attachment link on the message page"
    return links


@pytest.fixture
def stored_secure_message(gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
                          unique: str) -> Iterator[tuple[str, str]]:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Your results",
                              "Biopsy: benign. " + unique, attachment=("report.pdf", PDF)))
    pickup_id = stored_pickups(gateway, rcpt)[0].id
    notification = wait_for_mail(mx_hosts["plain"], rcpt)
    link = f"{gateway.portal_url}/m/{pickup_id}"
    assert link.encode() in notification.content.replace(b"=\r\n", b"")
    yield rcpt, link


def test_recipient_registers_reads_and_downloads(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        stored_secure_message: tuple[str, str], unique: str) -> None:
    rcpt, link = stored_secure_message
    with httpx.Client(base_url=gateway.portal_url) as client:
        message_page = register(client, link, mx_hosts["plain"], rcpt)
        assert message_page.status_code == 200
        assert "Biopsy: benign. " + unique in message_page.text
        assert "Your results" in message_page.text and "doctor@clinic.test" in message_page.text
        assert "report.pdf" in message_page.text
        download = client.get(attachment_links(message_page)[0])
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-disposition"].startswith("attachment")


def test_recipient_signs_in_again_with_the_password(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        stored_secure_message: tuple[str, str], unique: str) -> None:
    rcpt, link = stored_secure_message
    with httpx.Client(base_url=gateway.portal_url) as client:
        page = register(client, link, mx_hosts["plain"], rcpt)
        signed_out = post_form(client, page, "/logout")
        assert "Biopsy" not in client.get(link).text
        wrong = post_form(client, signed_out, f"{link}/login", password="not the password")
        assert "Biopsy" not in wrong.text
        right = post_form(client, wrong, f"{link}/login", password=PASSWORD)
    assert "Biopsy: benign. " + unique in right.text


def test_another_registered_user_cannot_read_the_message(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        stored_secure_message: tuple[str, str], unique: str) -> None:
    rcpt, link = stored_secure_message
    with httpx.Client(base_url=gateway.portal_url) as owner:
        page = register(owner, link, mx_hosts["plain"], rcpt)
        attachment_number = attachment_links(page)[0].rsplit("/", 1)[1]
    other = f"other-{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", other, "[secure] Someone else's", "x"))
    other_link = f"{gateway.portal_url}/m/{stored_pickups(gateway, other)[0].id}"
    with httpx.Client(base_url=gateway.portal_url) as client:
        register(client, other_link, mx_hosts["plain"], other)
        forwarded = client.get(link)
        attachment = client.get(f"{link}/attachments/{attachment_number}")
    assert forwarded.status_code == 404 and "Biopsy" not in forwarded.text
    assert attachment.status_code == 404


def test_opening_the_link_sends_nothing_and_signs_nobody_in(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        stored_secure_message: tuple[str, str]) -> None:
    """Link scanners fetch every link in a notification before the recipient does."""
    rcpt, link = stored_secure_message
    before = len(mx_hosts["plain"].messages)
    for _ in range(3):
        response = httpx.get(link)
        assert response.status_code == 200 and "Biopsy" not in response.text
        assert "sealgate_session" not in response.cookies
    time.sleep(0.5)
    assert len([m for m in mx_hosts["plain"].messages[before:] if rcpt in m.rcpt_tos]) == 0


def test_admin_sees_state_and_audit_and_can_revoke(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        stored_secure_message: tuple[str, str]) -> None:
    rcpt, link = stored_secure_message
    pickup_id = link.rsplit("/", 1)[1]
    listing = gateway.cli("pickup", "list").stdout
    assert f"{pickup_id}  doctor@clinic.test -> {rcpt}  unread" in listing
    with httpx.Client(base_url=gateway.portal_url) as client:
        page = register(client, link, mx_hosts["plain"], rcpt)
        assert "read" in gateway.cli("pickup", "list", "--recipient", rcpt).stdout
        sent = client.post(f"{link}/reply",
                           data={"csrf_token": csrf_token(page), "text": "Thanks!"},
                           files={"attachments": ("", b"", "application/octet-stream")},
                           follow_redirects=True)
        assert sent.status_code == 200
        listing = gateway.cli("pickup", "list", "--recipient", rcpt).stdout
        assert f"{pickup_id}  doctor@clinic.test -> {rcpt}  replied" in listing
        assert f"reply to {pickup_id}" in listing
        audit = gateway.cli("pickup", "audit", pickup_id).stdout
        assert " open " in audit and "127.0.0.1" in audit
        revoked = gateway.cli("pickup", "revoke", pickup_id)
        assert revoked.returncode == 0 and "2 stored messages" in revoked.stdout
        assert client.get(link).status_code == 404
    assert (gateway.cli("pickup", "list", "--recipient", rcpt).stdout
            == f"no stored messages for {rcpt}\n")
