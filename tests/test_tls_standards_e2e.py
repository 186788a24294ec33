"""MTA-STS and DANE decide the route for all mail, end to end through a running gateway.

Domains, named for their scenario:
  enforce-match.verified.test     MTA-STS enforce, mx.tls.test listed: verified TLS delivery
  enforce-mismatch.test           MTA-STS enforce, only mx.elsewhere.test listed: never mx.tls.test
  enforce-bad-cert.test           MTA-STS enforce on a host whose certificate does not verify
  dane-ee.verified.test           TLSA 3 1 1 for a certificate no CA vouches for: DANE delivers
  dane-mismatch.test              TLSA that matches nothing: never delivered
  dane-no-ad.test                 TLSA in an answer without the AD bit: ignored
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.storage.protocols import RecipientStatus
from tests.conftest import POLICY_HTTPS_IP, assert_no_mail, make_message, wait_for_mail
from tests.fakes.certs import leaf, make_ca
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import opened_storage, queued_status, stored_pickups

DANE_IP = "127.0.0.13"


def sts_policy(*mx: str) -> str:
    return ("version: STSv1\nmode: enforce\n" + "".join(f"mx: {m}\n" for m in mx)
            + "max_age: 86400\n")


def publish_sts(dns: FakeDNS, https: FakeHTTPS, domain: str, mx_host: str, *listed: str) -> None:
    dns.add(domain, "MX", f"10 {mx_host}.")
    dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20261123;"')
    dns.add(f"mta-sts.{domain}", "A", POLICY_HTTPS_IP)
    https.serve_policy(domain, sts_policy(*listed))


def spki_sha256(cert: trustme.LeafCert) -> str:
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = parsed.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@pytest.fixture(scope="module")
def standards(fake_dns: FakeDNS, policy_https: FakeHTTPS, mx_port: int) -> Iterator[FakeMX]:
    publish_sts(fake_dns, policy_https, "enforce-match.verified.test",
                "mx.tls.test", "mx.tls.test")
    publish_sts(fake_dns, policy_https, "enforce-mismatch.test",
                "mx.tls.test", "mx.elsewhere.test")
    publish_sts(fake_dns, policy_https, "enforce-bad-cert.test",
                "mx.bad-cert.test", "mx.bad-cert.test")
    # A certificate from a CA nobody trusts: only DANE can vouch for it.
    dane_cert = leaf(make_ca(), "mx.dane.test")
    tlsa_name = f"_{mx_port}._tcp.mx.dane.test"
    fake_dns.add("mx.dane.test", "A", DANE_IP)
    fake_dns.add(tlsa_name, "TLSA", f"3 1 1 {spki_sha256(dane_cert)}")
    fake_dns.set_authenticated(tlsa_name, True)
    fake_dns.add("mx.dane-bad.test", "A", DANE_IP)
    fake_dns.add(f"_{mx_port}._tcp.mx.dane-bad.test", "TLSA", "3 1 1 " + "ab" * 32)
    fake_dns.set_authenticated(f"_{mx_port}._tcp.mx.dane-bad.test", True)
    fake_dns.add("mx.dane-no-ad.test", "A", DANE_IP)
    fake_dns.add(f"_{mx_port}._tcp.mx.dane-no-ad.test", "TLSA", "3 1 1 " + "ab" * 32)
    for domain, host in (("dane-ee.verified.test", "mx.dane.test"),
                         ("dane-mismatch.test", "mx.dane-bad.test"),
                         ("dane-no-ad.test", "mx.dane-no-ad.test")):
        fake_dns.add(domain, "MX", f"10 {host}.")
        # DANE needs validated MX and address answers too (RFC 7672 2.2.1).
        fake_dns.set_authenticated(domain, True)
        fake_dns.set_authenticated(host, True)
    with FakeMX(DANE_IP, mx_port, name="mx.dane.test", tls_cert=dane_cert) as dane_host:
        yield dane_host


def recipient_row(gateway: GatewayProcess, rcpt: str, state: str,
                  timeout: float = 30.0) -> RecipientStatus:
    """RCPT (not its pickup notification) once it is in STATE."""
    deadline = time.monotonic() + timeout
    with opened_storage(gateway.storage_dir) as storage:
        while True:
            found = queued_status(storage, rcpt)
            if found is not None and found.state == state:
                return found
            assert time.monotonic() < deadline, f"{rcpt}: {found}, wanted {state}"
            time.sleep(0.05)


def attempt_reasons(gateway: GatewayProcess, rcpt: str, timeout: float = 30.0) -> set[str]:
    """The recorded reasons of RCPT's attempts (the history is written a moment later)."""
    deadline = time.monotonic() + timeout
    with opened_storage(gateway.storage_dir) as storage:
        while True:
            reasons = {a.reason for m in storage.messages_to(rcpt) for r in m.recipients
                       if r.rcpt == rcpt for a in r.attempt_history}
            if reasons - {""} or time.monotonic() > deadline:
                return reasons
            time.sleep(0.05)


def test_mta_sts_enforce_with_a_listed_mx_delivers_over_verified_tls(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], standards: FakeMX,
        unique: str) -> None:
    rcpt = f"{unique}@enforce-match.verified.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] STS", "Secret"))
    assert wait_for_mail(mx_hosts["tls"], rcpt).tls


def test_mta_sts_enforce_mismatch_sends_confidential_mail_to_pickup(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], standards: FakeMX,
        unique: str) -> None:
    rcpt = f"{unique}@enforce-mismatch.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] STS mismatch", "Secret"))
    stored_pickups(gateway, rcpt)
    assert "mta-sts-mismatch" in recipient_row(gateway, rcpt, "pickup").last_reply


def test_mta_sts_enforce_mismatch_defers_ordinary_mail_never_delivering_it(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], standards: FakeMX,
        unique: str) -> None:
    rcpt = f"{unique}@enforce-mismatch.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary", "Not secret"))
    row = recipient_row(gateway, rcpt, "deferred")
    assert "MTA-STS" in row.last_reply
    assert "mta-sts-mismatch" in attempt_reasons(gateway, rcpt)
    assert_no_mail(mx_hosts["tls"], rcpt)


def test_mta_sts_enforce_needs_a_verified_certificate_even_for_ordinary_mail(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], standards: FakeMX,
        unique: str) -> None:
    rcpt = f"{unique}@enforce-bad-cert.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary", "Not secret"))
    recipient_row(gateway, rcpt, "deferred")
    assert "mta-sts-mismatch" in attempt_reasons(gateway, rcpt)
    assert_no_mail(mx_hosts["bad-cert"], rcpt)


def test_dane_ee_match_delivers_where_pkix_would_fail(
        gateway: GatewayProcess, standards: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@dane-ee.verified.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] DANE", "Secret"))
    assert wait_for_mail(standards, rcpt).tls


def test_dane_mismatch_sends_confidential_mail_to_pickup(
        gateway: GatewayProcess, standards: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@dane-mismatch.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] DANE mismatch", "Secret"))
    stored_pickups(gateway, rcpt)
    assert "dane-mismatch" in attempt_reasons(gateway, rcpt)


def test_dane_mismatch_defers_ordinary_mail(
        gateway: GatewayProcess, standards: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@dane-mismatch.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary", "Not secret"))
    recipient_row(gateway, rcpt, "deferred")
    assert_no_mail(standards, rcpt)


def test_tlsa_without_the_ad_bit_is_ignored(
        gateway: GatewayProcess, standards: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@dane-no-ad.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary", "Opportunistic"))
    assert wait_for_mail(standards, rcpt).tls
