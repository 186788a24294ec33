"""Permanent failures come back to the sender as RFC 3464 reports, without the body."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator

import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def rejecting_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    fake_dns.add("rejecting.test", "MX", "10 mx.rejecting.test.")
    fake_dns.add("mx.rejecting.test", "A", "127.0.0.7")
    fake_dns.add("nomail.test", "MX", "0 .")
    with FakeMX("127.0.0.7", mx_port, name="mx.rejecting.test",
                rcpt_reply="550 5.1.1 <nobody> no such user") as host:
        yield host


def delivery_status(raw: bytes) -> dict[str, str]:
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    fields: dict[str, str] = {}
    for block in status.get_payload():
        fields.update({k: str(v) for k, v in block.items()})
    return fields


def test_rejected_recipient_gets_the_sender_a_dsn_without_the_body(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], rejecting_host: FakeMX,
        unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@rejecting.test"
    gateway.send(make_message(sender, rcpt, "Referral", "Confidential body text"))
    dsn = wait_for_mail(mx_hosts["relay"], sender)
    assert dsn.mail_from == "<>"  # the fake MX reports the null reverse-path as aiosmtpd does
    fields = delivery_status(dsn.content)
    assert fields["Final-Recipient"] == f"rfc822; {rcpt}"
    assert fields["Status"] == "5.1.1" and fields["Action"] == "failed"
    assert b"Confidential body text" not in dsn.content
    assert b"Subject: Referral" in dsn.content


def test_null_mx_domain_bounces_at_once_with_5_1_10(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], rejecting_host: FakeMX,
        unique: str) -> None:
    sender = f"{unique}@relay.test"
    gateway.send(make_message(sender, f"{unique}@nomail.test", "Hello"))
    fields = delivery_status(wait_for_mail(mx_hosts["relay"], sender).content)
    assert fields["Status"] == "5.1.10"


def test_nonexistent_domain_bounces_with_5_1_2(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], rejecting_host: FakeMX,
        unique: str) -> None:
    sender = f"{unique}@relay.test"
    gateway.send(make_message(sender, f"{unique}@no-such-domain.test", "Hello"))
    fields = delivery_status(wait_for_mail(mx_hosts["relay"], sender).content)
    assert fields["Status"] == "5.1.2" and "no such domain" in fields["Diagnostic-Code"]


def test_dns_servfail_defers_instead_of_bouncing(
        gateway: GatewayProcess, fake_dns: FakeDNS, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    fake_dns.set_rcode("broken-dns.test", "SERVFAIL")
    rcpt = f"{unique}@broken-dns.test"
    reply = gateway.send(make_message(f"{unique}@relay.test", rcpt, "Hello"))
    queue_id = reply.rsplit(" ", 1)[1]
    deadline = time.monotonic() + 30
    while "deferred" not in (shown := gateway.cli("queue", "show", queue_id).stdout):
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert "4.4.3" in shown
    assert not [m for m in mx_hosts["relay"].messages if f"{unique}@relay.test" in m.rcpt_tos]
