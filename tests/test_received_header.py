"""Every relayed message gets a Received: trace header (RFC 5321 4.4) at accept time."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import ssl

import trustme

from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess


def top_received(content: bytes) -> str:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert content.startswith(b"Received: "), content[:200]
    return re.sub(r"\s+", " ", str(message.get_all("Received")[0]))


def queue_id_of(reply: str) -> str:
    return reply.rsplit(" ", 1)[1]


def test_received_names_client_helo_address_host_and_queue_id(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    reply = gateway.send(make_message("doctor@clinic.test", rcpt, "Trace me"))
    received = top_received(wait_for_mail(mx_hosts["plain"], rcpt).content)
    assert received.startswith("from mail.clinic.test (")
    assert "[127.0.0.1])" in received
    assert (f"by gateway.sealgate.test (Sealgate) with ESMTP id {queue_id_of(reply)}"
            f" for <{rcpt}>;") in received
    assert re.search(r"; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$", received)


def test_received_omits_for_when_there_are_several_recipients(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    first, second = f"{unique}-a@plain.test", f"{unique}-b@plain.test"
    gateway.send(make_message("doctor@clinic.test", first, "Two"), recipients=[first, second])
    received = top_received(wait_for_mail(mx_hosts["plain"], first).content)
    assert " for " not in received and "with ESMTP id" in received


def test_received_names_the_forward_confirmed_reverse_dns_name(
        gateway: GatewayProcess, fake_dns: FakeDNS, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    fake_dns.add("1.0.0.127.in-addr.arpa", "PTR", "smtp-out.clinic.test.")
    fake_dns.add("smtp-out.clinic.test", "A", "127.0.0.1")
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Named"))
    received = top_received(wait_for_mail(mx_hosts["plain"], rcpt).content)
    assert "(smtp-out.clinic.test [127.0.0.1])" in received


def test_received_records_inbound_tls_version_and_cipher(
        starttls_gateway: GatewayProcess, ca: trustme.CA, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    rcpt = f"{unique}@plain.test"
    with smtplib.SMTP("127.0.0.1", starttls_gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        client.starttls(context=context)
        client.send_message(make_message("doctor@clinic.test", rcpt, "Over TLS"))
    received = top_received(wait_for_mail(mx_hosts["plain"], rcpt).content)
    assert re.search(r"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \(\d+/\d+ bits\)\)", received)
    assert "with ESMTPS id" in received


def test_the_client_name_is_looked_up_once_per_connection(
        gateway: GatewayProcess, fake_dns: FakeDNS, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    fake_dns.add("1.0.0.127.in-addr.arpa", "PTR", "smtp-out.clinic.test.")
    fake_dns.add("smtp-out.clinic.test", "A", "127.0.0.1")
    rcpts = [f"{unique}-{n}@plain.test" for n in range(3)]
    before = fake_dns.queries.count(("1.0.0.127.in-addr.arpa", "PTR"))
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        for rcpt in rcpts:
            message = make_message("doctor@clinic.test", rcpt, "Same connection")
            client.sendmail("doctor@clinic.test", [rcpt],
                            message.as_bytes(policy=email.policy.SMTP))
    for rcpt in rcpts:
        received = top_received(wait_for_mail(mx_hosts["plain"], rcpt).content)
        assert "(smtp-out.clinic.test [127.0.0.1])" in received
    assert fake_dns.queries.count(("1.0.0.127.in-addr.arpa", "PTR")) == before + 1
