"""REQUIRETLS (RFC 8689), end to end through a running gateway with inbound STARTTLS.

Domains, named for their scenario (MX hosts are fake MX hosts with trusted certificates):
  signed-rtls.test     validated MX answer, mx.rtls.test offers REQUIRETLS: delivered with it
  signed-nortls.test   validated MX answer, mx.nortls.test lacks REQUIRETLS: pickup
  unsigned-rtls.test   MX answer without the AD bit, no MTA-STS: pickup, no host is tried
  sts-rtls.test        MX answer without AD, MTA-STS enforce lists mx.rtls.test: delivered
"""

from __future__ import annotations

import email.policy
import smtplib
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import trustme

from tests.conftest import POLICY_HTTPS_IP, make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX, ReceivedMessage
from tests.gateway_process import GatewayProcess
from tests.journey import opened_storage, stored_pickups

RTLS_IP, NORTLS_IP = "127.0.0.16", "127.0.0.17"


@pytest.fixture(scope="module")
def requiretls_hosts(fake_dns: FakeDNS, policy_https: FakeHTTPS, ca: trustme.CA,
                     mx_port: int) -> Iterator[dict[str, FakeMX]]:
    fake_dns.add("mx.rtls.test", "A", RTLS_IP)
    fake_dns.add("mx.nortls.test", "A", NORTLS_IP)
    for name in ("mx.rtls.test", "mx.nortls.test"):
        fake_dns.set_authenticated(name, True)
    for domain, host, signed in (("signed-rtls.test", "mx.rtls.test", True),
                                 ("signed-nortls.test", "mx.nortls.test", True),
                                 ("unsigned-rtls.test", "mx.rtls.test", False),
                                 ("sts-rtls.test", "mx.rtls.test", False)):
        fake_dns.add(domain, "MX", f"10 {host}.")
        fake_dns.set_authenticated(domain, signed)
    fake_dns.add("_mta-sts.sts-rtls.test", "TXT", '"v=STSv1; id=rtls1;"')
    fake_dns.add("mta-sts.sts-rtls.test", "A", POLICY_HTTPS_IP)
    policy_https.serve_policy("sts-rtls.test",
                              "version: STSv1\nmode: enforce\nmx: mx.rtls.test\nmax_age: 86400\n")
    hosts = {"rtls": FakeMX(RTLS_IP, mx_port, name="mx.rtls.test",
                            tls_cert=ca.issue_cert("mx.rtls.test"), requiretls=True),
             "nortls": FakeMX(NORTLS_IP, mx_port, name="mx.nortls.test",
                              tls_cert=ca.issue_cert("mx.nortls.test"))}
    for host in hosts.values():
        host.start()
    yield hosts
    for host in hosts.values():
        host.stop()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def send_requiretls(gateway: GatewayProcess, ca: trustme.CA, message: EmailMessage) -> str:
    """Submit MESSAGE over STARTTLS with MAIL FROM:<...> REQUIRETLS; the reply to DATA."""
    with smtplib.SMTP(gateway.host, gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        client.starttls(context=client_context(ca))
        client.ehlo("mail.clinic.test")
        code, reply = client.mail(str(message["From"]), ["REQUIRETLS"])
        assert code == 250, (code, reply)
        code, reply = client.rcpt(str(message["To"]))
        assert code == 250, (code, reply)
        code, reply = client.data(message.as_bytes(policy=email.policy.SMTP))
        assert code == 250, (code, reply)
        return reply.decode()


def attempt_replies(gateway: GatewayProcess, rcpt: str, timeout: float = 30.0) -> str:
    """The recorded replies and reasons of RCPT's delivery attempts, once there are some
    (the history is written a moment after the outcome)."""
    deadline = time.monotonic() + timeout
    with opened_storage(gateway.storage_dir) as storage:
        while True:
            found = [f"{a.reason}: {a.reply}" for m in storage.messages_to(rcpt)
                     for r in m.recipients if r.rcpt == rcpt for a in r.attempt_history
                     if a.reason]
            if found or time.monotonic() > deadline:
                return "; ".join(found)
            time.sleep(0.05)


def assert_only_notified(mx: FakeMX, rcpt: str) -> None:
    """RCPT got the pickup notification at MX, never the message itself."""
    senders = {m.mail_from for m in wait_for_notification(mx, rcpt)}
    assert "doctor@clinic.test" not in senders, f"{mx.name} got the message for {rcpt}"


def wait_for_notification(mx: FakeMX, rcpt: str) -> list[ReceivedMessage]:
    wait_for_mail(mx, rcpt)
    return [m for m in mx.messages if rcpt in m.rcpt_tos]


def test_requiretls_is_not_offered_before_starttls(starttls_gateway: GatewayProcess) -> None:
    with smtplib.SMTP(starttls_gateway.host, starttls_gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        assert client.has_extn("starttls") and not client.has_extn("requiretls")


def test_requiretls_is_offered_after_starttls(starttls_gateway: GatewayProcess,
                                              ca: trustme.CA) -> None:
    with smtplib.SMTP(starttls_gateway.host, starttls_gateway.smtp_port, timeout=30) as client:
        client.starttls(context=client_context(ca))
        client.ehlo("mail.clinic.test")
        assert client.has_extn("requiretls")


def test_a_gateway_without_tls_never_offers_requiretls(gateway: GatewayProcess) -> None:
    with smtplib.SMTP(gateway.host, gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        assert not client.has_extn("requiretls")


def test_requiretls_without_tls_is_refused_with_5_7_10(starttls_gateway: GatewayProcess) -> None:
    with smtplib.SMTP(starttls_gateway.host, starttls_gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        code, reply = client.mail("doctor@clinic.test", ["REQUIRETLS"])
    assert (code, reply.split()[0]) == (530, b"5.7.10")


def test_requiretls_inside_a_quoted_local_part_is_no_parameter(
        starttls_gateway: GatewayProcess) -> None:
    with smtplib.SMTP(starttls_gateway.host, starttls_gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        code, _ = client.docmd('MAIL FROM:<"a REQUIRETLS b"@clinic.test>')
    assert code == 250


def test_requiretls_with_a_value_is_refused(starttls_gateway: GatewayProcess,
                                           ca: trustme.CA) -> None:
    with smtplib.SMTP(starttls_gateway.host, starttls_gateway.smtp_port, timeout=30) as client:
        client.starttls(context=client_context(ca))
        client.ehlo("mail.clinic.test")
        code, _ = client.mail("doctor@clinic.test", ["REQUIRETLS=YES"])
    assert code == 501


def test_requiretls_mail_to_a_signed_domain_is_relayed_with_requiretls(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@signed-rtls.test"
    send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "Plain",
                                                       "Not tagged, but REQUIRETLS"))
    received = wait_for_mail(requiretls_hosts["rtls"], rcpt)
    assert received.tls and "REQUIRETLS" in received.mail_options


def test_requiretls_mail_to_a_host_without_requiretls_goes_to_pickup(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@signed-nortls.test"
    send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "Plain"))
    stored_pickups(starttls_gateway, rcpt)
    assert "requiretls: mx.nortls.test[127.0.0.17] does not offer REQUIRETLS" in \
        attempt_replies(starttls_gateway, rcpt)
    assert_only_notified(requiretls_hosts["nortls"], rcpt)


def test_requiretls_mail_to_an_unsigned_domain_goes_to_pickup_untried(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@unsigned-rtls.test"
    send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "Plain"))
    stored_pickups(starttls_gateway, rcpt)
    assert "were not found securely" in attempt_replies(starttls_gateway, rcpt)
    assert_only_notified(requiretls_hosts["rtls"], rcpt)


def test_an_mta_sts_policy_in_enforce_mode_finds_the_mx_securely_enough(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@sts-rtls.test"
    send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "Plain"))
    assert "REQUIRETLS" in wait_for_mail(requiretls_hosts["rtls"], rcpt).mail_options


def test_ordinary_mail_is_relayed_without_requiretls(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX],
        unique: str) -> None:
    rcpt = f"{unique}@signed-rtls.test"
    starttls_gateway.send(make_message("doctor@clinic.test", rcpt, "Plain"))
    assert "REQUIRETLS" not in wait_for_mail(requiretls_hosts["rtls"], rcpt).mail_options


def test_requiretls_wins_over_a_tls_required_no_header(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@unsigned-rtls.test"
    send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "Plain",
                                                       TLS_Required="No"))
    stored_pickups(starttls_gateway, rcpt)
    assert_only_notified(requiretls_hosts["rtls"], rcpt)


def test_the_tls_required_header_is_removed_from_requiretls_mail(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@signed-rtls.test"
    send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "Plain",
                                                       TLS_Required="No"))
    assert b"TLS-Required" not in wait_for_mail(requiretls_hosts["rtls"], rcpt).content


def test_queue_show_says_a_message_came_with_requiretls(
        starttls_gateway: GatewayProcess, requiretls_hosts: dict[str, FakeMX], ca: trustme.CA,
        unique: str) -> None:
    rcpt = f"{unique}@signed-nortls.test"
    reply = send_requiretls(starttls_gateway, ca, make_message("doctor@clinic.test", rcpt, "x"))
    shown = starttls_gateway.cli("queue", "show", reply.rsplit(" ", 1)[-1])
    assert shown.returncode == 0, shown.stderr
    assert "tls       REQUIRETLS (RFC 8689)" in shown.stdout
    assert "why       REQUIRETLS (RFC 8689)" in shown.stdout
