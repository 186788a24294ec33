"""SMTPUTF8 (RFC 6531): UTF-8 addresses only with the MAIL parameter, delivered only to next
hops that offer it, bounced with 5.6.7 where they do not; bytes that are not UTF-8 refused."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator

import pytest

from gateway.inbound import codes
from tests.conftest import bad_input_case, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP

ASCII_ONLY_IP = "127.0.0.21"


@pytest.fixture(scope="module")
def ascii_only_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    """ascii-only.test: an MX host that does not offer SMTPUTF8."""
    fake_dns.add("ascii-only.test", "MX", "10 mx.ascii-only.test.")
    fake_dns.add("mx.ascii-only.test", "A", ASCII_ONLY_IP)
    with FakeMX(ASCII_ONLY_IP, mx_port, name="mx.ascii-only.test", smtputf8=False) as host:
        yield host


def message(rcpt: str) -> bytes:
    return (f"From: doctor@clinic.test\r\nTo: {rcpt}\r\nSubject: Grüße\r\n\r\nHallo\r\n.\r\n"
            ).encode()


def send_utf8(gateway: GatewayProcess, sender: str, rcpt: str) -> str:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command(f"MAIL FROM:<{sender}> SMTPUTF8").startswith("250 2.1.0")
        assert smtp.command(f"RCPT TO:<{rcpt}>").startswith("250 2.1.5")
        assert smtp.command("DATA").startswith("354")
        return smtp.send_raw(message(rcpt))


def test_utf8_sender_without_the_smtputf8_parameter_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("MAIL FROM:<jörg@clinic.test>") == codes.NEEDS_SMTPUTF8


def test_utf8_recipient_without_the_smtputf8_parameter_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        assert smtp.command("RCPT TO:<jörg@bücher.test>") == codes.NEEDS_SMTPUTF8


def test_non_utf8_byte_in_the_sender_is_refused_at_mail(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command(b"MAIL FROM:<j\xf6rg@clinic.test> SMTPUTF8") == codes.SENDER_NOT_UTF8


def test_non_utf8_byte_in_a_recipient_is_refused_at_rcpt(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        assert smtp.command(b"RCPT TO:<j\xf6rg@plain.test>") == codes.RECIPIENT_NOT_UTF8


def test_utf8_recipient_with_smtputf8_is_delivered_to_a_host_offering_it(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"jörg.{unique}@plain.test"
    assert send_utf8(gateway, "doctor@clinic.test", rcpt).startswith("250 2.0.0")
    delivered = wait_for_mail(mx_hosts["plain"], rcpt)
    assert delivered.rcpt_tos == [rcpt]
    assert "Grüße".encode() in delivered.content


def test_utf8_message_bounces_with_5_6_7_where_the_next_hop_lacks_smtputf8(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], ascii_only_host: FakeMX,
        unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"jörg.{unique}@ascii-only.test"
    assert send_utf8(gateway, sender, rcpt).startswith("250 2.0.0")
    dsn = email.message_from_bytes(wait_for_mail(mx_hosts["relay"], sender).content,
                                   policy=email.policy.default)
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    fields = {k: str(v) for block in status.get_payload() for k, v in block.items()}
    assert fields["Status"] == "5.6.7" and fields["Action"] == "failed"
    assert not [m for m in ascii_only_host.messages if rcpt in m.rcpt_tos]
