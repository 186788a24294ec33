"""DANE for SMTP (RFC 7672): TLSA lookups with and without the AD bit through the fake
DNS, DANE-EE and DANE-TA verification of certificate chains, and the chain a real
STARTTLS peer presents (tls_inspect.presented_chain) against a FakeMX.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import dns.asyncresolver
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.delivery.mx import make_resolver
from gateway.tls.dane import (
    DaneVerdict,
    TLSARecord,
    TLSAStatus,
    lookup_tlsa,
    tlsa_name,
    verify,
    verify_detail,
)
from gateway.tls.inspect import cert_facts, dns_name_matches, presented_chain, spki_der
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

CHAIN_MX_IP = "127.0.0.22"
SILENT_DNS_IP = "127.0.0.23"
NOW = datetime.datetime.now(datetime.timezone.utc)


# ------------------------------------------------------------------ certificates


def der_of(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def self_signed(name: str, *, days: int = 30, expired: bool = False,
                ca: bool = False) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate like many MX hosts run under DANE-EE."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = NOW - datetime.timedelta(days=400 if expired else 1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), key


def signed_by(issuer_der: bytes, issuer_key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    issuer = x509.load_der_x509_certificate(issuer_der)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def record(usage: int, selector: int, mtype: int, der: bytes) -> TLSARecord:
    cert = x509.load_der_x509_certificate(der)
    data = der if selector == 0 else spki_der(cert)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return TLSARecord(usage, selector, mtype, data)


class Chain:
    """root CA -> intermediate CA -> leaf, as trustme builds it."""

    def __init__(self, *names: str, not_after: datetime.datetime | None = None) -> None:
        self.root = trustme.CA()
        self.intermediate = self.root.create_child_ca()
        self.leaf_cert = self.intermediate.issue_cert(*names, not_after=not_after)
        pems = [blob.bytes() for blob in self.leaf_cert.cert_chain_pems]
        self.leaf, self.inter = der_of(pems[0]), der_of(pems[1])
        self.root_der = der_of(self.root.cert_pem.bytes())


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain("mx.dane-ta.test", "*.pool.dane-ta.test")


# ------------------------------------------------------------------ DANE-EE


@pytest.mark.parametrize(("selector", "mtype"), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)],
                         ids=["cert-full", "cert-sha256", "cert-sha512", "spki-full",
                              "spki-sha256", "spki-sha512"])
def test_dane_ee_matches_leaf(selector: int, mtype: int) -> None:
    leaf, _ = self_signed("mx.dane-ee.test")
    check = verify_detail([record(3, selector, mtype, leaf)], [leaf], "mx.dane-ee.test")
    assert check.verdict is DaneVerdict.MATCH, check.detail
    assert check.detail.startswith(f"DANE-EE {selector} {mtype}")


def test_dane_ee_ignores_name_and_expiry() -> None:
    """RFC 7672 3.1.1: the pinned key is the authentication; names and dates are not checked."""
    leaf, _ = self_signed("whatever.invalid", expired=True)
    assert verify([record(3, 1, 1, leaf)], [leaf], "mx.dane-ee.test") is DaneVerdict.MATCH


def test_dane_ee_mismatch() -> None:
    leaf, _ = self_signed("mx.dane-ee.test")
    other, _ = self_signed("mx.dane-ee.test")
    records = [record(3, 1, 1, other), record(3, 0, 2, other)]
    check = verify_detail(records, [leaf], "mx.dane-ee.test")
    assert check.verdict is DaneVerdict.MISMATCH
    assert "no DANE-EE record matches" in check.detail


def test_dane_ee_only_matches_the_leaf(chain: Chain) -> None:
    """A 3 x x record for an intermediate must not be satisfied by the chain."""
    assert verify([record(3, 0, 1, chain.inter)], [chain.leaf, chain.inter],
                  "mx.dane-ta.test") is DaneVerdict.MISMATCH


def test_one_matching_record_among_several_is_enough() -> None:
    leaf, _ = self_signed("mx.dane-ee.test")
    other, _ = self_signed("old.dane-ee.test")
    records = [record(3, 1, 1, other), record(3, 1, 1, leaf)]
    assert verify(records, [leaf], "mx.dane-ee.test") is DaneVerdict.MATCH


@pytest.mark.parametrize("bad", [
    TLSARecord(1, 1, 1, b"\0" * 32),   # PKIX-EE: not for SMTP
    TLSARecord(0, 0, 1, b"\0" * 32),   # PKIX-TA: not for SMTP
    TLSARecord(3, 2, 1, b"\0" * 32),   # unknown selector
    TLSARecord(3, 1, 3, b"\0" * 32),   # unknown matching type
    TLSARecord(3, 1, 1, b"\0" * 31),   # SHA-256 of the wrong length
    TLSARecord(3, 1, 2, b"\0" * 32),   # SHA-512 of the wrong length
])
def test_unusable_records(bad: TLSARecord) -> None:
    leaf, _ = self_signed("mx.dane-ee.test")
    assert not bad.usable
    check = verify_detail([bad], [leaf], "mx.dane-ee.test")
    assert (check.verdict, check.detail) == (DaneVerdict.MISMATCH, "no usable TLSA record")


def test_unusable_record_with_the_right_digest_still_does_not_count() -> None:
    leaf, _ = self_signed("mx.dane-ee.test")
    pkix_ee = record(1, 1, 1, leaf)
    assert verify([pkix_ee], [leaf], "mx.dane-ee.test") is DaneVerdict.MISMATCH


def test_no_certificate() -> None:
    leaf, _ = self_signed("mx.dane-ee.test")
    assert verify([record(3, 1, 1, leaf)], [], "mx.dane-ee.test") is DaneVerdict.MISMATCH


# ------------------------------------------------------------------ DANE-TA


@pytest.mark.parametrize(("selector", "mtype"), [(0, 1), (1, 1), (0, 2), (0, 0)])
def test_dane_ta_intermediate_anchor(chain: Chain, selector: int, mtype: int) -> None:
    check = verify_detail([record(2, selector, mtype, chain.inter)], [chain.leaf, chain.inter],
                          "mx.dane-ta.test")
    assert check.verdict is DaneVerdict.MATCH, check.detail


def test_dane_ta_root_anchor_sent_in_chain(chain: Chain) -> None:
    full = [chain.leaf, chain.inter, chain.root_der]
    assert verify([record(2, 0, 1, chain.root_der)], full, "mx.dane-ta.test") is DaneVerdict.MATCH


def test_dane_ta_chain_out_of_order(chain: Chain) -> None:
    shuffled = [chain.leaf, chain.root_der, chain.inter]
    verdict = verify([record(2, 1, 1, chain.root_der)], shuffled, "mx.dane-ta.test")
    assert verdict is DaneVerdict.MATCH


def test_dane_ta_anchor_not_presented(chain: Chain) -> None:
    """RFC 7672 requires the server to send its TA; one only in DNS is not enough here."""
    check = verify_detail([record(2, 0, 1, chain.root_der)], [chain.leaf, chain.inter],
                          "mx.dane-ta.test")
    assert check.verdict is DaneVerdict.MISMATCH
    assert "no TLSA record matches a certificate the leaf chains to" in check.detail


@pytest.mark.parametrize(("host", "expected"), [
    ("mx.dane-ta.test", DaneVerdict.MATCH),
    ("MX.DANE-TA.TEST.", DaneVerdict.MATCH),
    ("a.pool.dane-ta.test", DaneVerdict.MATCH),
    ("a.b.pool.dane-ta.test", DaneVerdict.MISMATCH),
    ("mx.other.test", DaneVerdict.MISMATCH),
])
def test_dane_ta_checks_the_name(chain: Chain, host: str, expected: DaneVerdict) -> None:
    assert verify([record(2, 0, 1, chain.inter)], [chain.leaf, chain.inter], host) is expected


def test_dane_ta_anchor_must_have_signed_the_chain(chain: Chain) -> None:
    """An unrelated CA certificate appended to the chain matches the record but signed nothing."""
    stranger = Chain("mx.dane-ta.test")
    check = verify_detail([record(2, 0, 1, stranger.inter)],
                          [chain.leaf, chain.inter, stranger.inter], "mx.dane-ta.test")
    assert check.verdict is DaneVerdict.MISMATCH


def test_dane_ta_anchor_must_be_a_ca() -> None:
    """A leaf certificate's key must not vouch for other certificates."""
    not_ca, key = self_signed("mx.dane-ta.test", ca=False)
    forged = signed_by(not_ca, key, "mx.dane-ta.test")
    verdict = verify([record(2, 0, 1, not_ca)], [forged, not_ca], "mx.dane-ta.test")
    assert verdict is DaneVerdict.MISMATCH
    real_ca, ca_key = self_signed("ca.dane-ta.test", ca=True)
    issued = signed_by(real_ca, ca_key, "mx.dane-ta.test")
    verdict = verify([record(2, 0, 1, real_ca)], [issued, real_ca], "mx.dane-ta.test")
    assert verdict is DaneVerdict.MATCH


def test_dane_ta_expired_leaf() -> None:
    expired = Chain("mx.dane-ta.test", not_after=NOW - datetime.timedelta(days=1))
    check = verify_detail([record(2, 0, 1, expired.inter)], [expired.leaf, expired.inter],
                          "mx.dane-ta.test")
    assert check.verdict is DaneVerdict.MISMATCH and "validity period" in check.detail


# ------------------------------------------------------------------ TLSA lookup


@pytest.fixture(scope="module")
def zone() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        yield server


@pytest.fixture
def resolver(zone: FakeDNS) -> dns.asyncresolver.Resolver:
    return make_resolver([zone.nameserver], timeout=2.0)


DIGEST = "ab" * 32


def test_tlsa_name() -> None:
    assert tlsa_name("mx.dane-ee.test.") == "_25._tcp.mx.dane-ee.test"
    assert tlsa_name("mx.dane-ee.test", 2525) == "_2525._tcp.mx.dane-ee.test"


def test_tlsa_authenticated_and_usable(zone: FakeDNS, resolver: Any) -> None:
    zone.add("_25._tcp.mx.dane-ee.test", "TLSA", f"3 1 1 {DIGEST}", f"1 1 1 {DIGEST}")
    zone.set_authenticated("_25._tcp.mx.dane-ee.test", True)
    lookup = asyncio.run(lookup_tlsa(resolver, "mx.dane-ee.test"))
    assert lookup.status is TLSAStatus.USABLE, lookup.detail
    assert sorted(r.to_text() for r in lookup.records) == [f"1 1 1 {DIGEST}", f"3 1 1 {DIGEST}"]
    assert [r.to_text() for r in lookup.usable] == [f"3 1 1 {DIGEST}"]


def test_tlsa_without_ad_is_insecure(zone: FakeDNS, resolver: Any) -> None:
    zone.add("_25._tcp.mx.no-ad.test", "TLSA", f"3 1 1 {DIGEST}")
    lookup = asyncio.run(lookup_tlsa(resolver, "mx.no-ad.test"))
    assert lookup.status is TLSAStatus.INSECURE
    assert "not DNSSEC-validated" in lookup.detail


def test_tlsa_only_unusable_records(zone: FakeDNS, resolver: Any) -> None:
    zone.add("_25._tcp.mx.dane-unusable.test", "TLSA", f"1 1 1 {DIGEST}", f"0 0 1 {DIGEST}")
    zone.set_authenticated("_25._tcp.mx.dane-unusable.test", True)
    lookup = asyncio.run(lookup_tlsa(resolver, "mx.dane-unusable.test"))
    assert lookup.status is TLSAStatus.UNUSABLE and len(lookup.records) == 2


def test_tlsa_none(zone: FakeDNS, resolver: Any) -> None:
    zone.add("mx.no-tlsa.test", "A", "127.0.0.30")
    zone.add("_25._tcp.mx.nodata.test", "TXT", '"not a TLSA"')
    assert asyncio.run(lookup_tlsa(resolver, "mx.no-tlsa.test")).status is TLSAStatus.NONE
    assert asyncio.run(lookup_tlsa(resolver, "mx.nodata.test")).status is TLSAStatus.NONE


def test_tlsa_servfail_is_tempfail(zone: FakeDNS, resolver: Any) -> None:
    zone.add("_25._tcp.mx.dane-servfail.test", "TLSA", f"3 1 1 {DIGEST}")
    zone.set_rcode("_25._tcp.mx.dane-servfail.test", "SERVFAIL")
    lookup = asyncio.run(lookup_tlsa(resolver, "mx.dane-servfail.test"))
    assert lookup.status is TLSAStatus.TEMPFAIL and lookup.records == []


def test_tlsa_timeout_is_tempfail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((SILENT_DNS_IP, 0))
        resolver = make_resolver([f"{SILENT_DNS_IP}:{silent.getsockname()[1]}"], timeout=0.3)
        lookup = asyncio.run(lookup_tlsa(resolver, "mx.dane-timeout.test"))
    assert lookup.status is TLSAStatus.TEMPFAIL


def test_tlsa_port_and_shared_resolver_untouched(zone: FakeDNS, resolver: Any) -> None:
    zone.add("_2525._tcp.mx.dane-port.test", "TLSA", f"3 0 1 {DIGEST}")
    zone.set_authenticated("_2525._tcp.mx.dane-port.test", True)
    before = (resolver.flags, resolver.edns, resolver.ednsflags)
    lookup = asyncio.run(lookup_tlsa(resolver, "mx.dane-port.test", 2525))
    assert lookup.status is TLSAStatus.USABLE and lookup.name == "_2525._tcp.mx.dane-port.test"
    assert (resolver.flags, resolver.edns, resolver.ednsflags) == before


# ------------------------------------------------------------------ presented chain


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_presented_chain_from_a_starttls_session() -> None:
    served = Chain("mx.dane-ta.test")
    port = free_port(CHAIN_MX_IP)

    async def handshake() -> list[bytes]:
        client = aiosmtplib.SMTP(hostname=CHAIN_MX_IP, port=port, start_tls=False, timeout=5)
        await client.connect()
        raw = client.transport
        assert raw is not None
        try:
            await client.ehlo()
            await client.starttls(server_hostname="mx.dane-ta.test", tls_context=_unverified())
            return presented_chain(client.get_transport_info("ssl_object"))
        finally:
            await client.quit()
            # The TCP socket under TLS closes only after the close_notify exchange;
            # asyncio.run() must not end before that (ResourceWarning otherwise).
            for _ in range(200):
                if raw.is_closing():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)

    with FakeMX(CHAIN_MX_IP, port, name="mx.dane-ta.test", tls_cert=served.leaf_cert):
        presented = asyncio.run(handshake())
    assert presented == [served.leaf, served.inter]
    # The chain as sent is what DANE-TA needs.
    verdict = verify([record(2, 0, 1, served.inter)], presented, "mx.dane-ta.test")
    assert verdict is DaneVerdict.MATCH


def test_presented_chain_falls_back_to_the_leaf() -> None:
    leaf, _ = self_signed("mx.dane-ee.test")

    class OldSSLObject:
        def getpeercert(self, binary_form: bool = False) -> bytes:
            assert binary_form
            return leaf

    assert presented_chain(OldSSLObject()) == [leaf]  # type: ignore[arg-type]


def test_presented_chain_public_api() -> None:
    """Python 3.13+: the public method already returns DER."""
    class NewSSLObject:
        def get_unverified_chain(self) -> list[bytes]:
            return [b"leaf", b"ca"]

    assert presented_chain(NewSSLObject()) == [b"leaf", b"ca"]  # type: ignore[arg-type]


def test_cert_facts(chain: Chain) -> None:
    facts = cert_facts(chain.leaf)
    leaf = x509.load_der_x509_certificate(chain.leaf)
    assert facts.dns_names == ["mx.dane-ta.test", "*.pool.dane-ta.test"]
    assert facts.subject == leaf.subject.rfc4514_string()
    assert facts.issuer == x509.load_der_x509_certificate(chain.inter).subject.rfc4514_string()
    assert facts.not_after == leaf.not_valid_after_utc
    assert facts.sha256 == hashlib.sha256(chain.leaf).hexdigest()
    assert not facts.is_ca and not facts.self_signed and not facts.expired()
    assert cert_facts(chain.root_der).self_signed and cert_facts(chain.inter).is_ca


@pytest.mark.parametrize(("pattern", "host", "expected"), [
    ("mx.a.test", "MX.A.TEST.", True),
    ("*.a.test", "mx.a.test", True),
    ("*.a.test", "a.test", False),
    ("*.a.test", "x.mx.a.test", False),
    ("mx*.a.test", "mx1.a.test", False),
    ("", "a.test", False),
])
def test_dns_name_matches(pattern: str, host: str, expected: bool) -> None:
    assert dns_name_matches(pattern, host) is expected


def test_tlsa_answers_are_cached_for_their_ttl_when_the_resolver_caches(zone: FakeDNS) -> None:
    cached = make_resolver([zone.nameserver], timeout=2.0)
    zone.add("_25._tcp.mx.cached-tlsa.test", "TLSA", "3 1 1 " + "ab" * 32)
    zone.set_authenticated("_25._tcp.mx.cached-tlsa.test", True)
    first = asyncio.run(lookup_tlsa(cached, "mx.cached-tlsa.test"))
    second = asyncio.run(lookup_tlsa(cached, "mx.cached-tlsa.test"))
    assert first.status is second.status is TLSAStatus.USABLE
    asked = [q for q in zone.queries if q == ("_25._tcp.mx.cached-tlsa.test", "TLSA")]
    assert len(asked) == 1
