"""A real Postfix in front of Sealgate, as an organization runs it: a private Postfix
instance (tests/fakes/postfix.py) on 127.0.0.43 with `relayhost = [127.0.0.1]:PORT` (Sealgate,
with `smtp.tls_cert` set) and `smtp_tls_security_level = encrypt`; the organization's domain
clinic.test is relayed by that Postfix to its mailbox server (a FakeMX on 127.0.0.44, the
"sink"), and Sealgate's `internal.relay` is that Postfix, with clinic.test in
`internal.domains`.

What it proves: mail submitted to Postfix leaves Sealgate over TLS or is stored for pickup;
Postfix reaches Sealgate over STARTTLS at level encrypt; Sealgate's DSNs and portal replies
come back through Postfix to the sender's mailbox."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import smtplib
from collections.abc import Iterator

import httpx
import pytest
import trustme

from tests.conftest import make_message, wait_for_mail
from tests.fakes.certs import leaf
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port
from tests.fakes.postfix import PrivatePostfix
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import csrf_token, register, stored_pickups

POSTFIX_IP = "127.0.0.43"   # the organization's Postfix (listens and connects from here)
SINK_IP = "127.0.0.44"      # the organization's mailbox server behind that Postfix
ORG = "clinic.test"
NOWHERE = "no-such-domain.test"  # NXDOMAIN in the fake DNS: mail there bounces


@pytest.fixture(scope="module")
def sink(ca: trustme.CA) -> Iterator[FakeMX]:
    with FakeMX(SINK_IP, free_port(SINK_IP), name="mailbox.clinic.test",
                tls_cert=leaf(ca, "mailbox.clinic.test")) as host:
        yield host


@pytest.fixture(scope="module")
def postfix_port() -> int:
    return free_port(POSTFIX_IP)


@pytest.fixture(scope="module")
def front_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                  ca: trustme.CA, postfix_port: int,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Sealgate behind the Postfix: inbound STARTTLS, internal.relay = that Postfix."""
    directory = tmp_path_factory.mktemp("front-gateway")
    cert = ca.issue_cert("gateway.sealgate.test", "127.0.0.1")
    cert_file, key_file = directory / "gw.pem", directory / "gw.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    smtp = {**gateway_settings.extra["smtp"], "tls_cert": str(cert_file),
            "tls_key": str(key_file), "allowed_networks": [f"{POSTFIX_IP}/32", "127.0.0.1/32"]}
    settings = dataclasses.replace(
        gateway_settings, relay=f"{POSTFIX_IP}:{postfix_port}",
        extra={**gateway_settings.extra, "smtp": smtp, "internal": {"domains": [ORG]}})
    process = GatewayProcess(directory / "gw", settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def postfix(front_gateway: GatewayProcess, sink: FakeMX, postfix_port: int,
            gateway_settings: GatewaySettings) -> Iterator[PrivatePostfix]:
    with PrivatePostfix((POSTFIX_IP, postfix_port),
                        relayhost=f"[127.0.0.1]:{front_gateway.smtp_port}", org_domain=ORG,
                        org_sink=f"[{SINK_IP}]:{sink.port}", tls_level="encrypt",
                        ca_file=str(gateway_settings.ca_file)) as instance:
        yield instance


def submit(postfix: PrivatePostfix, sender: str, rcpt: str, subject: str, body: str) -> None:
    """Hand a message to the Postfix, as a mail client of the organization would."""
    message = make_message(sender, rcpt, subject, body)
    with smtplib.SMTP(*postfix.listen, timeout=30) as client:
        client.ehlo("workstation.clinic.test")
        client.sendmail(sender, [rcpt], message.as_bytes(policy=email.policy.SMTP))


def received_headers(raw: bytes) -> list[str]:
    return email.message_from_bytes(raw, policy=email.policy.default).get_all("Received") or []


def test_mail_through_postfix_is_delivered_over_tls_by_sealgate(
        postfix: PrivatePostfix, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    submit(postfix, f"dr-{unique}@{ORG}", rcpt, "Appointment", "Tuesday at 10.")
    received = wait_for_mail(mx_hosts["tls"], rcpt)
    assert received.tls and b"Tuesday at 10." in received.content
    assert received.mail_from == f"dr-{unique}@{ORG}"
    # Sealgate's trace header: it took the message from Postfix (by its EHLO name) over TLS.
    sealgate_hop = received_headers(received.content)[0]
    assert f"mail.{ORG}" in sealgate_hop and "ESMTPS" in sealgate_hop


def test_postfix_reaches_sealgate_over_starttls_at_security_level_encrypt(
        postfix: PrivatePostfix, front_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    submit(postfix, f"dr-{unique}@{ORG}", rcpt, "Hello", "Over TLS.")
    wait_for_mail(mx_hosts["tls"], rcpt)
    relay = f"relay=127.0.0.1[127.0.0.1]:{front_gateway.smtp_port}"
    sent = postfix.wait_for_log(f"to=<{rcpt}>, {relay}")
    assert "status=sent" in sent
    assert "Trusted TLS connection established to 127.0.0.1[127.0.0.1]" in postfix.log()


def test_confidential_mail_through_postfix_is_stored_for_pickup(
        postfix: PrivatePostfix, front_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    submit(postfix, f"dr-{unique}@{ORG}", rcpt, "[secure] Results", "Biopsy " + unique)
    assert stored_pickups(front_gateway, rcpt)[0].sender == f"dr-{unique}@{ORG}"
    notification = wait_for_mail(mx_hosts["plain"], rcpt)
    assert ("Biopsy " + unique).encode() not in notification.content


def test_dsn_from_sealgate_reaches_the_sender_through_postfix(
        postfix: PrivatePostfix, sink: FakeMX, unique: str) -> None:
    sender = f"dr-{unique}@{ORG}"
    submit(postfix, sender, f"{unique}@{NOWHERE}", "Lost", "Nobody home.")
    dsn = wait_for_mail(sink, sender, timeout=60)
    parsed = email.message_from_bytes(dsn.content, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert f"{unique}@{NOWHERE}" in dsn.content.decode(errors="replace")
    assert dsn.mail_from == "<>" and dsn.tls  # Postfix relayed it on to the mailbox over TLS
    postfix.wait_for_log(f"to=<{sender}>, relay={SINK_IP}[{SINK_IP}]:{sink.port}")


def test_portal_reply_reaches_the_sender_through_postfix(
        postfix: PrivatePostfix, front_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        sink: FakeMX, unique: str) -> None:
    sender, rcpt = f"dr-{unique}@{ORG}", f"{unique}@plain.test"
    submit(postfix, sender, rcpt, "[secure] Results", "Please confirm.")
    link = f"{front_gateway.portal_url}/m/{stored_pickups(front_gateway, rcpt)[0].id}"
    with httpx.Client(base_url=front_gateway.portal_url) as client:
        page = register(client, link, mx_hosts["plain"], rcpt)
        sent = client.post(f"{link}/reply",
                           data={"csrf_token": csrf_token(page), "text": "Confirmed " + unique},
                           files={"attachments": ("", b"", "application/octet-stream")},
                           follow_redirects=True)
    assert sent.status_code == 200
    reply = wait_for_mail(sink, sender, timeout=60)
    assert reply.mail_from == rcpt
    assert ("Confirmed " + unique).encode() in reply.content
    postfix.wait_for_log(f"to=<{sender}>, relay={SINK_IP}[{SINK_IP}]:{sink.port}")

