"""DNSSEC for delivery: the MX resolver keeps whether each answer was validated (the AD
bit of a validating resolver, played by the loopback DNS), and DANE applies only to hosts
whose MX and address answers were validated (RFC 7672 2.2.1).

Domains, named for their scenario:
  signed.test          MX and A answers validated
  half-signed.test     MX validated, the host's A answer not
  unsigned.test        nothing validated
  implicit.test        no MX (validated denial), a validated A record
  dane-signed.test     validated MX and A, validated TLSA matching a certificate no CA vouches for
  dane-unsigned.test   the same host and TLSA, but an MX answer without AD
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.delivery.deliverer import Deliverer, DeliverySettings, Outcome
from gateway.delivery.mx import MXLookup, MXResolver, make_resolver
from gateway.tls.verdict import TLSRequirement
from tests.fakes.certs import leaf, make_ca
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

DANE_IP = "127.0.0.81"


@pytest.fixture(scope="module")
def port() -> int:
    return free_port(DANE_IP)


@pytest.fixture(scope="module")
def dane_cert() -> trustme.LeafCert:
    return leaf(make_ca(), "mx.dane-signed.test")


@pytest.fixture(scope="module")
def zone(port: int, dane_cert: trustme.LeafCert) -> Iterator[FakeDNS]:
    with FakeDNS() as dns:
        dns.add("signed.test", "MX", "10 mx.signed.test.")
        dns.add("mx.signed.test", "A", "192.0.2.1")
        dns.add("half-signed.test", "MX", "10 mx.half-signed.test.")
        dns.add("mx.half-signed.test", "A", "192.0.2.2")
        dns.add("unsigned.test", "MX", "10 mx.unsigned.test.")
        dns.add("mx.unsigned.test", "A", "192.0.2.3")
        dns.add("implicit.test", "A", "192.0.2.4")
        for name in ("signed.test", "mx.signed.test", "half-signed.test", "implicit.test"):
            dns.set_authenticated(name, True)
        tlsa = f"_{port}._tcp.mx.dane-signed.test"
        dns.add("mx.dane-signed.test", "A", DANE_IP)
        dns.add(tlsa, "TLSA", f"3 1 1 {spki_sha256(dane_cert)}")
        dns.add("dane-signed.test", "MX", "10 mx.dane-signed.test.")
        dns.add("dane-unsigned.test", "MX", "10 mx.dane-signed.test.")
        for name in ("dane-signed.test", "mx.dane-signed.test", tlsa):
            dns.set_authenticated(name, True)
        yield dns


@pytest.fixture(scope="module")
def dane_host(port: int, dane_cert: trustme.LeafCert) -> Iterator[FakeMX]:
    with FakeMX(DANE_IP, port, name="mx.dane-signed.test", tls_cert=dane_cert) as host:
        yield host


def spki_sha256(cert: trustme.LeafCert) -> str:
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = parsed.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def lookup(zone: FakeDNS, domain: str) -> MXLookup:
    return asyncio.run(MXResolver(make_resolver([zone.nameserver], timeout=2.0)).lookup(domain))


def deliver(zone: FakeDNS, port: int, domain: str) -> Outcome:
    async def attempt() -> Outcome:
        deliverer = Deliverer(MXResolver(make_resolver([zone.nameserver], timeout=2.0)),
                              DeliverySettings(port=port, helo_name="gw.dnssec.test", timeout=5))
        try:
            result = await deliverer.deliver(domain, "sender@clinic.test", [f"a@{domain}"],
                                             b"Subject: x\r\n\r\nhi\r\n",
                                             TLSRequirement.VERIFIED)
        finally:
            await deliverer.close()
        return result.outcome

    return asyncio.run(attempt())


def test_a_validated_mx_and_address_answer_make_a_secure_host(zone: FakeDNS) -> None:
    found = lookup(zone, "signed.test")
    assert found.dnssec and [h.dnssec for h in found.hosts] == [True]


def test_an_unvalidated_address_answer_makes_the_host_insecure(zone: FakeDNS) -> None:
    found = lookup(zone, "half-signed.test")
    assert found.dnssec and [h.dnssec for h in found.hosts] == [False]


def test_an_unvalidated_mx_answer_makes_every_host_insecure(zone: FakeDNS) -> None:
    found = lookup(zone, "unsigned.test")
    assert not found.dnssec and [h.dnssec for h in found.hosts] == [False]


def test_an_implicit_mx_is_secure_when_the_denial_and_address_are_validated(
        zone: FakeDNS) -> None:
    found = lookup(zone, "implicit.test")
    assert found.dnssec and [(h.name, h.dnssec) for h in found.hosts] == [("implicit.test", True)]


def test_mx_and_address_questions_ask_for_the_validation_status(zone: FakeDNS) -> None:
    lookup(zone, "unsigned.test")
    asked = {(name, rdtype): (ad, do) for name, rdtype, ad, do in zone.dnssec_asked}
    assert asked[("unsigned.test", "MX")] == (True, True)
    assert asked[("mx.unsigned.test", "A")] == (True, True)


def test_a_remembered_answer_keeps_its_ad_bit(zone: FakeDNS) -> None:
    async def twice() -> tuple[MXLookup, MXLookup]:
        resolver = make_resolver([zone.nameserver], timeout=2.0)
        first = await MXResolver(resolver).lookup("signed.test")
        asked = len(zone.queries)
        second = await MXResolver(resolver).lookup("signed.test")  # the resolver's memory
        assert len(zone.queries) == asked, "the second look-up went to the DNS server"
        return first, second

    first, second = asyncio.run(twice())
    assert first.hosts[0].dnssec and second.dnssec and second.hosts[0].dnssec


def test_a_cached_mx_result_keeps_its_ad_bit(zone: FakeDNS) -> None:
    async def twice() -> MXLookup:
        resolver = MXResolver(make_resolver([zone.nameserver], timeout=2.0))
        await resolver.lookup("signed.test")
        return await resolver.lookup("signed.test")  # MXResolver's own result cache

    again = asyncio.run(twice())
    assert again.dnssec and again.hosts[0].dnssec


def test_dane_verifies_a_host_found_through_validated_answers(
        zone: FakeDNS, dane_host: FakeMX, port: int) -> None:
    assert deliver(zone, port, "dane-signed.test") is Outcome.DELIVERED


def test_dane_does_not_apply_to_a_host_behind_an_unvalidated_mx_answer(
        zone: FakeDNS, dane_host: FakeMX, port: int) -> None:
    # The TLSA record would match, but the MX answer could be forged: the certificate
    # must then verify by PKIX, and no CA vouches for it.
    assert deliver(zone, port, "dane-unsigned.test") is Outcome.TLS_UNAVAILABLE
